"""The Spark feature job: ``gold_churn_features`` from the daily gold table.

Same definitions as the pure-Python :func:`wikichurn.core.churn.compute_domain_frame` (a property test
proves the two agree on every column): a dense per-domain calendar, window functions over rows
(one row per day), labels from the rows after t and features from t and the rows before it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from wikichurn.core.churn import (
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    LAGS,
    PAST_MEAN_WINDOWS,
    ROLLING_WINDOWS,
    SLOPE_WINDOWS,
    ZERO_WINDOWS,
    label_columns,
    parse_domain_code,
)
from wikichurn.pipeline import compat
from wikichurn.pipeline.lakehouse import lake as tables
from wikichurn.pipeline.lakehouse.frames import domain_spine
from wikichurn.pipeline.lakehouse.lake import Lake

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.window import WindowSpec

    from wikichurn.core.settings import ChurnSettings, Settings

log = logging.getLogger(__name__)

GOLD_FEATURES = "gold_churn_features"
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
        ``KEY_COLUMNS`` + ``FEATURE_COLUMNS`` + the label columns.
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
            F.coalesce("count_views", F.lit(0)).cast("bigint").alias("count_views"),
            F.coalesce("day_hours", F.lit(0)).cast("bigint").alias("day_hours_available"),
        )
        .withColumn("_v", _adjusted_views(churn))
        .withColumn("days_since_first_seen", F.datediff("event_date", "first_seen").cast("bigint"))
    )

    by_day = Window.partitionBy("domain_code").orderBy("event_date")

    def rows(start: int, stop: int) -> WindowSpec:
        return by_day.rowsBetween(start, stop)

    w, h = churn.window_days, churn.horizon_days
    past_mean = F.avg("_v").over(rows(-w, -1))
    iso_dow = compat.iso_dayofweek("event_date")
    cols: dict[str, Column] = {
        "avg_views_past_3d": past_mean,
        "threshold": F.lit(churn.factor) * past_mean,
        "year": F.year("event_date"),
        "month": F.month("event_date"),
        "day": F.dayofmonth("event_date"),
        "dayofweek": iso_dow,
        "quarter": F.quarter("event_date"),
        "is_weekend": (iso_dow >= 6).cast("bigint"),
    }
    for k in LAGS:
        cols[f"views_lag_{k}"] = F.lag("_v", k).over(by_day)
    for n in ROLLING_WINDOWS:
        cols[f"rolling_mean_{n}d"] = F.avg("_v").over(rows(-(n - 1), 0))
        cols[f"rolling_std_{n}d"] = compat.window_stddev("_v", rows(-(n - 1), 0))
        cols[f"rolling_min_{n}d"] = F.min("_v").over(rows(-(n - 1), 0))
        cols[f"rolling_max_{n}d"] = F.max("_v").over(rows(-(n - 1), 0))
    for n in PAST_MEAN_WINDOWS:
        cols[f"ratio_to_mean_{n}d"] = (F.col("_v") + 1.0) / (F.avg("_v").over(rows(-n, -1)) + 1.0)
    log_v, x = F.log1p("_v"), F.col("days_since_first_seen").cast("double")
    for n in SLOPE_WINDOWS:
        window = rows(-(n - 1), 0)
        cols[f"trend_slope_{n}d"] = F.covar_samp(log_v, x).over(window) / F.var_samp(x).over(window)
    for n in ZERO_WINDOWS:
        cols[f"zero_days_{n}d"] = F.sum((F.col("_v") == 0).cast("bigint")).over(rows(-(n - 1), 0))
    cols["log_count_views"] = log_v
    cols["log_avg_views_past_3d"] = F.log1p(past_mean)
    for k in range(1, h + 1):
        cols[f"views_plus_{k}"] = F.lead("_v", k).over(by_day)
    cols["min_views_future"] = F.min("_v").over(rows(1, h))

    features = daily.withColumns(cols)
    incomplete = (F.col("day_hours_available") < churn.gap_hours()).cast("bigint")
    available = (
        (F.col("days_since_first_seen") >= w)
        & (F.datediff("calendar_end", "event_date") >= h)
        & (F.col("avg_views_past_3d") > 0)
    )
    if churn.incomplete_policy != "ignore":
        features = features.withColumn("_incomplete", incomplete)
        touched = F.coalesce(F.sum("_incomplete").over(rows(-w, -1)), F.lit(0)) + F.coalesce(
            F.sum("_incomplete").over(rows(1, h)), F.lit(0)
        )
        available = available & (touched == 0)
    features = features.withColumns(
        {
            "churn": F.when(
                F.col("min_views_future").isNotNull() & F.col("threshold").isNotNull(),
                (F.col("min_views_future") <= F.col("threshold")).cast("double"),
            ),
            "label_available": F.coalesce(available, F.lit(False)),
        }
    ).join(domains, ["domain_code"], "left")
    ordered = [*KEY_COLUMNS, *(c for c in FEATURE_COLUMNS if c not in KEY_COLUMNS), *label_columns(h)]
    return features.select(*ordered)


def _adjusted_views(churn: ChurnSettings) -> Column:
    """Views as the statistics see them: scaled to 24 hours on partial days under ``rescale``."""
    views = F.col("count_views").cast("double")
    if churn.incomplete_policy != "rescale":
        return views
    hours = F.col("day_hours_available")
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
    frame: pd.DataFrame = rows.select(*KEY_COLUMNS, *(c for c in FEATURE_COLUMNS if c not in KEY_COLUMNS)).toPandas()
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
