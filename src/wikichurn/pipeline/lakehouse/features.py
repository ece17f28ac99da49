"""The Spark feature job: ``gold_churn_features`` from the daily gold table.

The Spark compilation of :mod:`wikichurn.core.featurespec` (:func:`spark_columns`); the numpy one is
:mod:`wikichurn.core.columnar`, and a property test proves the two agree on every column. A dense
per-domain calendar, window functions over rows (one row per day), labels from the rows after t and
features from t and the rows before it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from wikichurn.core import tables
from wikichurn.core.churn import KEY_COLUMNS, feature_columns, parse_domain_code
from wikichurn.core.featurespec import Feature, feature_spec
from wikichurn.core.tables import GOLD_FEATURES
from wikichurn.pipeline import compat
from wikichurn.pipeline.lakehouse.frames import domain_spine
from wikichurn.pipeline.lakehouse.lake import Lake

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.window import WindowSpec

    from wikichurn.core.settings import ChurnSettings, Settings

log = logging.getLogger(__name__)

DOMAIN_META_SCHEMA = StructType(
    [StructField(name, StringType(), False) for name in ("domain_code", "language", "project_family", "access")]
)


def domain_metadata(spark: SparkSession, codes: list[str]) -> DataFrame:
    """Language, project family and access of each code, parsed by the one Python parser."""
    rows = [(code, *vars(parse_domain_code(code)).values()) for code in sorted(set(codes))]
    return spark.createDataFrame(rows, DOMAIN_META_SCHEMA)


def day_hours_from_ledger(ledger: DataFrame) -> DataFrame:
    """Hourly files available per date (``event_date``, ``day_hours``) from the bronze ledger."""
    return (
        ledger.where(F.col("event_date").isNotNull())
        .groupBy("event_date")
        .agg(F.countDistinct("event_timestamp").cast("int").alias("day_hours"))
    )


def build_churn_features(gold: DataFrame, day_hours: DataFrame, domains: DataFrame, churn: ChurnSettings) -> DataFrame:
    """Features (day t and before) and labels (after t) per ``domain_code`` x ``event_date``.

    Args:
        gold: ``gold_daily_projectviews``.
        day_hours: ``event_date``, ``day_hours`` for every date that has files.
        domains: :func:`domain_metadata` of the gold domain codes.
        churn: horizon, window, factor and completeness policy.

    Returns:
        The columns of :func:`wikichurn.core.featurespec.table_columns`, typed as the spec says.
    """
    spine = domain_spine(gold, day_hours)
    daily = (
        spine.join(gold.select("domain_code", "event_date", "count_views"), ["domain_code", "event_date"], "left")
        .join(day_hours, ["event_date"], "left")
        .select(
            "domain_code",
            "event_date",
            "first_seen",
            "calendar_end",
            F.coalesce("count_views", F.lit(0)).cast("bigint").alias("_observed"),
            F.coalesce("day_hours", F.lit(0)).cast("bigint").alias("_hours"),
        )
        .withColumn("_v", _adjusted_views(churn))
        .withColumn("_position", F.datediff("event_date", "first_seen").cast("bigint"))
        .join(domains.withColumnRenamed("domain_code", "_domain"), F.col("domain_code") == F.col("_domain"), "left")
    )
    if churn.incomplete_policy != "ignore":
        daily = daily.withColumn("_incomplete", (F.col("_hours") < churn.gap_hours()).cast("bigint"))
    columns = spark_columns(feature_spec(churn), churn)
    return daily.select(*KEY_COLUMNS, *(col.alias(name) for name, col in columns.items()))


def spark_columns(spec: Sequence[Feature], churn: ChurnSettings) -> dict[str, Column]:
    """The Spark compilation of the feature spec: one Column per feature, cast to its dtype.

    Reads the per-row columns ``build_churn_features`` prepares (``_v``, ``_observed``, ``_hours``,
    ``_position``, ``_incomplete``, the domain parts) over one window per domain ordered by day.
    """
    by_day = Window.partitionBy("domain_code").orderBy("event_date")
    cols: dict[str, Column] = {}
    for f in spec:
        if f.name in KEY_COLUMNS:
            continue
        value = _spark_kind(f, by_day, churn)
        cols[f.name] = (F.log1p(value) if f.log1p else value).cast(f.dtype)
    return cols


def _spark_kind(f: Feature, by_day: WindowSpec, churn: ChurnSettings) -> Column:
    v = F.col("_v")

    def rows(start: int, stop: int) -> WindowSpec:
        return by_day.rowsBetween(start, stop)

    def past_mean(n: int) -> Column:
        return F.avg(v).over(rows(-n, -1))

    def future_min() -> Column:
        return F.min(v).over(rows(1, churn.horizon_days))

    upto_t = rows(-(f.rows - 1), 0)
    kinds: dict[str, Callable[[], Column]] = {
        "observed": lambda: F.col("_observed"),
        "lag": lambda: F.lag(v, f.rows).over(by_day) if f.rows else v,
        "lead": lambda: F.lead(v, f.rows).over(by_day),
        "rolling": lambda: _spark_rolling(f.stat, upto_t),
        "past_mean": lambda: F.lit(f.scale) * past_mean(f.rows) if f.scale != 1.0 else past_mean(f.rows),
        "ratio_to_past": lambda: (v + 1.0) / (past_mean(f.rows) + 1.0),
        "trend_slope": lambda: (
            F.covar_samp(F.log1p(v), F.col("_position").cast("double")).over(upto_t)
            / F.var_samp(F.col("_position").cast("double")).over(upto_t)
        ),
        "zero_days": lambda: F.sum((v == 0).cast("bigint")).over(upto_t),
        "position": lambda: F.col("_position"),
        "hours": lambda: F.col("_hours"),
        "calendar": lambda: _spark_calendar(f.stat),
        "domain": lambda: F.col(f.stat),
        "future_min": future_min,
        # The past mean at least 0: a sliding mean can keep a rounding residue of either sign
        # after the last non-zero day leaves the window, and "0 <= factor x -1e-12" is no churn.
        "churn": lambda: F.when(
            future_min().isNotNull() & past_mean(churn.window_days).isNotNull(),
            (future_min() <= F.lit(churn.factor) * F.greatest(past_mean(churn.window_days), F.lit(0.0))).cast("double"),
        ),
        "label_available": lambda: _spark_label_available(rows, churn),
    }
    return kinds[f.kind]()


def _spark_rolling(stat: str, window: WindowSpec) -> Column:
    if stat == "std":
        return compat.window_stddev("_v", window)
    return {"mean": F.avg, "min": F.min, "max": F.max}[stat]("_v").over(window)


def _spark_calendar(part: str) -> Column:
    iso_dow = compat.iso_dayofweek("event_date")
    parts: dict[str, Callable[[], Column]] = {
        "year": lambda: F.year("event_date"),
        "month": lambda: F.month("event_date"),
        "day": lambda: F.dayofmonth("event_date"),
        "dayofweek": lambda: iso_dow,
        "quarter": lambda: F.quarter("event_date"),
        "is_weekend": lambda: iso_dow >= 6,
    }
    return parts[part]()


def _spark_label_available(rows: Callable[[int, int], WindowSpec], churn: ChurnSettings) -> Column:
    w, h = churn.window_days, churn.horizon_days
    # "The past mean is not zero" is asked of the window's maximum: a sliding mean over rescaled
    # views can keep a rounding residue (1.8e-12 on Sail) after the last non-zero day leaves the
    # window, which would label a dead domain (found by the property test of both compilations).
    had_views = F.max("_v").over(rows(-w, -1)) > 0
    available = (F.col("_position") >= w) & (F.datediff("calendar_end", "event_date") >= h) & had_views
    if churn.incomplete_policy != "ignore":
        touched = F.coalesce(F.sum("_incomplete").over(rows(-w, -1)), F.lit(0)) + F.coalesce(
            F.sum("_incomplete").over(rows(1, h)), F.lit(0)
        )
        available = available & (touched == 0)
    return F.coalesce(available, F.lit(False))


def _adjusted_views(churn: ChurnSettings) -> Column:
    """Views as the statistics see them: scaled to 24 hours on partial days under ``rescale``."""
    views = F.col("_observed").cast("double")
    if churn.incomplete_policy != "rescale":
        return views
    hours = F.col("_hours")
    partial = (hours >= churn.min_hours_rescale) & (hours < 24)
    return F.when(partial, views * F.lit(24.0) / hours.cast("double")).otherwise(views)


@dataclass
class FeatureResult:
    """What a feature build wrote."""

    rows: int
    labelled_rows: int
    positive_rate: float
    domains: int

    def describe(self) -> str:
        """A short human summary."""
        return (
            f"{GOLD_FEATURES}: {self.rows:,} rows for {self.domains:,} domains, "
            f"{self.labelled_rows:,} with an available label, churn base rate {self.positive_rate:.1%}"
        )


def run_features(spark: SparkSession, settings: Settings) -> FeatureResult:
    """Rebuild ``gold_churn_features`` from gold and the bronze ledger (a full, idempotent overwrite)."""
    lake = Lake(spark, settings)
    gold = lake.read(tables.GOLD_DAILY)
    codes = [r[0] for r in gold.select("domain_code").distinct().collect()]
    features = build_churn_features(
        gold,
        day_hours_from_ledger(lake.read(tables.BRONZE_LEDGER)),
        domain_metadata(spark, codes),
        settings.churn,
    )
    lake.overwrite(features, GOLD_FEATURES)
    stats = (
        lake.read(GOLD_FEATURES)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.col("label_available").cast("bigint")).alias("labelled"),
            F.avg(F.when(F.col("label_available"), F.col("churn"))).alias("rate"),
        )
        .collect()[0]
    )
    result = FeatureResult(
        rows=int(stats["rows"]),
        labelled_rows=int(stats["labelled"] or 0),
        positive_rate=float(stats["rate"] or 0.0),
        domains=len(codes),
    )
    log.info(result.describe())
    return result


@dataclass
class SnapshotResult:
    """What a serving snapshot export wrote."""

    path: Path
    as_of: date | None
    domains: int

    def describe(self) -> str:
        """A short human summary."""
        return f"serving snapshot {self.path}: {self.domains:,} domains as of {self.as_of}"


def latest_complete_rows(features: DataFrame, min_hours: int) -> DataFrame:
    """The feature rows of the latest day whose hourly files are all there."""
    complete = features.where(F.col("day_hours_available") >= min_hours)
    last = complete.agg(F.max("event_date").alias("_as_of"))
    return complete.join(last, complete["event_date"] == last["_as_of"]).drop("_as_of")


def export_snapshot(spark: SparkSession, settings: Settings, out: Path) -> SnapshotResult:
    """Write the features of every domain on the latest complete day to a parquet file.

    The scoring service loads this file at start-up, so scoring a known domain needs no engine.
    A JSON sidecar (``<out>.json``) records the day and where the features came from.
    """
    lake = Lake(spark, settings)
    rows = latest_complete_rows(lake.read(GOLD_FEATURES), settings.churn.min_hours_complete)
    names = feature_columns(settings.churn)
    frame: pd.DataFrame = rows.select(*KEY_COLUMNS, *(c for c in names if c not in KEY_COLUMNS)).toPandas()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(out)  # the service may be reading the old snapshot: swap, never overwrite in place
    as_of = frame["event_date"].max() if len(frame) else None
    meta = {
        "as_of": as_of.isoformat() if as_of is not None else None,
        "domains": len(frame),
        "source": lake.path(GOLD_FEATURES),
        "exported_at": datetime.now(UTC).isoformat(),
    }
    out.with_name(out.name + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    result = SnapshotResult(path=out, as_of=as_of, domains=len(frame))
    log.info(result.describe())
    return result
