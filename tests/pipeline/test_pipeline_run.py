"""The whole medallion run on Sail + Delta, on raw files written by the test."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tests.utils.raw import full_day, write_raw
from wikichurn.core import tables
from wikichurn.core.settings import Settings
from wikichurn.pipeline.lakehouse import steps as steps_module
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.pipeline.lakehouse.run import PipelineResult, run_pipeline


def gold_rows(settings: Settings) -> dict[tuple[str, date], tuple[int, int]]:
    table = DeltaTable(f"{settings.lake_uri}/{tables.GOLD_DAILY}").to_pyarrow_table().to_pylist()
    return {(r["domain_code"], r["event_date"]): (r["count_views"], r["hours_present"]) for r in table}


def versions(settings: Settings) -> dict[str, int]:
    lake = Path(settings.lake_uri)
    return {p.name: DeltaTable(str(p)).version() for p in sorted(lake.iterdir())}


def assert_conserved(spark: SparkSession, settings: Settings) -> None:
    lake = Lake(spark, settings)
    bronze = lake.count(tables.BRONZE)
    assert bronze == lake.count(tables.SILVER_CLEAN) + lake.count(tables.SILVER_QUARANTINE)
    # What gold's hours_present relies on: a file holds at most one clean row per domain.
    clean = lake.read(tables.SILVER_CLEAN)
    assert clean.select("_source_path", "domain_code").distinct().count() == clean.count()
    # Independent reader: deltalake sees the same counts as the engine.
    for table in (tables.BRONZE, tables.SILVER_CLEAN, tables.SILVER_QUARANTINE):
        assert DeltaTable(f"{settings.lake_uri}/{table}").to_pyarrow_table().num_rows == lake.count(table)


def test_first_run_builds_every_table(spark: SparkSession, lake_settings: Settings) -> None:
    full_day(lake_settings, "20240101", {"en": 100, "de.m": 7})
    write_raw(lake_settings, "projectviews-20240102-000000", ["en - 5 0", "en - 6 0", "de.m - abc 0", "fr.d - 3 0"])
    write_raw(lake_settings, "projectviews-20240102-010000", ["en - 9 0", " - 1 0", "", "fr.d - 4 0"])
    write_raw(lake_settings, "projectviews-20240102-020000", [])  # an hour with no lines at all
    decoy = Path(lake_settings.raw_uri) / "2024/2024-01/pageviews-20240102-000000.gz"
    decoy.write_bytes(b"\x1f\x8b not for us")

    result = run_pipeline(spark, lake_settings)

    assert result.files_new == 27 and result.files_ignored == 1
    assert result.bronze_rows == 48 + 7  # the blank line is not a row
    assert result.by_reason == {"duplicate_domain_in_hour": 2, "non_numeric_count": 1, "empty_domain": 1}
    assert result.clean_rows == 48 + 3
    assert gold_rows(lake_settings) == {
        ("en", date(2024, 1, 1)): (2400, 24),
        ("de.m", date(2024, 1, 1)): (168, 24),
        ("en", date(2024, 1, 2)): (9, 1),  # both hour-0 copies are ambiguous, so quarantined
        ("fr.d", date(2024, 1, 2)): (7, 2),
    }
    assert result.table_counts[tables.BRONZE_LEDGER] == 27  # the empty file is recorded too
    assert_conserved(spark, lake_settings)
    # Every table step was timed (the benchmark's profile), and the steps fit in the run.
    table_steps = (
        "bronze",
        "ledger",
        "silver_classify",
        "silver_clean",
        "silver_quarantine",
        "gold_merge",
        "dq_report",
    )
    assert set(table_steps) <= set(result.phases)
    assert 0 < sum(result.phases.values()) <= result.seconds

    report = Lake(spark, lake_settings).read(tables.SILVER_DQ_REPORTS).collect()
    assert len(report) == 1 and report[0]["rows_in"] == 55
    assert '"2024-01-01": 24' in report[0]["report"] and '"2024-01-02": 3' in report[0]["report"]


@pytest.mark.parametrize("collide", [False, True], ids=["path keys", "colliding path keys"])
def test_quarantine_finds_bad_rows_in_files_of_any_kind(
    spark: SparkSession, lake_settings: Settings, monkeypatch: pytest.MonkeyPatch, collide: bool
) -> None:
    if collide:  # every file the same 64-bit key: the run must join the file hours on the paths
        monkeypatch.setattr(steps_module, "path_key", lambda: F.lit(7).cast("long"))
    # The quarantine reads only the files of hours the rules flagged: each kind must be among them.
    write_raw(lake_settings, "projectviews-20240102-000000", ["en - 5 0", "en - 6 0", "de - 1 0"])  # a repeat only
    write_raw(lake_settings, "projectviews-20240102-010000", ["fr - 1 0", "de - 2 0"])
    write_raw(lake_settings, "projectviews-20240102-010005", ["fr - 2 0", "it - 3 0"])  # the same hour again
    write_raw(lake_settings, "projectviews-20241301-000000", ["en - 1 0", "de - 1 0"])  # no such hour
    write_raw(lake_settings, "projectviews-20240102-020000", ["en - 7 0", "de - x 0"])
    write_raw(lake_settings, "projectviews-20240102-030000", ["en - 8 0", "de - 9 0"])  # all clean

    result = run_pipeline(spark, lake_settings, features=False)

    assert result.by_reason == {"duplicate_domain_in_hour": 4, "unparseable_file_name": 2, "non_numeric_count": 1}
    clean = Lake(spark, lake_settings).read(tables.SILVER_CLEAN).select("domain_code", "count_views").collect()
    assert sorted(tuple(r) for r in clean) == [
        ("de", 1), ("de", 2), ("de", 9), ("en", 7), ("en", 8), ("it", 3),
    ]  # fmt: skip
    assert_conserved(spark, lake_settings)


def test_many_files_are_each_read_exactly_once(spark: SparkSession, lake_settings: Settings) -> None:
    # Guards against the engine returning a file twice for long path lists (seen on Sail 0.7.2).
    for day in ("20240101", "20240102", "20240103", "20240104", "20240105", "20240106", "20240107"):
        full_day(lake_settings, day, {"en": 1, "de": 2, "fr": 3})
    result = run_pipeline(spark, lake_settings, features=False)
    assert result.files_new == 168 and result.bronze_rows == 168 * 3
    ledger = Lake(spark, lake_settings).read(tables.BRONZE_LEDGER)
    assert {r["line_count"] for r in ledger.collect()} == {3}


def test_rerun_with_nothing_new_changes_nothing(spark: SparkSession, lake_settings: Settings) -> None:
    full_day(lake_settings, "20240101", {"en": 100}, hours=range(3))
    run_pipeline(spark, lake_settings)
    before = versions(lake_settings)
    again = run_pipeline(spark, lake_settings)
    assert again.files_new == 0 and again.bronze_rows == 0
    assert versions(lake_settings) == before


def test_late_file_is_merged_into_its_day_without_double_counting(spark: SparkSession, lake_settings: Settings) -> None:
    full_day(lake_settings, "20240101", {"en": 10, "de": 1}, hours=range(0, 23))
    full_day(lake_settings, "20240102", {"en": 10}, hours=range(0, 24))
    run_pipeline(spark, lake_settings)
    assert gold_rows(lake_settings)[("en", date(2024, 1, 1))] == (230, 23)

    full_day(lake_settings, "20240101", {"en": 10, "fr": 4}, hours=range(23, 24))  # the late hour
    result = run_pipeline(spark, lake_settings)

    assert result.files_new == 1 and result.gold_dates == [date(2024, 1, 1)]
    gold = gold_rows(lake_settings)
    assert gold[("en", date(2024, 1, 1))] == (240, 24)
    assert gold[("de", date(2024, 1, 1))] == (23, 23)
    assert gold[("fr", date(2024, 1, 1))] == (4, 1)
    assert gold[("en", date(2024, 1, 2))] == (240, 24)
    assert len(gold) == 4
    assert_conserved(spark, lake_settings)


def test_run_that_died_before_its_report_is_redone_exactly_once(
    spark: SparkSession, lake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    full_day(lake_settings, "20240101", {"en": 10, "de": 1}, hours=range(4))
    run_pipeline(spark, lake_settings)
    write_raw(lake_settings, "projectviews-20240101-040000", ["en - 10 0", "bad line"])

    def crash(*_args: object) -> dict[str, object]:
        raise RuntimeError("killed")

    monkeypatch.setattr(steps_module, "dq_report", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_pipeline(spark, lake_settings)  # bronze, silver and gold written; no report
    monkeypatch.undo()

    result = run_pipeline(spark, lake_settings)
    assert (result.files_new, result.bronze_rows, result.clean_rows, result.quarantined_rows) == (0, 2, 1, 1)
    assert gold_rows(lake_settings)[("en", date(2024, 1, 1))] == (50, 5)
    assert_conserved(spark, lake_settings)


def test_result_describes_itself() -> None:
    from datetime import datetime

    empty = PipelineResult(run_id="r1", run_at=datetime(2024, 1, 1))
    assert "nothing new" in empty.describe()


def test_windows_line_endings_give_the_same_rows(spark: SparkSession, lake_settings: Settings) -> None:
    write_raw(lake_settings, "projectviews-20240101-000000", ["en - 5 0", "de - 2 0"])
    key = "2024/2024-01/projectviews-20240101-010000"
    (Path(lake_settings.raw_uri) / key).write_bytes(b"en - 7 0\r\nde - 3 0\r\n\r\nfr - 1 0\r")
    result = run_pipeline(spark, lake_settings, features=False)
    assert (result.bronze_rows, result.clean_rows, result.quarantined_rows) == (5, 5, 0)
    assert gold_rows(lake_settings) == {
        ("en", date(2024, 1, 1)): (12, 2),
        ("de", date(2024, 1, 1)): (5, 2),
        ("fr", date(2024, 1, 1)): (1, 1),
    }
