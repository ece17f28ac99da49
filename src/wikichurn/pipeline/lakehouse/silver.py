"""Silver: parsed projectviews rows, and a quarantine for every line that is not one.

Data-quality rules are data: an ordered mapping from reason code to a SQL condition that flags a
bad row. The first rule that fires names the row's ``dq_reason``; a row no rule flags is clean.
Every bronze row lands in exactly one of the two tables.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from wikichurn.pipeline.lakehouse.frames import conform
from wikichurn.pipeline.lakehouse.schemas import SILVER_CLEAN_SCHEMA, SILVER_QUARANTINE_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# `<lang>[.m|.zero][.<project>]` and specials like `commons.m`, `zh-min-nan`, `be-tarask`.
# `[.]`, not `\.`: the pattern goes into a SQL string literal, which unescapes `\.` to `.` (any
# character), and `e\x00n` or `enéa` would pass (found by tests/reliability/test_parser_fuzz.py).
_DOMAIN = r"[A-Za-z0-9][A-Za-z0-9_-]*([.][A-Za-z0-9_-]+)*"
DOMAIN_PATTERN = f"^{_DOMAIN}$"
# The shape of nearly every real line: a valid domain, page title `-`, a count of at most 18 digits
# (so it always fits a BIGINT), and a fourth field; exactly three spaces. A line of this shape
# passes every row rule, and one match over the whole line proves it. Why: the engine evaluates the
# rules one after another, each cutting its field out of the line again (Sail has no common
# subexpression elimination inside CASE), and on a year's 7.6 M lines the rules took 4.0 s, the
# pattern 1.1 s. Lines it does not match go through the rules in order, so every reason is the same.
CLEAN_LINE_PATTERN = f"^{_DOMAIN} - [0-9]{{1,18}} [^ ]*$"
# The hour a file covers, from its name; seconds (HH00SS in some old files) are ignored.
FILE_TIME_SQL = (
    r"try_to_timestamp(regexp_extract(_file_name, '^projectviews-(\\d{8}-\\d{2})00\\d{2}$', 1), 'yyyyMMdd-HH')"
)

# The first hour of the projectviews dumps (the default of ``pipeline.first_file_hour``; a replay of
# older projectcounts-era totals, as the real backtest builds, sets it earlier).
FIRST_HOUR = datetime(2015, 5, 1)

# A line is `domain_code page_title count_views total_response_size`, single spaces: exactly
# three spaces (`^[^ ]* [^ ]* [^ ]* [^ ]*$`), counted without a regular expression.
FOUR_FIELDS_SQL = "length(value) - length(replace(value, ' ', '')) = 3"

# Row rules, in order: reason code -> SQL condition that is TRUE for a bad row.
ROW_RULES: dict[str, str] = {
    "unparseable_file_name": "_event_timestamp IS NULL",
    # Projectviews start in May 2015, and no file can hold an hour after the run that read it: such
    # a name is corrupt, and its rows would stretch every domain's calendar over years of zeros.
    "file_date_out_of_range": "_event_timestamp < _first_hour OR _event_timestamp > _ingested_at",
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


def _first_failing_sql(rules: dict[str, str]) -> str:
    branches = " ".join(f"WHEN {condition} THEN '{reason}'" for reason, condition in rules.items())
    return f"CASE {branches} ELSE NULL END"


def _first_failing(rules: dict[str, str]) -> F.Column:
    return F.expr(_first_failing_sql(rules))


def row_reason(*, shortcut: bool = True) -> F.Column:
    """The first row rule a :func:`parse_fields` row fails (NULL when it passes them all).

    With ``shortcut``, a line of :data:`CLEAN_LINE_PATTERN`'s shape in a file of a valid hour is
    passed without evaluating the rules one by one (the same answer, much cheaper; the tests compare
    both forms).
    """
    rules = _first_failing_sql(ROW_RULES)
    if not shortcut:
        return F.expr(rules)
    # NULL-safe: a NULL hour or ingestion time makes the test NULL, so the rules decide the row.
    passes = (
        f"value RLIKE '{CLEAN_LINE_PATTERN}' AND _event_timestamp >= _first_hour AND _event_timestamp <= _ingested_at"
    )
    return F.expr(f"CASE WHEN {passes} THEN NULL ELSE {rules} END")


def file_hours(paths: DataFrame) -> DataFrame:
    """The hour each file covers, from its name: ``_source_path`` -> ``_event_timestamp`` (NULL if none)."""
    return (
        paths.select("_source_path")
        .distinct()
        .withColumn("_file_name", F.regexp_extract("_source_path", r"([^/]+)$", 1))
        .withColumn("_event_timestamp", F.expr(FILE_TIME_SQL))
        .drop("_file_name")
    )


# A 64-bit key of a file's path, for the join of bronze with the file hours (see parse_fields).
PATH_KEY = "_path_key"


def path_key() -> F.Column:
    """``xxhash64(_source_path)``: the :data:`PATH_KEY` of a row's file."""
    return F.xxhash64("_source_path")


