"""EDA data quirks: hourly completeness per date, weekday seasonality and the weekend / weekday
ratio, and spikes (views far above a domain's trailing baseline). Missing and zero-view days are
counted per domain in :func:`wikichurn.pipeline.eda.kpis.domain_kpis`.

Pure transforms (``DataFrame -> DataFrame``): no session, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import Window
from pyspark.sql import functions as F

from wikichurn.pipeline.compat import iso_dayofweek, window_stddev

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

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


def with_spikes(domain_days: DataFrame, rule: SpikeRule = SpikeRule()) -> DataFrame:
    """Add the trailing baseline (``baseline_mean``, ``baseline_std``, ``spike_threshold``) and
    ``is_spike`` (see :class:`SpikeRule`). ``domain_days`` must be dense."""
    trailing = Window.partitionBy("domain_code").orderBy("event_date").rowsBetween(-rule.window_days, -1)
    v = F.col("count_views").cast("double")
    n = F.count(v).over(trailing)
    mean = F.avg(v).over(trailing)
    std = window_stddev(v, trailing)
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
