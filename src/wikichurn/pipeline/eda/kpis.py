"""EDA engagement KPIs: the lake's calendar, daily / weekly / monthly views, active domains,
streaks of consecutive days with views, concentration (HHI, diversity, top-10 share), churn base
rates, and the two KPI tables built from them (``gold_kpis_daily``, ``gold_kpis_domain``).

Pure transforms (``DataFrame -> DataFrame``): no session, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pyspark.sql import Window
from pyspark.sql import functions as F

from wikichurn.pipeline.compat import iso_dayofweek
from wikichurn.pipeline.lakehouse.frames import domain_spine

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

Period = Literal["week", "month"]


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


def dense_domain_days(gold: DataFrame, calendar: DataFrame) -> DataFrame:
    """One row per domain and day, from the domain's first day with views to the lake's last day.

    Returns:
        ``domain_code``, ``event_date``, ``count_views`` (0 when the domain has no gold row that
        day), ``present`` (it has a gold row).
    """
    spine = domain_spine(gold, calendar)
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


def _no_churn_rates(keys: DataFrame, key: str) -> DataFrame:
    """An empty frame shaped like :func:`_churn_rate` (for lakes without ``gold_churn_features``)."""
    return keys.select(
        key,
        F.lit(None).cast("double").alias("churn_base_rate"),
        F.lit(None).cast("bigint").alias("labelled_rows"),
        F.lit(None).cast("bigint").alias("churn_positives"),
    ).where(F.lit(False))


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
        churn_daily = _no_churn_rates(calendar, "event_date")
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
        churn_domain = _no_churn_rates(codes, "domain_code")
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
