"""Small helpers shared by the transforms (lakehouse and EDA): conforming to a schema, the dense
per-domain calendar."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


def conform(df: DataFrame, schema: StructType) -> DataFrame:
    """``df`` with exactly the columns of ``schema``, in order, cast to its types."""
    return df.select(*(F.col(field.name).cast(field.dataType).alias(field.name) for field in schema.fields))


def domain_spine(gold: DataFrame, dates: DataFrame) -> DataFrame:
    """One row per domain and day, from the domain's first day with views to the last date of ``dates``.

    The dense calendar the window statistics need: a day on which a domain is in no file has no gold
    row, but it is a day of 0 views, not a day that did not happen.

    Args:
        gold: rows with ``domain_code``, ``event_date`` and ``count_views``.
        dates: rows with ``event_date``; the spine ends at its latest date.

    Returns:
        ``domain_code``, ``first_seen``, ``calendar_end``, ``event_date`` (domains whose first day
        with views is after ``calendar_end`` have no rows).
    """
    end = dates.agg(F.max("event_date").alias("calendar_end"))
    first_seen = (
        gold.where(F.col("count_views") > 0)
        .groupBy("domain_code")
        .agg(F.min("event_date").alias("first_seen"))
        .crossJoin(end)
        .where(F.col("first_seen") <= F.col("calendar_end"))
    )
    return first_seen.select(
        "domain_code",
        "first_seen",
        "calendar_end",
        F.explode(F.sequence("first_seen", "calendar_end")).alias("event_date"),
    )
