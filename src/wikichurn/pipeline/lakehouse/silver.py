"""Silver: parsed projectviews rows, and a quarantine for every line that is not one.

Data-quality rules are data: an ordered mapping from reason code to a SQL condition that flags a
bad row. The first rule that fires names the row's ``dq_reason``; a row no rule flags is clean.
Every bronze row lands in exactly one of the two tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from wikichurn.pipeline.lakehouse.frames import conform
from wikichurn.pipeline.lakehouse.schemas import SILVER_CLEAN_SCHEMA, SILVER_QUARANTINE_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# `<lang>[.m|.zero][.<project>]` and specials like `commons.m`, `zh-min-nan`, `be-tarask`.
# `[.]`, not `\.`: the pattern goes into a SQL string literal, which unescapes `\.` to `.` (any
# character), and `e\x00n` or `enéa` would pass (found by tests/reliability/test_parser_fuzz.py).
DOMAIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*([.][A-Za-z0-9_-]+)*$"
# The hour a file covers, from its name; seconds (HH00SS in some old files) are ignored.
FILE_TIME_SQL = (
    r"try_to_timestamp(regexp_extract(_file_name, '^projectviews-(\\d{8}-\\d{2})00\\d{2}$', 1), 'yyyyMMdd-HH')"
)

# The first hour of the projectviews dumps.
FIRST_HOUR = "2015-05-01 00:00:00"

# `domain_code page_title count_views total_response_size`, single spaces.
FOUR_FIELDS = r"^[^ ]* [^ ]* [^ ]* [^ ]*$"

# Row rules, in order: reason code -> SQL condition that is TRUE for a bad row.
ROW_RULES: dict[str, str] = {
    "unparseable_file_name": "_event_timestamp IS NULL",
    # Projectviews start in May 2015, and no file can hold an hour after the run that read it: such
    # a name is corrupt, and its rows would stretch every domain's calendar over years of zeros.
    "file_date_out_of_range": f"_event_timestamp < TIMESTAMP'{FIRST_HOUR}' OR _event_timestamp > _ingested_at",
    "wrong_field_count": "NOT _four_fields",
    "empty_domain": "_domain = ''",
    "invalid_domain": f"NOT (_domain RLIKE '{DOMAIN_PATTERN}')",
    "unexpected_page_title": "_page_title <> '-'",
    "non_numeric_count": "NOT (_count_text RLIKE '^-?[0-9]+$')",
    "negative_count": "_count_text LIKE '-%'",
    "count_out_of_range": "try_cast(_count_text AS BIGINT) IS NULL",
}
# Hour rules see only rows that passed every row rule. A domain listed twice for one hour (twice
# in one hourly file, or in two files naming the same hour) is ambiguous (which count is right?),
# so every copy is quarantined rather than one picked at random.
HOUR_RULES: dict[str, str] = {
    "duplicate_domain_in_hour": "_domain_rows_in_hour > 1",
}
DQ_REASONS: tuple[str, ...] = (*ROW_RULES, *HOUR_RULES)


def _first_failing(rules: dict[str, str]) -> F.Column:
    branches = " ".join(f"WHEN {condition} THEN '{reason}'" for reason, condition in rules.items())
    return F.expr(f"CASE {branches} ELSE NULL END")


def parse_bronze(bronze: DataFrame) -> DataFrame:
    """Split each bronze line into typed fields and attach its ``dq_reason`` (NULL when clean)."""
    # The hour is a property of the file: parse each file name once, not once per line.
    files = (
        bronze.select("_source_path")
        .distinct()
        .withColumn("_file_name", F.regexp_extract("_source_path", r"([^/]+)$", 1))
        .withColumn("_event_timestamp", F.expr(FILE_TIME_SQL))
        .drop("_file_name")
    )
    # One regular expression per field: cheaper than split() + get(), which engines without
    # common-subexpression elimination recompute for every reference.
    parsed = (
        bronze.join(F.broadcast(files), ["_source_path"], "left")
        .withColumn("_four_fields", F.col("value").rlike(FOUR_FIELDS))
        .withColumn("_domain", F.regexp_extract("value", r"^([^ ]*)", 1))
        .withColumn("_page_title", F.regexp_extract("value", r"^[^ ]* ([^ ]*)", 1))
        .withColumn("_count_text", F.regexp_extract("value", r"^[^ ]* [^ ]* ([^ ]*)", 1))
        .withColumn("_row_reason", _first_failing(ROW_RULES))
    )
    # Rows per domain and hour among otherwise valid rows, joined back only where a domain
    # repeats: a hash aggregate on a fixed-width key plus a (normally empty) join is much cheaper
    # than a window, or than grouping by the long path string. Valid rows always have an hour.
    repeated = (
        parsed.where(F.col("_row_reason").isNull())
        .groupBy("_event_timestamp", "_domain")
        .agg(F.count(F.lit(1)).alias("_domain_rows_in_hour"))
        .where(F.col("_domain_rows_in_hour") > 1)
    )
    parsed = parsed.join(repeated, ["_event_timestamp", "_domain"], "left").withColumn(
        "_domain_rows_in_hour",
        F.when(F.col("_row_reason").isNull(), F.coalesce("_domain_rows_in_hour", F.lit(1))).otherwise(F.lit(0)),
    )
    return parsed.withColumn("dq_reason", F.coalesce(F.col("_row_reason"), _first_failing(HOUR_RULES)))


# What clean_rows and quarantined_rows need from parse_bronze's output.
PARSED_COLUMNS: tuple[str, ...] = (
    "value",
    "_source_path",
    "_ingested_at",
    "_domain",
    "_count_text",
    "_event_timestamp",
    "dq_reason",
)


def clean_rows(parsed: DataFrame) -> DataFrame:
    """Rows no rule flagged, in the ``silver_projectviews_clean`` schema."""
    clean = parsed.where(F.col("dq_reason").isNull()).select(
        F.col("_domain").alias("domain_code"),
        F.col("_count_text").cast("bigint").alias("count_views"),
        F.col("_event_timestamp").alias("event_timestamp"),
        F.to_date("_event_timestamp").alias("event_date"),
        "_source_path",
        "_ingested_at",
    )
    return conform(clean, SILVER_CLEAN_SCHEMA)


def quarantined_rows(parsed: DataFrame) -> DataFrame:
    """Rows some rule flagged, with the raw line and the reason, in the quarantine schema."""
    return conform(parsed.where(F.col("dq_reason").isNotNull()), SILVER_QUARANTINE_SCHEMA)
