"""Parsing and every data-quality rule, table-driven, on the pure silver transforms."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertSchemaEqual

from wikichurn.pipeline.lakehouse.schemas import BRONZE_SCHEMA, SILVER_CLEAN_SCHEMA, SILVER_QUARANTINE_SCHEMA
from wikichurn.pipeline.lakehouse.silver import (
    CLEAN_LINE_PATTERN,
    DQ_REASONS,
    HOUR_RULES,
    PATH_KEY,
    ROW_RULES,
    clean_rows,
    file_hours,
    parse_bronze,
    parse_fields,
    path_key,
    quarantined_rows,
    row_reason,
)

RAW = "/raw/2024/2024-01/"
GOOD_FILE = RAW + "projectviews-20240105-130000"
AT = datetime(2024, 1, 6, 2, 0, 0)


def _reasons(spark: SparkSession, rows: list[tuple[str, str]]) -> list[str | None]:
    bronze = spark.createDataFrame([(value, path, AT) for value, path in rows], BRONZE_SCHEMA)
    parsed = parse_bronze(bronze).select("value", "_source_path", "dq_reason").collect()
    by_line = {(r["value"], r["_source_path"]): r["dq_reason"] for r in parsed}
    return [by_line[row] for row in rows]


ROW_CASES = [
    ("en - 4567890 0", GOOD_FILE, None),
    ("de.m.s - 321 0", GOOD_FILE, None),
    ("zh-min-nan - 7 0", GOOD_FILE, None),
    ("commons.m - 0 0", GOOD_FILE, None),
    ("en - 12 0", RAW + "projectviews-20241301-000000", "unparseable_file_name"),
    ("en - 12 0", RAW + "projectviews-20240105-133000", "unparseable_file_name"),
    ("en - 12 0", RAW + "projectviews-2024010-130000", "unparseable_file_name"),
    ("en - 12", GOOD_FILE, "wrong_field_count"),
    ("en - 12 0 extra", GOOD_FILE, "wrong_field_count"),
    ("en  - 12 0", GOOD_FILE, "wrong_field_count"),
    ("en\t-\t12\t0", GOOD_FILE, "wrong_field_count"),
    (" - 7 0", GOOD_FILE, "empty_domain"),
    ("en/../x - 7 0", GOOD_FILE, "invalid_domain"),
    (".en - 7 0", GOOD_FILE, "invalid_domain"),
    ("en Main_Page 5 0", GOOD_FILE, "unexpected_page_title"),
    ("de - abc 0", GOOD_FILE, "non_numeric_count"),
    ("de - 12.5 0", GOOD_FILE, "non_numeric_count"),
    ("de -  0", GOOD_FILE, "non_numeric_count"),
    ("fr - -5 0", GOOD_FILE, "negative_count"),
    ("fr - 99999999999999999999 0", GOOD_FILE, "count_out_of_range"),
]


@pytest.mark.parametrize(("line", "path", "reason"), ROW_CASES)
def test_row_rules_name_the_first_failing_rule(spark: SparkSession, line: str, path: str, reason: str | None) -> None:
    assert _reasons(spark, [(line, path)]) == [reason]


# Lines at the edges of the shortcut's pattern: each must get the reason the plain rules give.
SHORTCUT_EDGES = [
    ("en - 123456789012345678 0", GOOD_FILE),  # 18 digits: the pattern's longest count
    ("en - 9223372036854775807 0", GOOD_FILE),  # 19 digits, BIGINT's max: clean, by the rules
    ("en - 9223372036854775808 0", GOOD_FILE),  # 19 digits, one over
    ("en - 0000000000000000000007 0", GOOD_FILE),  # leading zeros: fits, by the rules
    ("en - 12 ", GOOD_FILE),  # an empty fourth field still makes four
    ("en - 12 0\r", GOOD_FILE),  # a CR left inside the last field
    ("en\r - 12 0", GOOD_FILE),
    ("en. - 1 0", GOOD_FILE),
    ("en.-x - 1 0", GOOD_FILE),
    ("_en - 1 0", GOOD_FILE),
    ("en - +1 0", GOOD_FILE),
    ("en - 1\u0660 0", GOOD_FILE),  # an Arabic-Indic digit
    ("\u00e9n - 1 0", GOOD_FILE),
    ("en - 12 0", RAW + "projectviews-20150101-000000"),  # before the first hour
    ("en - 12 0", RAW + "projectviews-20300101-000000"),  # after the run
    ("en - 12 0", RAW + "projectviews-20241301-000000"),
]


def test_the_shortcut_gives_the_reasons_of_the_plain_rules(spark: SparkSession) -> None:
    rows = SHORTCUT_EDGES + [(line, path) for line, path, _ in ROW_CASES]
    bronze = spark.createDataFrame([(v, p, AT) for v, p in rows], BRONZE_SCHEMA)
    fields = parse_fields(bronze, file_hours(bronze))
    got = fields.select(
        "value",
        "_source_path",
        row_reason(shortcut=True).alias("fast"),
        row_reason(shortcut=False).alias("plain"),
        F.expr(f"value RLIKE '{CLEAN_LINE_PATTERN}'").alias("matches"),
    ).collect()
    assert len(got) == len(rows)
    assert [(r["value"], r["fast"]) for r in got if r["fast"] != r["plain"]] == []
    # Not vacuous: the shortcut decides some rows, and lines it does not take still come out clean.
    plain = {(r["value"], r["_source_path"]): r["plain"] for r in got}
    assert plain[("en - 123456789012345678 0", GOOD_FILE)] is None
    assert plain[("en - 9223372036854775807 0", GOOD_FILE)] is None
    assert plain[("en - 9223372036854775808 0", GOOD_FILE)] == "count_out_of_range"
    assert plain[("en - 12 0", RAW + "projectviews-20150101-000000")] == "file_date_out_of_range"
    matched = {r["value"] for r in got if r["matches"]}
    assert "en - 123456789012345678 0" in matched
    assert "en - 9223372036854775807 0" not in matched


def test_file_hours_keyed_by_path_hash_give_the_same_fields(spark: SparkSession) -> None:
    rows = SHORTCUT_EDGES + [(line, path) for line, path, _ in ROW_CASES]
    bronze = spark.createDataFrame([(v, p, AT) for v, p in rows], BRONZE_SCHEMA)
    hours = file_hours(bronze)
    keyed = hours.select(path_key().alias(PATH_KEY), "_event_timestamp")
    columns = ["value", "_source_path", "_event_timestamp", "_domain", "_count_text", "_row_reason"]

    def fields(frame: DataFrame) -> list[tuple[object, ...]]:
        return sorted(tuple(r) for r in parse_fields(bronze, frame).select(*columns).collect())

    by_path = fields(hours)
    assert by_path == fields(keyed)
    assert sum(r[2] is not None for r in by_path) > len(rows) / 2  # most files have an hour


def test_duplicate_domain_in_one_hour_quarantines_every_copy(spark: SparkSession) -> None:
    other_file = RAW + "projectviews-20240105-140000"
    rows = [
        ("en - 10 0", GOOD_FILE),
        ("en - 11 0", GOOD_FILE),
        ("de - 5 0", GOOD_FILE),
        ("de - x 0", GOOD_FILE),  # a bad copy does not make the good one a duplicate
        ("en - 12 0", other_file),  # the same domain in another hour is normal
        ("fr - 1 0", GOOD_FILE),
        ("fr - 2 0", RAW + "projectviews-20240105-130012"),  # a second file naming the same hour
    ]
    assert _reasons(spark, rows) == [
        "duplicate_domain_in_hour",
        "duplicate_domain_in_hour",
        None,
        "non_numeric_count",
        None,
        "duplicate_domain_in_hour",
        "duplicate_domain_in_hour",
    ]


def test_every_reason_is_declared_once() -> None:
    assert len(DQ_REASONS) == len(set(DQ_REASONS)) == len(ROW_RULES) + len(HOUR_RULES)
    assert all(reason.replace("_", "").isalpha() for reason in DQ_REASONS)


def test_clean_and_quarantine_split_every_row_with_typed_columns(spark: SparkSession) -> None:
    rows = [("en - 10 0", GOOD_FILE), ("en.m - 20 0", GOOD_FILE), ("bad", GOOD_FILE), ("x - -1 0", GOOD_FILE)]
    bronze = spark.createDataFrame([(v, p, AT) for v, p in rows], BRONZE_SCHEMA)
    parsed = parse_bronze(bronze)
    clean, quarantine = clean_rows(parsed), quarantined_rows(parsed)
    assertSchemaEqual(clean.schema, SILVER_CLEAN_SCHEMA, ignoreNullable=True)
    assertSchemaEqual(quarantine.schema, SILVER_QUARANTINE_SCHEMA, ignoreNullable=True)
    got = sorted(
        tuple(r) for r in clean.select("domain_code", "count_views", "event_timestamp", "event_date").collect()
    )
    assert got == [
        ("en", 10, datetime(2024, 1, 5, 13), date(2024, 1, 5)),
        ("en.m", 20, datetime(2024, 1, 5, 13), date(2024, 1, 5)),
    ]
    assert sorted((r["value"], r["dq_reason"]) for r in quarantine.collect()) == [
        ("bad", "wrong_field_count"),
        ("x - -1 0", "negative_count"),
    ]


def test_seconds_in_old_file_names_are_accepted(spark: SparkSession) -> None:
    path = RAW + "projectviews-20150501-010012"
    bronze = spark.createDataFrame([("en - 3 0", path, AT)], BRONZE_SCHEMA)
    row = clean_rows(parse_bronze(bronze)).collect()[0]
    assert row["event_timestamp"] == datetime(2015, 5, 1, 1)
