"""Training data: labelled rows of ``gold_churn_features`` as pandas, and the time split.

The split is by ``event_date`` and never shuffled: train < validation < test, with at least
``gap_days`` (>= the label horizon) dates dropped between two sets, so no label of one set
(which looks at the ``horizon_days`` days after its date) sees a day of the next set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wikichurn.core.churn import keyed_feature_columns
from wikichurn.training.config import SplitSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)

LABEL = "churn"
SET_NAMES: tuple[str, str, str] = ("train", "validation", "test")


@dataclass
class FeatureData:
    """Labelled feature rows and where they came from."""

    frame: pd.DataFrame  # KEY_COLUMNS + FEATURE_COLUMNS + churn (0/1 int), sorted by date, domain
    table: str
    location: str
    version: int | None  # Delta version read (None when unknown)


def load_feature_data(settings: Settings, table: str, spark: SparkSession | None = None) -> FeatureData:
    """Read the labelled rows (``label_available``) of ``table`` through Spark into pandas.

    With Delta tables the current version is looked up first (``deltalake``) and read by time
    travel, so the recorded version is exactly the data trained on.

    Args:
        settings: where the lake is and which engine to use.
        table: the feature table, normally ``gold_churn_features``.
        spark: a session to reuse; without one a session is built and stopped here.

    Returns:
        The rows, sorted by ``event_date`` then ``domain_code``.
    """
    from wikichurn.pipeline.lakehouse.lake import Lake
    from wikichurn.pipeline.spark import build_spark

    if spark is None:
        with build_spark(settings) as session:
            return load_feature_data(settings, table, session)
    lake = Lake(spark, settings)
    location = lake.path(table)
    if not lake.exists(table):
        raise FileNotFoundError(f"feature table {table} not found at {location}: run `wikichurn pipeline run` first")
    version = feature_table_version(location, settings) if settings.table_format == "delta" else None
    df = lake.read_version(table, version) if version is not None else lake.read(table)
    columns = [*keyed_feature_columns(settings.churn), LABEL]
    rows = df.where("label_available AND churn IS NOT NULL").select(*columns).toPandas()
    frame = prepare_frame(rows)
    log.info("read %s rows of %s (version %s) from %s", f"{len(frame):,}", table, version, location)
    return FeatureData(frame=frame, table=table, location=location, version=version)


def prepare_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Typed, sorted training rows: ``event_date`` as datetime64, ``churn`` as int 0/1."""
    frame = rows.copy()
    frame["event_date"] = pd.to_datetime(frame["event_date"])
    frame[LABEL] = frame[LABEL].astype("float64").round().astype("int64")
    return frame.sort_values(["event_date", "domain_code"], kind="stable").reset_index(drop=True)


def feature_table_version(location: str, settings: Settings | None = None) -> int | None:
    """The current Delta version of the table at ``location``, or None if it cannot be read."""
    try:
        from deltalake import DeltaTable

        options: dict[str, str] | None = None
        if settings is not None and settings.is_s3(location):
            from wikichurn.core.storage import delta_storage_options

            options = delta_storage_options(settings.s3)
            location = location.replace("s3a://", "s3://", 1)
        return int(DeltaTable(location, storage_options=options).version())
    except Exception as exc:  # lineage is best effort: never fail training for it
        log.warning("could not read the Delta version of %s: %s", location, exc)
        return None


@dataclass(frozen=True)
class SetInfo:
    """One set of the split."""

    start: date
    end: date
    rows: int
    positives: int

    @property
    def positive_rate(self) -> float:
        return self.positives / self.rows if self.rows else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "positives": self.positives,
            "positive_rate": self.positive_rate,
        }


@dataclass
class TimeSplit:
    """Train, validation and test frames cut by date, with the gap rows dropped."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    gap_days: int
    dropped_rows: int

    def sets(self) -> dict[str, pd.DataFrame]:
        """The three frames by name."""
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def info(self) -> dict[str, SetInfo]:
        """Date range, rows and positives of each set."""
        return {name: _set_info(frame) for name, frame in self.sets().items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (logged to MLflow and stored in the model metadata)."""
        return {
            **{name: info.to_dict() for name, info in self.info().items()},
            "gap_days": self.gap_days,
            "dropped_rows": self.dropped_rows,
        }

    def flat(self) -> dict[str, Any]:
        """``split.<set>.<field>`` entries (for MLflow params and tags)."""
        out: dict[str, Any] = {"split.gap_days": self.gap_days, "split.dropped_rows": self.dropped_rows}
        for name, info in self.info().items():
            for key, value in info.to_dict().items():
                out[f"split.{name}.{key}"] = value
        return out


def _set_info(frame: pd.DataFrame) -> SetInfo:
    dates = frame["event_date"]
    return SetInfo(
        start=dates.min().date(),
        end=dates.max().date(),
        rows=len(frame),
        positives=int(frame[LABEL].sum()),
    )