def parse_fields(bronze: DataFrame, hours: DataFrame, first_hour: datetime = FIRST_HOUR) -> DataFrame:
    """Split each bronze line into fields and name the first failing row rule (``_row_reason``).

    Args:
        bronze: rows of ``bronze_projectviews``.
        hours: :func:`file_hours` of (at least) every file in ``bronze``: ``_source_path`` and
            ``_event_timestamp``, or ``_path_key`` (:func:`path_key`) instead of the path when the
            caller has checked that no two of those files share a key. The keyed frame is a few
            bytes a file, so Sail joins it in place; a frame of paths it plans as a shuffle of
            every line (measured: the clean write of a year 4.3 -> 3.4 s, one file a day, not two).
        first_hour: files naming an earlier hour are ``file_date_out_of_range``.
    """
    if PATH_KEY in hours.columns:
        joined = bronze.withColumn(PATH_KEY, path_key()).join(hours, [PATH_KEY], "left").drop(PATH_KEY)
    else:
        joined = bronze.join(F.broadcast(hours), ["_source_path"], "left")
    # Plain string functions, not regular expressions (measured ~2x faster on Sail), and not
    # split() + get(), which engines without common-subexpression elimination recompute for every
    # reference. The fields other than the count of spaces are taken
    # only from rows that have them (every later rule is behind wrong_field_count), where
    # substring_index gives the same text as the patterns would.
    return (
        joined
        # A SQL literal: read in the session zone (UTC), as the file hours are.
        .withColumn("_first_hour", F.expr(f"TIMESTAMP'{first_hour:%Y-%m-%d %H:%M:%S}'"))
        .withColumn("_four_fields", F.expr(FOUR_FIELDS_SQL))
        .withColumn("_domain", F.substring_index("value", " ", 1))
        .withColumn("_page_title", F.substring_index(F.substring_index("value", " ", 2), " ", -1))
        .withColumn("_count_text", F.substring_index(F.substring_index("value", " ", 3), " ", -1))
        .withColumn("_row_reason", row_reason())
    )


def repeated_domain_hours(fields: DataFrame) -> DataFrame:
    """``_event_timestamp``, ``_domain``, ``_domain_rows_in_hour`` of domains listed more than once in
    an hour among rows that passed every row rule (valid rows always have an hour)."""
    # A hash aggregate on a fixed-width key: much cheaper than a window over (hour, domain).
    return (
        fields.where(F.col("_row_reason").isNull())
        .groupBy("_event_timestamp", "_domain")
        .agg(F.count(F.lit(1)).alias("_domain_rows_in_hour"))
        .where(F.col("_domain_rows_in_hour") > 1)
    )


def rule_findings(fields: DataFrame) -> DataFrame:
    """In one aggregate, what the passes after the rules need to know (normally a few rows):

    - ``_event_timestamp``, ``_domain``, ``_rows`` (> 1): a domain listed more than once in an hour,
      among rows that passed every row rule, as :func:`repeated_domain_hours` gives it;
    - ``_event_timestamp``, ``_domain`` NULL: an hour (NULL: a file without one) with rows some row
      rule flagged.

    A row of a file whose hour is in neither list is clean, so the quarantine needs to look at the
    files of those hours only. (The flagged rows are keyed by hour, not file: a second key column
    made the aggregate over a year's lines a fifth dearer.)
    """
    passed = F.col("_row_reason").isNull()
    return (
        fields.select("_event_timestamp", F.when(passed, F.col("_domain")).alias("_domain"))
        .groupBy("_event_timestamp", "_domain")
        .agg(F.count(F.lit(1)).alias("_rows"))
        .where(F.col("_domain").isNull() | (F.col("_rows") > 1))
    )


def repeated_counts(repeated: Sequence[Sequence[Any]]) -> F.Column:
    """How often a row's domain is listed in its hour, for rows that passed every row rule (0 for
    the others), given ``repeated``: the ``(hour, domain, rows)`` of :func:`repeated_domain_hours`.

    Lists of literals, not a join: Sail plans a join with a driver-side frame as a shuffle of the
    whole large side (measured: +2.8 CPU s over a year's lines); an ``IN`` of literals is a hash
    lookup in place. The hour is tested first, as a number; the exact key only in those hours.
    """
    passed = F.col("_row_reason").isNull()
    # Collected timestamps are naive UTC (the session zone is UTC), as unix_seconds counts them.
    hours = sorted({calendar.timegm(hour.timetuple()) for hour, _, _ in repeated})
    by_count: dict[int, list[str]] = {}
    for hour, domain, rows in repeated:
        by_count.setdefault(int(rows), []).append(f"{calendar.timegm(hour.timetuple())} {domain}")
    seconds = F.unix_seconds("_event_timestamp")
    key = F.concat(seconds.cast("string"), F.lit(" "), F.col("_domain"))
    listed = F.lit(1)
    for rows, keys in sorted(by_count.items()):
        listed = F.when(key.isin(keys), F.lit(rows)).otherwise(listed)
    in_repeated_hour = seconds.isin(hours) if hours else F.lit(False)
    return F.when(~passed, F.lit(0)).when(in_repeated_hour, listed).otherwise(F.lit(1))


def classify(fields: DataFrame, repeated: Sequence[Sequence[Any]]) -> DataFrame:
    """Attach ``dq_reason`` (NULL when clean): the row rule that failed, else the hour rules.

    Args:
        fields: :func:`parse_fields` output.
        repeated: the collected rows of :func:`repeated_domain_hours` over the same rows (normally
            none or a few).
    """
    marked = fields.withColumn("_domain_rows_in_hour", repeated_counts(repeated))
    return marked.withColumn("dq_reason", F.coalesce(F.col("_row_reason"), _first_failing(HOUR_RULES)))


def parse_bronze(bronze: DataFrame, first_hour: datetime = FIRST_HOUR) -> DataFrame:
    """Split each bronze line into typed fields and attach its ``dq_reason`` (NULL when clean).

    The repeated domains are collected to the driver (one small action), as in the pipeline run,
    which also materialises the file hours there (see ``steps``).
    """
    fields = parse_fields(bronze, file_hours(bronze), first_hour)
    return classify(fields, repeated_domain_hours(fields).collect())


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
