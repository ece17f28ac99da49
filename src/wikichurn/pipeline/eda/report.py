"""Exploratory data analysis of the lake: KPI tables, data-quality quirks, plots and one HTML report.

The transforms (``DataFrame -> DataFrame``, no I/O, no session) compute, from the gold daily table,
the bronze file ledger and ``gold_churn_features``:

- engagement: daily / weekly (ISO weeks, Monday first) / monthly views, per domain and in total,
  and active domains per day;
- streaks: the current run of consecutive days with views of every domain on every day of its
  dense calendar (first day with views .. last day of the lake; an absent day has 0 views);
- concentration: the Herfindahl-Hirschman index of the day's views over domains, 1 - HHI and
  the top-10 share;
- quirks: weekday seasonality per access type, missing and zero-view days per domain, spikes
  (views above the trailing 28-day mean + 3 standard deviations), hourly completeness per date;
- the churn base rate per date and per project family.

:func:`run_eda` reads the tables through :class:`wikichurn.pipeline.lakehouse.lake.Lake`, writes the KPI tables back to
the lake, draws PNG plots, writes a self-contained ``report.html`` and, when an MLflow tracking URI
is configured, logs all of it to the ``wikichurn-eda`` experiment. See ``docs/eda.md``.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pyspark.sql import Window
from pyspark.sql import functions as F

from wikichurn.pipeline.lakehouse import lake as tables
from wikichurn.pipeline.lakehouse.features import GOLD_FEATURES, domain_metadata
from wikichurn.pipeline.lakehouse.lake import Lake

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from pyspark.sql import Column, DataFrame, SparkSession

    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)

GOLD_KPIS_DAILY = "gold_kpis_daily"
GOLD_KPIS_DOMAIN = "gold_kpis_domain"
GOLD_KPIS_WEEKLY = "gold_kpis_weekly"
GOLD_KPIS_MONTHLY = "gold_kpis_monthly"
GOLD_QUALITY_SPIKES = "gold_quality_spikes"
EDA_TABLES: tuple[str, ...] = (
    GOLD_KPIS_DAILY,
    GOLD_KPIS_DOMAIN,
    GOLD_KPIS_WEEKLY,
    GOLD_KPIS_MONTHLY,
    GOLD_QUALITY_SPIKES,
)
EDA_EXPERIMENT = "wikichurn-eda"
EDA_RUN_NAME = "eda"
REPORT_NAME = "report.html"
PLOTS_FOLDER = "plots"

Period = Literal["week", "month"]
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class SpikeRule:
    """A day is a spike when its views exceed ``mean + k_sigma x scale`` of the trailing window.

    The window is the ``window_days`` calendar days before the day (the day itself excluded).
    ``scale`` is the window's sample standard deviation, floored at ``sqrt(mean)`` (the Poisson
    noise of a count) when ``poisson_floor`` is set, so a perfectly flat series does not turn every
    tiny uptick into a spike. Days with fewer than ``min_history_days`` days of history are never
    spikes.
    """

    window_days: int = 28
    k_sigma: float = 3.0
    min_history_days: int = 7
    poisson_floor: bool = True


# ------------------------------------------------------------------------------------------------
# Pure transforms


def iso_dayofweek(date_col: str | Column) -> Column:
    """ISO day of week, Monday = 1 .. Sunday = 7 (from ``dayofweek``: Sail's ``weekday`` is off)."""
    return (F.dayofweek(date_col) + 5) % 7 + 1


def period_start(date_col: str, period: Period) -> Column:
    """Monday of the ISO week, or the first day of the month, of ``date_col``."""
    if period == "week":
        return F.date_sub(F.col(date_col), (iso_dayofweek(date_col) - 1).cast("int"))
    return F.trunc(F.col(date_col), "month")


def _period_length(date_col: str, period: Period) -> Column:
    return F.lit(7) if period == "week" else F.dayofmonth(F.last_day(F.col(date_col)))


def lake_calendar(gold: DataFrame, ledger: DataFrame | None = None) -> DataFrame:
    """Every date (``event_date``) from the lake's first to its last date, gaps included.

    Args:
        gold: ``gold_daily_projectviews``.
        ledger: ``bronze_file_ledger`` (its dates count too: a date with files but no clean row).
    """
    dates = gold.select("event_date")
    if ledger is not None:
        dates = dates.unionByName(ledger.where(F.col("event_date").isNotNull()).select("event_date"))
    bounds = dates.agg(F.min("event_date").alias("lo"), F.max("event_date").alias("hi")).where(F.col("lo").isNotNull())
    return bounds.select(F.explode(F.sequence("lo", "hi")).alias("event_date"))


def hourly_completeness(ledger: DataFrame, calendar: DataFrame, min_hours: int = 24) -> DataFrame:
    """Hourly files present per date, from the ledger (a file with no lines still counts).

    Returns:
        ``event_date``, ``hours_present`` (0 for a date with no file at all), ``incomplete``
        (fewer than ``min_hours`` files).
    """
    hours = (
        ledger.where(F.col("event_date").isNotNull())
        .groupBy("event_date")
        .agg(F.countDistinct("event_timestamp").alias("_hours"))
    )
    return _completeness(calendar, hours, min_hours)


def completeness_from_gold(gold: DataFrame, calendar: DataFrame, min_hours: int = 24) -> DataFrame:
    """A lower bound of :func:`hourly_completeness` for lakes without a ledger: the most hours any
    domain was seen in on each date."""
    hours = gold.groupBy("event_date").agg(F.max("hours_present").alias("_hours"))
    return _completeness(calendar, hours, min_hours)


def _completeness(calendar: DataFrame, hours: DataFrame, min_hours: int) -> DataFrame:
    present = F.coalesce(F.col("_hours"), F.lit(0)).cast("int")
    return calendar.join(hours, ["event_date"], "left").select(
        "event_date",
        present.alias("hours_present"),
        (present < F.lit(min_hours)).alias("incomplete"),
    )


def dense_domain_days(gold: DataFrame, calendar: DataFrame) -> DataFrame:
    """One row per domain and day, from the domain's first day with views to the lake's last day.

    Returns:
        ``domain_code``, ``event_date``, ``count_views`` (0 when the domain has no gold row that
        day), ``present`` (it has a gold row).
    """
    end = calendar.agg(F.max("event_date").alias("calendar_end"))
    first = (
        gold.where(F.col("count_views") > 0)
        .groupBy("domain_code")
        .agg(F.min("event_date").alias("first_seen"))
        .crossJoin(end)
        .where(F.col("first_seen") <= F.col("calendar_end"))
    )
    spine = first.select("domain_code", F.explode(F.sequence("first_seen", "calendar_end")).alias("event_date"))
    views = gold.select("domain_code", "event_date", F.col("count_views").alias("_views"))
    return spine.join(views, ["domain_code", "event_date"], "left").select(
        "domain_code",
        "event_date",
        F.coalesce(F.col("_views"), F.lit(0)).cast("bigint").alias("count_views"),
        F.col("_views").isNotNull().alias("present"),
    )


def with_streaks(domain_days: DataFrame) -> DataFrame:
    """Add ``active`` (views > 0) and ``streak``: consecutive active days up to and including this
    one (0 on an inactive day). ``domain_days`` must be dense (one row per calendar day)."""
    by_day = Window.partitionBy("domain_code").orderBy("event_date")
    upto = by_day.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    active = F.col("count_views") > 0
    # Each inactive day opens a new run; the active days after it count up within that run.
    runs = domain_days.withColumn("active", active).withColumn("_run", F.sum((~F.col("active")).cast("int")).over(upto))
    in_run = (
        Window.partitionBy("domain_code", "_run")
        .orderBy("event_date")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    streak = F.when(F.col("active"), F.sum(F.col("active").cast("int")).over(in_run)).otherwise(F.lit(0))
    return runs.withColumn("streak", streak.cast("int")).drop("_run")


def with_spikes(domain_days: DataFrame, rule: SpikeRule = SpikeRule()) -> DataFrame:
    """Add the trailing baseline (``baseline_mean``, ``baseline_std``, ``spike_threshold``) and
    ``is_spike`` (see :class:`SpikeRule`). ``domain_days`` must be dense."""
    trailing = Window.partitionBy("domain_code").orderBy("event_date").rowsBetween(-rule.window_days, -1)
    v = F.col("count_views").cast("double")
    n = F.count(v).over(trailing)
    mean = F.avg(v).over(trailing)
    # Sail 0.7.2 may answer NaN for the sample deviation of a constant window; Spark answers 0.
    constant = F.max(v).over(trailing) == F.min(v).over(trailing)
    std = (
        F.when(n < 2, F.lit(None))
        .when(constant, F.lit(0.0))
        .otherwise(F.nanvl(F.stddev_samp(v).over(trailing), F.lit(0.0)))
    )
    framed = domain_days.withColumns({"_n": n, "baseline_mean": mean, "baseline_std": std})
    scale = F.col("baseline_std")
    if rule.poisson_floor:
        scale = F.greatest(scale, F.sqrt(F.col("baseline_mean")))
    threshold = F.col("baseline_mean") + F.lit(rule.k_sigma) * scale
    spike = (F.col("_n") >= rule.min_history_days) & (F.col("count_views").cast("double") > threshold)
    return framed.withColumns(
        {
            "spike_threshold": F.when(F.col("_n") >= rule.min_history_days, threshold),
            "is_spike": F.coalesce(spike, F.lit(False)),
        }
    ).drop("_n")


def daily_engagement(gold: DataFrame) -> DataFrame:
    """``event_date``, ``total_views`` (all domains), ``active_domains`` (domains with views)."""
    return gold.groupBy("event_date").agg(
        F.sum("count_views").cast("bigint").alias("total_views"),
        F.count(F.when(F.col("count_views") > 0, True)).cast("int").alias("active_domains"),
    )


def concentration(gold: DataFrame, top_n: int = 10) -> DataFrame:
    """Per date: ``hhi`` = sum of squared view shares, ``diversity`` = 1 - HHI, ``top10_share``
    (share of the ``top_n`` biggest domains; named for the default)."""
    positive = gold.where(F.col("count_views") > 0)
    day = Window.partitionBy("event_date")
    ranked = positive.select(
        "event_date",
        (F.col("count_views") / F.sum("count_views").over(day)).alias("share"),
        F.row_number().over(day.orderBy(F.col("count_views").desc(), F.col("domain_code"))).alias("rank"),
    )
    return (
        ranked.groupBy("event_date")
        .agg(
            F.sum(F.col("share") * F.col("share")).alias("hhi"),
            F.sum(F.when(F.col("rank") <= top_n, F.col("share")).otherwise(F.lit(0.0))).alias("top10_share"),
        )
        .withColumn("diversity", F.lit(1.0) - F.col("hhi"))
    )


def streak_summary(domain_streaks: DataFrame) -> DataFrame:
    """Per date, over domains active that day: ``mean_streak`` and ``median_streak`` (days)."""
    return (
        domain_streaks.where(F.col("active"))
        .groupBy("event_date")
        .agg(
            F.avg("streak").alias("mean_streak"),
            F.median("streak").cast("double").alias("median_streak"),
        )
    )


def period_views(gold: DataFrame, calendar: DataFrame, period: Period) -> DataFrame:
    """Views per ISO week or month, per domain (``level = 'domain'``) and in total (``'total'``,
    ``domain_code`` null).

    Returns:
        ``level``, ``domain_code``, ``week_start`` | ``month_start``, ``views``, ``days_with_views``,
        ``lake_days`` (dates of the lake's calendar in the period), ``period_days`` (7, or the
        month's length) and ``partial`` (the lake does not cover the whole period).
    """
    key = f"{period}_start"
    dated = gold.withColumn(key, period_start("event_date", period))
    per_domain = dated.groupBy("domain_code", key).agg(
        F.sum("count_views").cast("bigint").alias("views"),
        F.count(F.when(F.col("count_views") > 0, True)).cast("int").alias("days_with_views"),
    )
    daily = gold.groupBy("event_date").agg(F.sum("count_views").alias("_total"))
    total = (
        daily.withColumn(key, period_start("event_date", period))
        .groupBy(key)
        .agg(
            F.sum("_total").cast("bigint").alias("views"),
            F.count(F.when(F.col("_total") > 0, True)).cast("int").alias("days_with_views"),
        )
        .withColumn("domain_code", F.lit(None).cast("string"))
    )
    coverage = (
        calendar.withColumn(key, period_start("event_date", period))
        .withColumn("_len", _period_length("event_date", period))
        .groupBy(key)
        .agg(F.count(F.lit(1)).cast("int").alias("lake_days"), F.max("_len").cast("int").alias("period_days"))
    )
    both = per_domain.withColumn("level", F.lit("domain")).unionByName(total.withColumn("level", F.lit("total")))
    return both.join(coverage, [key], "left").select(
        "level",
        "domain_code",
        key,
        "views",
        "days_with_views",
        "lake_days",
        "period_days",
        (F.col("lake_days") < F.col("period_days")).alias("partial"),
    )


def weekday_seasonality(gold: DataFrame, domains: DataFrame, completeness: DataFrame) -> DataFrame:
    """Mean daily views by ISO day of week, over complete dates, per access type and for ``all``.

    Args:
        gold: ``gold_daily_projectviews``.
        domains: ``domain_code``, ``access`` (e.g. :func:`wikichurn.pipeline.lakehouse.features.domain_metadata`).
        completeness: :func:`hourly_completeness` (incomplete dates would read as weekday effects).

    Returns:
        ``access``, ``dayofweek`` (Monday = 1), ``mean_views``, ``dates``.
    """
    complete = completeness.where(~F.col("incomplete")).select("event_date")
    views = gold.join(complete, ["event_date"], "inner")
    by_access = (
        views.join(domains.select("domain_code", "access"), ["domain_code"], "left")
        .withColumn("access", F.coalesce(F.col("access"), F.lit("unknown")))
        .groupBy("event_date", "access")
        .agg(F.sum("count_views").alias("views"))
    )
    overall = views.groupBy("event_date").agg(F.sum("count_views").alias("views")).withColumn("access", F.lit("all"))
    return (
        by_access.unionByName(overall)
        .groupBy("access", iso_dayofweek("event_date").alias("dayofweek"))
        .agg(F.avg("views").alias("mean_views"), F.count(F.lit(1)).cast("int").alias("dates"))
    )


def weekend_ratio(seasonality: DataFrame) -> DataFrame:
    """Per access: mean of the Saturday/Sunday means over the mean of the Monday..Friday means.

    Returns:
        ``access``, ``weekday_mean``, ``weekend_mean``, ``weekend_weekday_ratio``.
    """
    weekend = F.col("dayofweek") >= 6
    return (
        seasonality.groupBy("access")
        .agg(
            F.avg(F.when(~weekend, F.col("mean_views"))).alias("weekday_mean"),
            F.avg(F.when(weekend, F.col("mean_views"))).alias("weekend_mean"),
        )
        .withColumn(
            "weekend_weekday_ratio",
            F.when(F.col("weekday_mean") > 0, F.col("weekend_mean") / F.col("weekday_mean")),
        )
    )


def churn_rate_by_date(features: DataFrame) -> DataFrame:
    """Per date, over rows with an available label: ``churn_base_rate``, ``labelled_rows``,
    ``churn_positives``."""
    return _churn_rate(features, "event_date")


def churn_rate_by_family(features: DataFrame) -> DataFrame:
    """Per ``project_family``: ``churn_base_rate``, ``labelled_rows``, ``churn_positives``,
    ``domains`` (with at least one label)."""
    return _churn_rate(features, "project_family", F.countDistinct("domain_code").cast("int").alias("domains"))


def churn_rate_by_domain(features: DataFrame) -> DataFrame:
    """Per ``domain_code``: ``churn_base_rate``, ``labelled_rows``, ``churn_positives``."""
    return _churn_rate(features, "domain_code")


def _churn_rate(features: DataFrame, key: str, *extra: Column) -> DataFrame:
    return (
        features.where(F.col("label_available"))
        .groupBy(key)
        .agg(
            F.avg("churn").alias("churn_base_rate"),
            F.count(F.lit(1)).cast("bigint").alias("labelled_rows"),
            F.sum("churn").cast("bigint").alias("churn_positives"),
            *extra,
        )
    )


def spike_list(domain_days: DataFrame) -> DataFrame:
    """The spike days of :func:`with_spikes`: ``domain_code``, ``event_date``, ``count_views``,
    ``baseline_mean``, ``baseline_std``, ``spike_threshold``, ``excess_views`` (views above the
    trailing mean), ``ratio_to_baseline``, ``z_score``."""
    return domain_days.where(F.col("is_spike")).select(
        "domain_code",
        "event_date",
        "count_views",
        "baseline_mean",
        "baseline_std",
        "spike_threshold",
        (F.col("count_views") - F.col("baseline_mean")).alias("excess_views"),
        F.when(F.col("baseline_mean") > 0, F.col("count_views") / F.col("baseline_mean")).alias("ratio_to_baseline"),
        F.when(
            F.col("baseline_std") > 0, (F.col("count_views") - F.col("baseline_mean")) / F.col("baseline_std")
        ).alias("z_score"),
    )


def daily_kpis(
    calendar: DataFrame,
    engagement: DataFrame,
    concentration_: DataFrame,
    streaks: DataFrame,
    completeness: DataFrame,
    churn_daily: DataFrame | None = None,
) -> DataFrame:
    """``gold_kpis_daily``: one row per calendar date (dates without data have 0 views)."""
    if churn_daily is None:
        churn_daily = calendar.select(
            "event_date",
            F.lit(None).cast("double").alias("churn_base_rate"),
            F.lit(None).cast("bigint").alias("labelled_rows"),
            F.lit(None).cast("bigint").alias("churn_positives"),
        ).where(F.lit(False))
    joined = (
        calendar.join(engagement, ["event_date"], "left")
        .join(concentration_, ["event_date"], "left")
        .join(streaks, ["event_date"], "left")
        .join(completeness, ["event_date"], "left")
        .join(churn_daily, ["event_date"], "left")
    )
    return joined.select(
        "event_date",
        iso_dayofweek("event_date").cast("int").alias("dayofweek"),
        F.coalesce("total_views", F.lit(0)).cast("bigint").alias("total_views"),
        F.coalesce("active_domains", F.lit(0)).cast("int").alias("active_domains"),
        "hhi",
        "diversity",
        "top10_share",
        "mean_streak",
        "median_streak",
        F.coalesce("hours_present", F.lit(0)).cast("int").alias("hours_present"),
        F.coalesce("incomplete", F.lit(True)).alias("incomplete"),
        "churn_base_rate",
        F.coalesce("labelled_rows", F.lit(0)).cast("bigint").alias("labelled_rows"),
    )


def domain_kpis(
    gold: DataFrame,
    domain_days: DataFrame,
    domains: DataFrame,
    churn_domain: DataFrame | None = None,
) -> DataFrame:
    """``gold_kpis_domain``: one row per domain code of gold.

    Args:
        gold: ``gold_daily_projectviews``.
        domain_days: :func:`dense_domain_days` with :func:`with_streaks` and :func:`with_spikes`.
        domains: ``domain_code``, ``language``, ``project_family``, ``access``.
        churn_domain: :func:`churn_rate_by_domain` (optional).
    """
    stats = domain_days.groupBy("domain_code").agg(
        F.min("event_date").alias("first_seen"),
        F.max(F.when(F.col("active"), F.col("event_date"))).alias("last_seen"),
        F.count(F.lit(1)).cast("int").alias("calendar_days"),
        F.sum(F.col("active").cast("int")).cast("int").alias("active_days"),
        F.sum((~F.col("present")).cast("int")).cast("int").alias("missing_days"),
        F.sum((F.col("present") & (F.col("count_views") == 0)).cast("int")).cast("int").alias("zero_view_days"),
        F.sum("count_views").cast("bigint").alias("total_views"),
        F.avg("count_views").alias("mean_daily_views"),
        F.max("count_views").cast("bigint").alias("max_daily_views"),
        F.max_by("streak", "event_date").cast("int").alias("current_streak"),
        F.max("streak").cast("int").alias("longest_streak"),
        F.sum(F.col("is_spike").cast("int")).cast("int").alias("spike_count"),
    )
    codes = gold.select("domain_code").distinct()
    if churn_domain is None:
        churn_domain = codes.select(
            "domain_code",
            F.lit(None).cast("double").alias("churn_base_rate"),
            F.lit(None).cast("bigint").alias("labelled_rows"),
            F.lit(None).cast("bigint").alias("churn_positives"),
        ).where(F.lit(False))
    joined = (
        codes.join(stats, ["domain_code"], "left")
        .join(domains.select("domain_code", "language", "project_family", "access"), ["domain_code"], "left")
        .join(churn_domain.drop("churn_positives"), ["domain_code"], "left")
    )
    zero = F.lit(0)
    return joined.select(
        "domain_code",
        "language",
        "project_family",
        "access",
        "first_seen",
        "last_seen",
        F.coalesce("calendar_days", zero).cast("int").alias("calendar_days"),
        F.coalesce("active_days", zero).cast("int").alias("active_days"),
        F.coalesce("missing_days", zero).cast("int").alias("missing_days"),
        F.coalesce("zero_view_days", zero).cast("int").alias("zero_view_days"),
        F.coalesce("total_views", zero).cast("bigint").alias("total_views"),
        F.coalesce("mean_daily_views", F.lit(0.0)).alias("mean_daily_views"),
        F.coalesce("max_daily_views", zero).cast("bigint").alias("max_daily_views"),
        F.coalesce("current_streak", zero).cast("int").alias("current_streak"),
        F.coalesce("longest_streak", zero).cast("int").alias("longest_streak"),
        F.coalesce("spike_count", zero).cast("int").alias("spike_count"),
        "churn_base_rate",
        F.coalesce("labelled_rows", zero).cast("bigint").alias("labelled_rows"),
    )


# ------------------------------------------------------------------------------------------------
# The job


@dataclass
class EdaResult:
    """What :func:`run_eda` wrote and found."""

    out_dir: Path
    report: Path
    plots: dict[str, Path]
    tables: dict[str, int]
    first_date: str | None
    last_date: str | None
    dates: int
    domains: int
    total_views: int
    churn_base_rate: float | None
    labelled_rows: int
    median_hhi: float | None
    incomplete_dates: int
    spikes: int
    weekend_weekday_ratio: float | None
    mlflow_run_id: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Headline numbers as MLflow metrics (None left out)."""
        values: dict[str, float | int | None] = {
            "churn_base_rate": self.churn_base_rate,
            "labelled_rows": self.labelled_rows,
            "median_hhi": self.median_hhi,
            "incomplete_dates": self.incomplete_dates,
            "spikes": self.spikes,
            "weekend_weekday_ratio": self.weekend_weekday_ratio,
            "dates": self.dates,
            "domains": self.domains,
            "total_views": self.total_views,
        }
        return {k: float(v) for k, v in values.items() if v is not None and not _isnan(v)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` output)."""
        return {
            "out_dir": str(self.out_dir),
            "report": str(self.report),
            "plots": {name: str(path) for name, path in self.plots.items()},
            "tables": dict(self.tables),
            "first_date": self.first_date,
            "last_date": self.last_date,
            "dates": self.dates,
            "domains": self.domains,
            "total_views": self.total_views,
            "churn_base_rate": self.churn_base_rate,
            "labelled_rows": self.labelled_rows,
            "median_hhi": self.median_hhi,
            "incomplete_dates": self.incomplete_dates,
            "spikes": self.spikes,
            "weekend_weekday_ratio": self.weekend_weekday_ratio,
            "mlflow_run_id": self.mlflow_run_id,
            "seconds": round(self.seconds, 2),
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        """A short human summary."""
        rate = "n/a" if self.churn_base_rate is None else f"{self.churn_base_rate:.1%}"
        hhi = "n/a" if self.median_hhi is None else f"{self.median_hhi:.3f}"
        ratio = "n/a" if self.weekend_weekday_ratio is None else f"{self.weekend_weekday_ratio:.2f}"
        counts = ", ".join(f"{name} {rows:,}" for name, rows in self.tables.items())
        lines = [
            f"EDA of {self.dates} dates ({self.first_date} .. {self.last_date}), {self.domains:,} domains, "
            f"{self.total_views:,} views",
            f"churn base rate {rate} over {self.labelled_rows:,} labelled rows; median daily HHI {hhi}; "
            f"weekend/weekday views {ratio}; {self.incomplete_dates} incomplete dates; {self.spikes} spikes",
            f"tables: {counts}",
            f"report: {self.report} ({len(self.plots)} plots in {self.report.parent / PLOTS_FOLDER})",
        ]
        if self.mlflow_run_id:
            lines.append(f"mlflow: run {self.mlflow_run_id} in experiment {EDA_EXPERIMENT}")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append(f"{self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass
class EdaFrames:
    """The small aggregates the plots and the report are drawn from (pandas)."""

    daily: pd.DataFrame
    domains: pd.DataFrame
    weekly: pd.DataFrame
    monthly: pd.DataFrame
    spikes: pd.DataFrame
    seasonality: pd.DataFrame
    weekend: pd.DataFrame
    churn_family: pd.DataFrame
    spike_series: pd.DataFrame
    top_domains: list[str]


def run_eda(
    spark: SparkSession,
    settings: Settings,
    out_dir: Path,
    *,
    spike_rule: SpikeRule = SpikeRule(),
    mlflow_artifact_location: str | None = None,
) -> EdaResult:
    """Compute the EDA KPI tables, write them to the lake, draw the plots and the HTML report.

    Args:
        spark: the session from :func:`wikichurn.pipeline.spark.build_spark`.
        settings: the lake location, table format, churn completeness threshold and MLflow URI.
        out_dir: folder for ``report.html`` and ``plots/*.png`` (created if needed).
        spike_rule: the spike definition.
        mlflow_artifact_location: artifact root used only if the MLflow experiment is created here.

    Returns:
        Paths, table row counts and headline numbers.

    Raises:
        FileNotFoundError: the lake has no gold table yet.
    """
    started = time.monotonic()
    lake = Lake(spark, settings)
    if not lake.exists(tables.GOLD_DAILY):
        raise FileNotFoundError(f"no {tables.GOLD_DAILY} in {lake.root}: run `wikichurn pipeline run` first")
    notes: list[str] = []
    gold = lake.read(tables.GOLD_DAILY).select("domain_code", "count_views", "hours_present", "event_date")
    ledger = lake.read(tables.BRONZE_LEDGER) if lake.exists(tables.BRONZE_LEDGER) else None
    features = lake.read(GOLD_FEATURES) if lake.exists(GOLD_FEATURES) else None
    if ledger is None:
        notes.append(f"no {tables.BRONZE_LEDGER}: hourly completeness is a lower bound taken from gold")
    if features is None:
        notes.append(f"no {GOLD_FEATURES}: churn base rates are not available (run `wikichurn features`)")

    min_hours = settings.churn.min_hours_complete
    calendar = lake_calendar(gold, ledger)
    completeness = (
        hourly_completeness(ledger, calendar, min_hours)
        if ledger is not None
        else completeness_from_gold(gold, calendar, min_hours)
    )
    codes = [row[0] for row in gold.select("domain_code").distinct().collect()]
    meta = domain_metadata(spark, codes)
    domain_days = with_spikes(with_streaks(dense_domain_days(gold, calendar)), spike_rule)

    kpi_frames = {
        GOLD_KPIS_DAILY: daily_kpis(
            calendar,
            daily_engagement(gold),
            concentration(gold),
            streak_summary(domain_days),
            completeness,
            churn_rate_by_date(features) if features is not None else None,
        ),
        GOLD_KPIS_DOMAIN: domain_kpis(
            gold, domain_days, meta, churn_rate_by_domain(features) if features is not None else None
        ),
        GOLD_KPIS_WEEKLY: period_views(gold, calendar, "week"),
        GOLD_KPIS_MONTHLY: period_views(gold, calendar, "month"),
        GOLD_QUALITY_SPIKES: spike_list(domain_days),
    }
    for name, frame in kpi_frames.items():
        lake.overwrite(frame, name)
        log.info("eda: wrote %s", name)

    frames = _collect(lake, gold, calendar, completeness, meta, features, spike_rule)
    row_counts = {
        GOLD_KPIS_DAILY: len(frames.daily),
        GOLD_KPIS_DOMAIN: len(frames.domains),
        GOLD_KPIS_WEEKLY: lake.count(GOLD_KPIS_WEEKLY),
        GOLD_KPIS_MONTHLY: lake.count(GOLD_KPIS_MONTHLY),
        GOLD_QUALITY_SPIKES: len(frames.spikes),
    }

    out_dir = Path(out_dir)
    plots = render_plots(frames, out_dir / PLOTS_FOLDER, spike_rule=spike_rule, min_hours=min_hours)
    result = _headline(frames, out_dir, plots, row_counts, notes)
    result.report = write_report(frames, result, out_dir / REPORT_NAME, settings=settings, spike_rule=spike_rule)

    uri = settings.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        result.mlflow_run_id = log_to_mlflow(result, uri, artifact_location=mlflow_artifact_location)
    result.seconds = time.monotonic() - started
    log.info(result.describe())
    return result


def _collect(
    lake: Lake,
    gold: DataFrame,
    calendar: DataFrame,
    completeness: DataFrame,
    meta: DataFrame,
    features: DataFrame | None,
    spike_rule: SpikeRule,
) -> EdaFrames:
    import pandas as pd

    daily = lake.read(GOLD_KPIS_DAILY).orderBy("event_date").toPandas()
    domains = lake.read(GOLD_KPIS_DOMAIN).toPandas().sort_values("total_views", ascending=False, ignore_index=True)
    spikes = lake.read(GOLD_QUALITY_SPIKES).toPandas()
    top = domains["domain_code"].head(5).tolist()

    def period(table: str, key: str) -> pd.DataFrame:
        wanted = (F.col("level") == "total") | F.col("domain_code").isin(top) if top else F.col("level") == "total"
        return lake.read(table).where(wanted).orderBy(key).toPandas()

    seasonality_df = weekday_seasonality(gold, meta, completeness)
    seasonality = seasonality_df.toPandas().sort_values(["access", "dayofweek"], ignore_index=True)
    weekend = weekend_ratio(seasonality_df).toPandas()
    if features is not None:
        churn_family = churn_rate_by_family(features).toPandas().sort_values("labelled_rows", ascending=False)
    else:
        churn_family = pd.DataFrame(columns=["project_family", "churn_base_rate", "labelled_rows", "churn_positives"])

    # A few big domains with spikes (the biggest domains when nothing spiked), recomputed alone:
    # the windows are per domain, so filtering gold first gives the same values.
    with_spike = domains[domains["spike_count"] > 0]["domain_code"].head(4).tolist()
    shown = with_spike or domains["domain_code"].head(4).tolist()
    series = (
        with_spikes(dense_domain_days(gold.where(F.col("domain_code").isin(shown)), calendar), spike_rule)
        .select("domain_code", "event_date", "count_views", "baseline_mean", "spike_threshold", "is_spike")
        .toPandas()
        if shown
        else pd.DataFrame(columns=["domain_code", "event_date", "count_views"])
    )
    return EdaFrames(
        daily=daily,
        domains=domains,
        weekly=period(GOLD_KPIS_WEEKLY, "week_start"),
        monthly=period(GOLD_KPIS_MONTHLY, "month_start"),
        # Biggest excess first: a tiny domain going from 1 to 6 views is a spike, but not news.
        spikes=spikes.sort_values(["excess_views", "domain_code"], ascending=[False, True], ignore_index=True),
        seasonality=seasonality,
        weekend=weekend,
        churn_family=churn_family.reset_index(drop=True),
        spike_series=series.sort_values(["domain_code", "event_date"], ignore_index=True),
        top_domains=top,
    )


def _isnan(value: float | int) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _headline(
    frames: EdaFrames, out_dir: Path, plots: dict[str, Path], row_counts: dict[str, int], notes: list[str]
) -> EdaResult:
    daily, family = frames.daily, frames.churn_family
    labelled = int(family["labelled_rows"].sum()) if len(family) else 0
    positives = int(family["churn_positives"].fillna(0).sum()) if len(family) else 0
    hhi = daily["hhi"].dropna()
    overall = frames.weekend[frames.weekend["access"] == "all"]["weekend_weekday_ratio"].dropna()
    return EdaResult(
        out_dir=out_dir,
        report=out_dir / REPORT_NAME,
        plots=plots,
        tables=row_counts,
        first_date=str(daily["event_date"].min()) if len(daily) else None,
        last_date=str(daily["event_date"].max()) if len(daily) else None,
        dates=len(daily),
        domains=len(frames.domains),
        total_views=int(daily["total_views"].sum()) if len(daily) else 0,
        churn_base_rate=positives / labelled if labelled else None,
        labelled_rows=labelled,
        median_hhi=float(hhi.median()) if len(hhi) else None,
        incomplete_dates=int(daily["incomplete"].sum()) if len(daily) else 0,
        spikes=len(frames.spikes),
        weekend_weekday_ratio=float(overall.iloc[0]) if len(overall) else None,
        notes=notes,
    )


def log_to_mlflow(result: EdaResult, tracking_uri: str, *, artifact_location: str | None = None) -> str:
    """Log the report, the plots and the headline numbers as a run ``eda`` of ``wikichurn-eda``.

    Uses an explicit client (no global MLflow state, no active run left behind).

    Returns:
        The MLflow run id.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EDA_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(EDA_EXPERIMENT, artifact_location=artifact_location)
    )
    run = client.create_run(experiment_id, run_name=EDA_RUN_NAME, tags={"wikichurn.kind": "eda"})
    run_id = run.info.run_id
    try:
        for name, value in result.metrics().items():
            client.log_metric(run_id, name, value)
        for table, rows in result.tables.items():
            client.log_metric(run_id, f"rows_{table}", float(rows))
        if result.first_date:
            client.log_param(run_id, "first_date", result.first_date)
            client.log_param(run_id, "last_date", result.last_date)
        client.log_artifact(run_id, str(result.report))
        plots_dir = result.report.parent / PLOTS_FOLDER
        for path in result.plots.values():
            client.log_artifact(run_id, str(path), artifact_path=PLOTS_FOLDER if path.parent == plots_dir else None)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    log.info("eda: logged to MLflow run %s (%s)", run_id, tracking_uri)
    return run_id


# ------------------------------------------------------------------------------------------------
# Plots

_BLUE, _ORANGE, _RED, _GREEN, _GREY, _PURPLE = "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#7f7f7f", "#9467bd"
_ACCESS_COLOURS = {"all": "#222222", "desktop": _BLUE, "mobile": _ORANGE, "zero": _GREEN, "unknown": _GREY}

PLOT_FILES: dict[str, str] = {
    "total_daily_views": "01_total_daily_views.png",
    "weekly_monthly_views": "02_weekly_monthly_views.png",
    "active_domains": "03_active_domains.png",
    "concentration": "04_concentration.png",
    "streaks": "05_streaks.png",
    "weekday_seasonality": "06_weekday_seasonality.png",
    "domain_sizes": "07_domain_sizes.png",
    "completeness": "08_completeness.png",
    "missing_zero_days": "09_missing_zero_days.png",
    "spikes": "10_spikes.png",
    "churn_base_rate": "11_churn_base_rate.png",
}


def _figure(ncols: int = 1, nrows: int = 1, width: float = 11.0, height: float = 4.6) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _dates(values: Any) -> Any:
    import pandas as pd

    return pd.to_datetime(pd.Series(values)).to_numpy()


def _date_axis(ax: Axes) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("date (UTC)")


def _style(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=_GREY, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _human(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _log_axis(ax: Axes, axis: str = "y") -> None:
    """Log scale with readable labels (160M, not 1.6 x 10^8), minor ticks labelled on short spans."""
    from matplotlib.ticker import FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    ax.set_yscale("log") if axis == "y" else ax.set_xscale("log")

    def minor(value: float, _pos: int) -> str:
        lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
        if value <= 0 or lo <= 0:
            return ""
        span = hi / lo
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
        if span <= 6 or (span <= 40 and mantissa in (2, 5)):
            return _human(value)
        return ""

    target.set_major_formatter(FuncFormatter(lambda value, _pos: _human(value)))
    target.set_minor_formatter(FuncFormatter(minor))


def _percent(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def render_plots(
    frames: EdaFrames, plots_dir: Path, *, spike_rule: SpikeRule = SpikeRule(), min_hours: int = 24
) -> dict[str, Path]:
    """Draw every EDA plot into ``plots_dir`` (created if needed); name -> PNG path."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    drawers: dict[str, Callable[[], Figure]] = {
        "total_daily_views": lambda: _plot_total_views(frames.daily),
        "weekly_monthly_views": lambda: _plot_periods(frames.weekly, frames.monthly, frames.top_domains),
        "active_domains": lambda: _plot_active_domains(frames.daily),
        "concentration": lambda: _plot_concentration(frames.daily),
        "streaks": lambda: _plot_streaks(frames.daily),
        "weekday_seasonality": lambda: _plot_seasonality(frames.seasonality, frames.weekend),
        "domain_sizes": lambda: _plot_domain_sizes(frames.domains),
        "completeness": lambda: _plot_completeness(frames.daily, min_hours),
        "missing_zero_days": lambda: _plot_missing_zero(frames.domains),
        "spikes": lambda: _plot_spikes(frames.spike_series, spike_rule),
        "churn_base_rate": lambda: _plot_churn(frames.daily, frames.churn_family),
    }
    return {name: _save(draw(), plots_dir / PLOT_FILES[name]) for name, draw in drawers.items()}


def _incomplete_marks(ax: Axes, daily: pd.DataFrame, column: str) -> None:
    bad = daily[daily["incomplete"] & (daily[column] > 0)]
    if len(bad):
        ax.scatter(
            _dates(bad["event_date"]),
            bad[column],
            marker="x",
            color=_RED,
            zorder=3,
            label=f"incomplete date ({len(bad)})",
        )


def _plot_total_views(daily: pd.DataFrame) -> Figure:
    fig, axes = _figure()
    ax = axes[0][0]
    data = daily[daily["total_views"] > 0]
    if data.empty:
        _empty(ax, "no views in the lake")
        return fig
    ax.plot(_dates(data["event_date"]), data["total_views"], color=_BLUE, lw=1.6, label="all domains")
    _incomplete_marks(ax, data, "total_views")
    _log_axis(ax)
    _style(ax, "Total daily views (all domains)", "views per day (log scale)")
    _date_axis(ax)
    ax.legend(loc="best", frameon=False)
    return fig


def _plot_periods(weekly: pd.DataFrame, monthly: pd.DataFrame, top_domains: Sequence[str]) -> Figure:
    import numpy as np
    import pandas as pd

    fig, axes = _figure(ncols=2, height=4.8, width=12.0)
    colours = {code: f"C{i + 1}" for i, code in enumerate(top_domains)}
    handles: dict[str, Any] = {}
    for ax, data, key, label in (
        (axes[0][0], weekly, "week_start", "Weekly views (ISO weeks, Monday start)"),
        (axes[0][1], monthly, "month_start", "Monthly views"),
    ):
        total = data[data["level"] == "total"]
        if total.empty:
            _empty(ax, "no data")
            continue
        start = pd.to_datetime(total[key])
        length = total["period_days"].to_numpy(dtype=float)
        full = ~total["partial"].to_numpy(dtype=bool)
        views = total["views"].to_numpy(dtype=float)
        # Each bar spans its period; a small gap keeps neighbours apart.
        bars = {"width": length * 0.94, "align": "edge"}
        handles["total"] = ax.bar(start.to_numpy()[full], views[full], color=_BLUE, alpha=0.3, **_subset(bars, full))
        if (~full).any():
            handles["total, partial period (hatched)"] = ax.bar(
                start.to_numpy()[~full],
                views[~full],
                color="white",
                edgecolor=_BLUE,
                hatch="//",
                **_subset(bars, ~full),
            )
        for x0, days, lake_days, height in zip(
            start.to_numpy()[~full], length[~full], total["lake_days"].to_numpy()[~full], views[~full], strict=True
        ):
            middle = x0 + np.timedelta64(int(days * 12), "h")
            ax.annotate(
                f"{int(lake_days)}/{int(days)} days",
                (middle, height),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=_BLUE,
            )
        domains = data[data["level"] == "domain"]
        for code in top_domains:
            rows = domains[domains["domain_code"] == code]
            if rows.empty:
                continue
            middle = pd.to_datetime(rows[key]) + pd.to_timedelta(rows["period_days"] / 2, unit="D")
            (line,) = ax.plot(middle, rows["views"], marker="o", ms=4, lw=1.3, color=colours[code])
            handles[code] = line
        _log_axis(ax)
        _style(ax, label, "views per period (log scale)")
        _date_axis(ax)
        ax.set_xlim(start.min() - pd.Timedelta(days=1), (start + pd.to_timedelta(length, unit="D")).max())
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside right upper", frameon=False, fontsize=8)
    return fig


def _subset(options: dict[str, Any], mask: Any) -> dict[str, Any]:
    return {k: (v[mask] if hasattr(v, "__len__") and not isinstance(v, str) else v) for k, v in options.items()}


def _plot_active_domains(daily: pd.DataFrame) -> Figure:
    fig, axes = _figure()
    ax = axes[0][0]
    if daily.empty:
        _empty(ax, "no data")
        return fig
    ax.plot(_dates(daily["event_date"]), daily["active_domains"], color=_GREEN, lw=1.6, label="domains with views")
    _incomplete_marks(ax, daily, "active_domains")
    ax.set_ylim(bottom=0)
    _style(ax, "Active domains per day (domains with at least one view)", "domains")
    _date_axis(ax)
    ax.legend(loc="lower right", frameon=False)
    return fig


def _plot_concentration(daily: pd.DataFrame) -> Figure:
    fig, axes = _figure()
    ax = axes[0][0]
    data = daily.dropna(subset=["hhi"])
    if data.empty:
        _empty(ax, "no views in the lake")
        return fig
    x = _dates(data["event_date"])
    ax.plot(x, data["hhi"], color=_RED, lw=1.6, label="HHI = sum of squared shares")
    ax.plot(x, data["diversity"], color=_GREEN, lw=1.6, label="diversity = 1 - HHI")
    ax.plot(x, data["top10_share"], color=_PURPLE, lw=1.2, ls="--", label="top-10 domains' share")
    ax.set_ylim(0, 1.02)
    _style(ax, "Concentration of daily views over domains", "index / share (0 .. 1)")
    _date_axis(ax)
    ax.legend(loc="center right", frameon=False, fontsize=9)
    return fig


def _plot_streaks(daily: pd.DataFrame) -> Figure:
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure()
    ax = axes[0][0]
    data = daily.dropna(subset=["mean_streak"])
    if data.empty:
        _empty(ax, "no active domain")
        return fig
    x = _dates(data["event_date"])
    ax.plot(x, data["mean_streak"], color=_BLUE, lw=1.6, label="mean")
    ax.plot(x, data["median_streak"], color=_ORANGE, lw=1.6, ls="--", label="median")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _style(
        ax,
        "Current streak of consecutive days with views, over the domains active that day",
        "streak length (days)",
    )
    _date_axis(ax)
    ax.legend(loc="upper left", frameon=False)
    return fig


def _plot_seasonality(seasonality: pd.DataFrame, weekend: pd.DataFrame) -> Figure:
    fig, axes = _figure(ncols=2, height=4.6)
    left, right = axes[0][0], axes[0][1]
    if seasonality.empty:
        _empty(left, "no complete date")
        _empty(right, "no complete date")
        return fig
    ratios = dict(zip(weekend["access"], weekend["weekend_weekday_ratio"], strict=False))
    order = [a for a in ("all", "desktop", "mobile", "zero", "unknown") if a in set(seasonality["access"])]
    for access in order:
        rows = seasonality[seasonality["access"] == access].sort_values("dayofweek")
        ratio = ratios.get(access)
        label = f"{access} (weekend/weekday {ratio:.2f})" if ratio is not None and not _isnan(ratio) else access
        colour = _ACCESS_COLOURS.get(access, _GREY)
        style = {"lw": 2.4 if access == "all" else 1.6, "marker": "o", "color": colour}
        index = rows["mean_views"] / rows["mean_views"].mean()
        left.plot(rows["dayofweek"], index, label=label, **style)
        right.plot(rows["dayofweek"], rows["mean_views"], label=access, **style)
    left.axhline(1.0, color=_GREY, lw=0.8)
    for ax in (left, right):
        ax.set_xticks(range(1, 8), DAY_NAMES)
        ax.set_xlabel("ISO day of week")
        ax.axvspan(5.5, 7.5, color=_GREY, alpha=0.08)
        ax.set_xlim(0.7, 7.3)
    _style(left, "Weekday profile (mean views / weekly mean)", "relative to the weekly mean (1 = average day)")
    left.legend(loc="best", frameon=False, fontsize=8)
    _log_axis(right)
    _style(right, "Mean daily views by day of week (complete dates)", "views per day (log scale)")
    right.legend(loc="best", frameon=False, fontsize=8)
    return fig


def _plot_domain_sizes(domains: pd.DataFrame) -> Figure:
    import numpy as np

    fig, axes = _figure(ncols=2, height=4.6)
    left, right = axes[0][0], axes[0][1]
    sizes = domains["mean_daily_views"].to_numpy(dtype=float)
    sizes = np.sort(sizes[sizes > 0])[::-1]
    if sizes.size == 0:
        _empty(left, "no domain with views")
        _empty(right, "no domain with views")
        return fig
    lo, hi = math.floor(math.log10(sizes.min())), math.ceil(math.log10(sizes.max()))
    bins = np.logspace(lo, max(hi, lo + 1), max(8, 4 * (hi - lo) + 1))
    left.hist(sizes, bins=bins, color=_BLUE, alpha=0.8, edgecolor="white")
    _log_axis(left, "x")
    _log_axis(left)
    left.set_xlabel("mean daily views of the domain (log scale)")
    _style(left, f"Distribution of domain sizes ({sizes.size:,} domains)", "domains (log scale)")
    ranks = np.arange(1, sizes.size + 1)
    right.plot(ranks, sizes, marker="o", ms=2.5, lw=1, color=_PURPLE)
    _log_axis(right, "x")
    _log_axis(right)
    right.set_xlabel("rank of the domain by size (log scale)")
    _style(right, "Rank-size plot", "mean daily views (log scale)")
    return fig


def _plot_completeness(daily: pd.DataFrame, min_hours: int) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11.0, 5.4), dpi=110, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    if daily.empty:
        _empty(top, "no data")
        bottom.set_visible(False)
        return fig
    x = _dates(daily["event_date"])
    bad_mask = daily["incomplete"].to_numpy(dtype=bool)
    hours = daily["hours_present"].to_numpy()
    # Full-width bars: with a year of dates, narrower ones turn into hairlines.
    top.bar(x[~bad_mask], hours[~bad_mask], width=1.0, color=_BLUE, linewidth=0)
    top.bar(x[bad_mask], hours[bad_mask], width=1.0, color=_RED, linewidth=0)
    top.scatter(x[bad_mask], [25.5] * int(bad_mask.sum()), marker="v", color=_RED, s=18, zorder=3)
    top.axhline(24, color="black", lw=0.8, ls="--")
    if min_hours != 24:
        top.axhline(min_hours, color=_RED, lw=0.8, ls=":")
    bad = int(bad_mask.sum())
    top.set_ylim(0, 30)
    top.set_yticks([0, 6, 12, 18, 24])
    top.legend(
        handles=[
            Patch(color=_BLUE, label=f"complete ({len(daily) - bad} dates)"),
            Patch(color=_RED, label=f"incomplete: fewer than {min_hours} hourly files ({bad} dates, marked ▼)"),
        ],
        loc="upper left",
        ncols=2,
        frameon=False,
        fontsize=9,
    )
    _style(top, "Hourly completeness per date (24 = every hourly file present)", "hourly files present")
    missing = 24 - hours
    bottom.bar(x, missing, width=1.0, color=_RED, linewidth=0)
    bottom.set_ylim(0, max(int(missing.max()), 1) * 1.15)
    bottom.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    _style(bottom, "", "missing hourly files")
    _date_axis(bottom)
    return fig


def _plot_missing_zero(domains: pd.DataFrame) -> Figure:
    import numpy as np

    fig, axes = _figure(ncols=2, height=5.0)
    left, right = axes[0][0], axes[0][1]
    alive = domains[domains["calendar_days"] > 0]
    if alive.empty:
        _empty(left, "no domain with views")
        _empty(right, "no domain with views")
        return fig
    missing = alive["missing_days"].to_numpy()
    top = max(int(missing.max()), 1)
    bins = np.arange(-0.5, top + 1.5, max(1, math.ceil((top + 1) / 40)))
    left.hist(missing, bins=bins, color=_ORANGE, edgecolor="white")
    _log_axis(left)
    left.set_xlabel("missing days in the domain's calendar (no gold row)")
    _style(left, "Domains by number of missing days", "domains (log scale)")
    inactive = alive.assign(_bad=alive["missing_days"] + alive["zero_view_days"])
    worst = inactive[inactive["_bad"] > 0].sort_values(["_bad", "domain_code"], ascending=[False, True]).head(15)
    if worst.empty:
        _empty(right, "no domain missed a day")
    else:
        worst = worst.iloc[::-1]
        y = np.arange(len(worst))
        right.barh(y, worst["missing_days"], color=_ORANGE, label="missing (no row)")
        right.barh(y, worst["zero_view_days"], left=worst["missing_days"], color=_GREY, label="zero views reported")
        right.set_yticks(y, worst["domain_code"], fontsize=8)
        right.set_xlabel("days")
        right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, frameon=False, fontsize=8)
        right.set_title("Domains with the most days without views", fontsize=11, loc="left")
        right.grid(True, axis="x", alpha=0.3)
        right.spines[["top", "right"]].set_visible(False)
    return fig


def _plot_spikes(series: pd.DataFrame, rule: SpikeRule) -> Figure:
    codes = list(dict.fromkeys(series["domain_code"])) if len(series) else []
    if not codes:
        fig, axes = _figure()
        _empty(axes[0][0], "no domain to show")
        return fig
    ncols = 2 if len(codes) > 1 else 1
    nrows = math.ceil(len(codes) / ncols)
    fig, axes = _figure(ncols=ncols, nrows=nrows, height=3.2 * nrows + 0.6)
    for i, code in enumerate(codes):
        ax = axes[i // ncols][i % ncols]
        rows = series[series["domain_code"] == code]
        x = _dates(rows["event_date"])
        views = rows["count_views"].astype(float).where(rows["count_views"] > 0)
        ax.plot(x, views, color=_BLUE, lw=1.3, label="daily views")
        ax.plot(x, rows["baseline_mean"], color=_GREY, lw=1, ls="--", label=f"trailing {rule.window_days}-day mean")
        ax.plot(x, rows["spike_threshold"], color=_ORANGE, lw=1, ls=":", label=f"threshold (+{rule.k_sigma:g} sd)")
        hits = rows[rows["is_spike"]]
        ax.scatter(_dates(hits["event_date"]), hits["count_views"], color=_RED, zorder=3, s=28, label="spike")
        _log_axis(ax)
        _style(ax, f"{code}: {len(hits)} spike(s)", "views per day (log)")
        _date_axis(ax)
        if i == 0:
            fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    for j in range(len(codes), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.suptitle("Spikes on the biggest domains that have any (red: views above the threshold)", fontsize=12)
    return fig


def _plot_churn(daily: pd.DataFrame, family: pd.DataFrame) -> Figure:
    import numpy as np

    fig, axes = _figure(ncols=2, height=4.8)
    left, right = axes[0][0], axes[0][1]
    if daily["churn_base_rate"].notna().sum() == 0:
        _empty(left, "no labelled row")
    else:
        # Every date, so dates without labels break the line instead of being bridged.
        x = _dates(daily["event_date"])
        counts = left.twinx()
        counts.step(x, daily["labelled_rows"], where="mid", color=_GREY, lw=1, alpha=0.8)
        counts.set_ylim(bottom=0)
        counts.set_ylabel("labelled domain-days", color=_GREY)
        counts.spines[["top"]].set_visible(False)
        left.set_zorder(counts.get_zorder() + 1)
        left.patch.set_visible(False)
        rate = daily["churn_base_rate"].astype(float)
        left.plot(x, rate, color=_RED, lw=1.6, marker="o", ms=2.5, label="churn base rate")
        left.set_ylim(bottom=0)
        _percent(left)
        _style(left, "Churn base rate per date (labelled rows only)", "share of labelled domains churning")
        _date_axis(left)
        from matplotlib.lines import Line2D

        handles = [
            *left.get_legend_handles_labels()[0],
            Line2D([], [], color=_GREY, lw=1, label="labelled rows (right axis)"),
        ]
        left.legend(handles=handles, loc="lower left", frameon=False, fontsize=8)
    fam = family.dropna(subset=["churn_base_rate"]) if len(family) else family
    if fam.empty:
        _empty(right, "no labelled row")
    else:
        fam = fam.sort_values("churn_base_rate")
        y = np.arange(len(fam))
        right.barh(y, fam["churn_base_rate"], color=_RED, alpha=0.75)
        right.set_yticks(y, fam["project_family"], fontsize=9)
        for yi, (rate, n) in enumerate(zip(fam["churn_base_rate"], fam["labelled_rows"], strict=True)):
            right.text(rate, yi, f" {rate:.1%} (n={int(n):,})", va="center", fontsize=8)
        right.set_xlim(0, max(float(fam["churn_base_rate"].max()) * 1.35, 0.05))
        _percent(right, "x")
        right.set_xlabel("churn base rate")
        right.set_title("Churn base rate by project family", fontsize=11, loc="left")
        right.grid(True, axis="x", alpha=0.3)
        right.spines[["top", "right"]].set_visible(False)
    return fig


# ------------------------------------------------------------------------------------------------
# Report

_SECTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "total_daily_views",
        "Total daily views",
        "Sum of <code>count_views</code> over every domain per UTC date (views per day; the "
        "'daily active users' of this data set, counted in views). Log scale. Red crosses mark "
        "incomplete dates, which read low only because hourly files are missing.",
    ),
    (
        "weekly_monthly_views",
        "Weekly and monthly views",
        "Views summed per ISO week (Monday start) and per calendar month, in total (bars) and for "
        "the five biggest domains (lines). Hatched bars are partial periods at the edges of the "
        "lake, which are short by construction.",
    ),
    (
        "active_domains",
        "Active domains",
        "Domains with at least one view on the date. A drop that coincides with an incomplete date "
        "is a data gap, not churn.",
    ),
    (
        "concentration",
        "Concentration",
        "HHI = sum over domains of (domain's share of the day's views)<sup>2</sup>: 1 when one "
        "domain has every view, 1/n when n domains are equal. Diversity = 1 - HHI. The top-10 "
        "share is the share of the ten biggest domains that day.",
    ),
    (
        "streaks",
        "Streaks",
        "For every domain and day: the number of consecutive days up to that day with views > 0 "
        "(a day the domain is absent from counts as 0 views). Mean and median over the domains "
        "active that day. Streaks cannot be longer than the lake, so both grow with its age.",
    ),
    (
        "weekday_seasonality",
        "Weekday seasonality",
        "Mean daily views per ISO day of week over complete dates, for all domains and per access "
        "type (desktop / mobile, parsed from the domain code). Left: relative to that access "
        "type's weekly mean; the legend gives the weekend / weekday ratio (mean of the Sat and Sun "
        "means over the mean of the Mon..Fri means).",
    ),
    (
        "domain_sizes",
        "Domain sizes",
        "Mean daily views of each domain over its calendar (first day with views to the lake's "
        "last day, absent days as 0): a log-log histogram and a rank-size plot. Sizes span many "
        "orders of magnitude.",
    ),
    (
        "completeness",
        "Hourly completeness",
        "Distinct hourly files per date in the bronze ledger (a file with no lines still counts). "
        "24 is complete; red bars are incomplete dates, whose churn labels the strict policy "
        "marks unavailable.",
    ),
    (
        "missing_zero_days",
        "Missing and zero-view days",
        "Over each domain's calendar: <em>missing</em> days have no gold row (the domain is in no "
        "hourly file that day), <em>zero-view</em> days have a row that says 0 views. Both count "
        "as 0 views for streaks and churn.",
    ),
    (
        "spikes",
        "Spikes",
        "A day is a spike when its views exceed the mean + k standard deviations of the domain's "
        "trailing window (the day itself excluded; the deviation is floored at the Poisson noise "
        "sqrt(mean)). Shown: the biggest domains with at least one spike.",
    ),
    (
        "churn_base_rate",
        "Churn base rate",
        "Share of labelled domain-days (<code>label_available</code>) with <code>churn = 1</code> in "
        "<code>gold_churn_features</code>, per date and per project family.",
    ),
)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.muted{color:#666}.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.card b{display:block;font-size:1.4em}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
"""


def _fmt(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "float":
        return f"{float(value):,.2f}"
    if kind == "float3":
        return f"{float(value):.3f}"
    return html.escape(str(value))


def _table(df: pd.DataFrame, columns: Sequence[tuple[str, str, str]], empty: str, limit: int = 15) -> str:
    """An HTML table of ``df``'s ``(column, header, kind)`` columns, at most ``limit`` rows."""
    if df is None or df.empty:
        return f"<p class='muted'>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(header)}</th>" for _c, header, _k in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row[c], k)}</td>" for c, _h, k in columns) + "</tr>"
        for _i, row in df.head(limit).iterrows()
    )
    more = f"<p class='muted'>… and {len(df) - limit:,} more.</p>" if len(df) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def write_report(
    frames: EdaFrames,
    result: EdaResult,
    path: Path,
    *,
    settings: Settings | None = None,
    spike_rule: SpikeRule = SpikeRule(),
) -> Path:
    """Write one self-contained HTML page (plots embedded as base64 PNG) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    daily, domains = frames.daily, frames.domains
    rate = _fmt(result.churn_base_rate, "pct")
    cards = [
        ("dates", f"{result.dates:,}", f"{result.first_date} .. {result.last_date}"),
        ("domains", f"{result.domains:,}", "in gold"),
        ("total views", _human(result.total_views), "over the whole lake"),
        ("churn base rate", rate, f"over {result.labelled_rows:,} labelled rows"),
        ("median daily HHI", _fmt(result.median_hhi, "float3"), "1/n for n equal domains"),
        ("incomplete dates", f"{result.incomplete_dates:,}", "fewer hourly files than needed"),
        ("spikes", f"{result.spikes:,}", f"> mean + {spike_rule.k_sigma:g} sd, {spike_rule.window_days} days"),
        ("weekend / weekday", _fmt(result.weekend_weekday_ratio, "float3"), "mean views ratio, all domains"),
    ]
    card_html = "".join(
        f"<div class='card'><span class='muted'>{html.escape(t)}</span><b>{html.escape(v)}</b>"
        f"<span class='muted'>{html.escape(s)}</span></div>"
        for t, v, s in cards
    )
    incomplete = daily[daily["incomplete"]].sort_values("event_date") if len(daily) else daily
    missing = domains[domains["missing_days"] > 0].sort_values(
        ["missing_days", "total_views"], ascending=[False, False]
    )
    quirks = [
        "<h3>Incomplete dates</h3>",
        _table(
            incomplete,
            [("event_date", "date", ""), ("hours_present", "hourly files", "int"), ("total_views", "views", "int")],
            "Every date has all its hourly files.",
            limit=30,
        ),
        "<h3>Top spikes (by views above the trailing mean)</h3>",
        _table(
            frames.spikes,
            [
                ("domain_code", "domain", ""),
                ("event_date", "date", ""),
                ("count_views", "views", "int"),
                ("baseline_mean", "trailing mean", "float"),
                ("excess_views", "excess views", "int"),
                ("ratio_to_baseline", "ratio", "float"),
                ("z_score", "z", "float"),
            ],
            "No spike found.",
        ),
        "<h3>Domains with the most missing days</h3>",
        _table(
            missing,
            [
                ("domain_code", "domain", ""),
                ("missing_days", "missing days", "int"),
                ("zero_view_days", "zero-view days", "int"),
                ("calendar_days", "calendar days", "int"),
                ("mean_daily_views", "mean views/day", "float"),
            ],
            "No domain misses a day of its calendar.",
        ),
        "<h3>Weekend / weekday ratio by access type (complete dates)</h3>",
        _table(
            frames.weekend.sort_values("access"),
            [
                ("access", "access", ""),
                ("weekday_mean", "weekday mean views", "float"),
                ("weekend_mean", "weekend mean views", "float"),
                ("weekend_weekday_ratio", "ratio", "float3"),
            ],
            "No complete date.",
        ),
    ]
    churn = [
        f"<p>Overall churn base rate: <b>{rate}</b> of {result.labelled_rows:,} labelled domain-days.</p>",
        _table(
            frames.churn_family,
            [
                ("project_family", "project family", ""),
                ("churn_base_rate", "churn base rate", "pct"),
                ("labelled_rows", "labelled rows", "int"),
                ("churn_positives", "positives", "int"),
                ("domains", "domains", "int"),
            ],
            "No labelled row (gold_churn_features missing or no label available).",
            limit=30,
        ),
    ]
    sections = []
    for name, title, text in _SECTIONS:
        if name not in result.plots:
            continue
        sections.append(f"<h2 id='{name}'>{html.escape(title)}</h2><p>{text}</p>{_image(result.plots[name], title)}")
        if name == "churn_base_rate":
            sections.append("".join(churn))
    counts = "".join(f"<tr><td>{html.escape(n)}</td><td>{r:,}</td></tr>" for n, r in result.tables.items())
    where = html.escape(settings.lake_uri) if settings is not None else ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wikichurn EDA</title><style>{_CSS}</style></head>
<body>
<h1>wikichurn: exploratory data analysis</h1>
<p class="muted">Lake <code>{where}</code>, generated {generated}. Dates are UTC.</p>
<div class="cards">{card_html}</div>
{f"<ul>{notes}</ul>" if notes else ""}
<h2 id="quirks">Quirks found</h2>
{"".join(quirks)}
{"".join(sections)}
<h2 id="tables">KPI tables written</h2>
<table><tr><th>table</th><th>rows</th></tr>{counts}</table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
