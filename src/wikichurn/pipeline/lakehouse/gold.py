"""Gold: daily projectviews per domain, the grain the churn model works on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from wikichurn.pipeline.lakehouse.frames import conform
from wikichurn.pipeline.lakehouse.schemas import GOLD_DAILY_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def build_gold_daily(clean: DataFrame) -> DataFrame:
    """Sum clean hourly rows to ``domain_code`` x ``event_date``.

    ``hours_present`` counts the distinct hourly files the domain appears in that day: with the
    day's file count it tells a real drop from a day that is merely incomplete. A file holds at most
    one clean row per domain (silver quarantines every copy of a domain listed twice in an hour,
    and a file is one hour), so counting rows counts files: as exact as a distinct count of
    ``_source_path`` and ~5x cheaper on Sail (measured on the benchmark year).

    Args:
        clean: rows of ``silver_projectviews_clean`` covering whole days.

    Returns:
        ``domain_code``, ``count_views``, ``hours_present``, ``event_date``.
    """
    daily = clean.groupBy("domain_code", "event_date").agg(
        F.sum("count_views").alias("count_views"),
        F.count(F.lit(1)).alias("hours_present"),
    )
    return conform(daily, GOLD_DAILY_SCHEMA)