def split_by_time(frame: pd.DataFrame, config: SplitSettings, horizon_days: int = 7) -> TimeSplit:
    """Cut ``frame`` into train / validation / test by ``event_date`` with gaps between them.

    With cut dates (``config.train_end``, ``config.validation_end``): train is every date up to
    ``train_end``, validation the dates after ``train_end + gap`` up to ``validation_end``, test
    the dates after ``validation_end + gap``. With fractions: the two cuts are chosen among all
    date boundaries so that, after the gap dates are dropped, the three sets' shares of the rows
    kept are as close as possible to the fractions (an exhaustive search; holes in the
    calendar, such as days without labels, are handled naturally).

    Args:
        frame: labelled rows with ``event_date`` (datetime64) and ``churn``.
        config: fractions or cut dates, and the gap.
        horizon_days: the label horizon; ``config.gap_days`` below it is refused.

    Returns:
        The three non-empty frames, each sorted by date.

    Raises:
        ValueError: gap shorter than the horizon, or too few dates for three sets and two gaps.
    """
    if config.gap_days < horizon_days:
        raise ValueError(
            f"split.gap_days={config.gap_days} is shorter than the label horizon ({horizon_days} days): "
            "labels of one set would see days of the next"
        )
    if frame.empty:
        raise ValueError("no labelled rows to split")
    days = frame["event_date"].dt.normalize()
    gap = pd.Timedelta(days=config.gap_days)
    if config.train_end is not None and config.validation_end is not None:
        train_end = pd.Timestamp(config.train_end)
        validation_end = pd.Timestamp(config.validation_end)
        masks = (
            days <= train_end,
            (days > train_end + gap) & (days <= validation_end),
            days > validation_end + gap,
        )
    else:
        train_end, validation_start, validation_end, test_start = _best_cuts(days, config)
        masks = (
            days <= train_end,
            (days >= validation_start) & (days <= validation_end),
            days >= test_start,
        )
    parts = [frame.loc[mask].reset_index(drop=True) for mask in masks]
    for name, part in zip(SET_NAMES, parts, strict=True):
        if part.empty:
            raise ValueError(f"the {name} set is empty: not enough labelled dates for this split and gap")
    split = TimeSplit(
        parts[0], parts[1], parts[2], gap_days=config.gap_days, dropped_rows=len(frame) - sum(len(p) for p in parts)
    )
    _check_gaps(split, config.gap_days)
    for name, info in split.info().items():
        log.info(
            "%s: %s..%s, %s rows, positive rate %.1f%%",
            name,
            info.start,
            info.end,
            f"{info.rows:,}",
            100 * info.positive_rate,
        )
    return split


def _best_cuts(days: pd.Series, config: SplitSettings) -> tuple[pd.Timestamp, ...]:
    counts = days.value_counts().sort_index()
    dates = counts.index.to_numpy(dtype="datetime64[D]")
    n = len(dates)
    cum = np.concatenate([[0], np.cumsum(counts.to_numpy())])  # rows of dates[:i] = cum[i]
    # next_after[i]: first date index strictly after dates[i] + gap (n when none).
    next_after = np.searchsorted(dates, dates + np.timedelta64(config.gap_days, "D"), side="right")
    target = np.array([config.train_fraction, config.validation_fraction, config.test_fraction])
    best: tuple[float, int, int] | None = None
    for a in range(n):  # train = dates[0..a]
        b = next_after[a]  # validation starts at dates[b]
        if b >= n:
            break
        c = np.arange(b, n)  # validation ends at dates[c]
        d = next_after[c]  # test starts at dates[d]
        ok = d < n
        if not ok.any():
            continue
        c, d = c[ok], d[ok]
        sizes = np.stack([np.full(len(c), cum[a + 1]), cum[c + 1] - cum[b], cum[n] - cum[d]], axis=1)
        shares = sizes / sizes.sum(axis=1, keepdims=True)
        loss = ((shares - target) ** 2).sum(axis=1)
        k = int(np.argmin(loss))
        if best is None or loss[k] < best[0] - 1e-12:
            best = (float(loss[k]), a, int(c[k]))
    if best is None:
        raise ValueError(f"{n} labelled dates cannot hold three sets separated by two gaps of {config.gap_days} days")
    _loss, train_end, validation_end = best
    cuts = (train_end, next_after[train_end], validation_end, next_after[validation_end])
    return tuple(pd.Timestamp(dates[i]) for i in cuts)


def _check_gaps(split: TimeSplit, gap_days: int) -> None:
    info = split.info()
    for earlier, later in (("train", "validation"), ("validation", "test")):
        if info[later].start - info[earlier].end <= timedelta(days=gap_days):
            raise AssertionError(f"{earlier} and {later} are closer than {gap_days} days")  # a bug, not bad input
