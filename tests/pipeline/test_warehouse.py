"""The warehouse export against a real PostgreSQL server (tests/fixtures/postgres.py).

The lake is built by the real pipeline and EDA on a small hand-written raw zone; the export is
read back with psycopg and compared with the lake read by the independent ``deltalake`` reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from wikichurn.core.churn import FEATURE_COLUMNS, KEY_COLUMNS, LABEL_ONLY_COLUMNS, feature_columns, label_columns
from wikichurn.core.settings import ChurnSettings, Settings
from wikichurn.pipeline.eda.report import run_eda
from wikichurn.pipeline.lakehouse.run import run_pipeline
from wikichurn.pipeline.warehouse import (
    TABLES,
    WarehouseError,
    WarehouseTable,
    create_table_sql,
    export_tables,
    export_warehouse,
    sql_type,
    warehouse_tables,
)

SCHEMA = "wikichurn"
DAYS = 16
DOMAINS = {"en": 5000, "de.m": 800, "fr.d": 40, "ja": 1200}


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A lake with every exported table: 16 full days x 4 domains, one collapse, one spike, then EDA."""
    tmp = tmp_path_factory.mktemp("warehouse")
    settings = Settings(raw_uri=str(tmp / "raw"), lake_uri=str(tmp / "lake"), warehouse={"db_schema": SCHEMA})
    # EDA logs to MLFLOW_TRACKING_URI when set (another test may have left one): not here.
    settings = settings.model_copy(update={"mlflow_tracking_uri": None})
    first = date(2024, 3, 1)
    for offset in range(DAYS):
        day = first + timedelta(days=offset)
        folder = Path(settings.raw_uri) / f"{day:%Y}/{day:%Y-%m}"
        folder.mkdir(parents=True, exist_ok=True)
        for hour in range(24):
            views = dict(DOMAINS)
            if offset >= 10:
                views["fr.d"] = 1  # fr.d collapses: churn labels on the days before
            if offset == 14:
                views["ja"] = 90_000  # a spike for gold_quality_spikes
            lines = "".join(f"{d} - {v + hour} 0\n" for d, v in sorted(views.items()))
            (folder / f"projectviews-{day:%Y%m%d}-{hour:02d}0000").write_text(lines)
    run_pipeline(spark, settings)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        run_eda(spark, settings, tmp / "eda")
    yield settings


def _row_versions(url: str, table: str) -> set[tuple[str, str]]:
    # (ctid, xmin) changes whenever a row is written, even with identical values.
    with psycopg.connect(url) as conn:
        rows = conn.execute(f'SELECT ctid::text, xmin::text FROM "{SCHEMA}"."{table}"').fetchall()
    return {(r[0], r[1]) for r in rows}


@pytest.mark.slow
def test_export_loads_every_table_and_a_second_export_changes_nothing(
    spark: SparkSession, lake: Settings, postgres_db: str
) -> None:
    first = export_warehouse(spark, lake, postgres_db)
    exported = {t.table: t for t in first.tables}
    assert set(exported) == {spec.name for spec in TABLES} and not first.skipped
    for name, result in exported.items():
        lake_rows = DeltaTable(f"{lake.lake_uri}/{name}").to_pyarrow_table().num_rows
        assert result.rows == result.inserted == lake_rows > 0, name
        assert (result.updated, result.deleted) == (0, 0)
    assert "***" in first.target and "wikichurn-test" not in first.target  # no password in logs

    gold = DeltaTable(f"{lake.lake_uri}/gold_daily_projectviews").to_pyarrow_table().to_pylist()
    expected = sorted((r["domain_code"], r["event_date"], r["count_views"], r["hours_present"]) for r in gold)
    with psycopg.connect(postgres_db) as conn:
        stored = conn.execute(
            f'SELECT domain_code, event_date, count_views, hours_present FROM "{SCHEMA}".gold_daily_projectviews'
        ).fetchall()
    assert sorted(stored) == expected

    with psycopg.connect(postgres_db) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (SCHEMA, "gold_churn_features"),
            )
        ]
        keys = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (f"{SCHEMA}.gold_daily_projectviews",),
        ).fetchone()
        comment = conn.execute("SELECT obj_description(%s::regclass)", (f"{SCHEMA}.gold_churn_features",)).fetchone()
        totals = conn.execute(
            f'SELECT count(*) FROM "{SCHEMA}".gold_kpis_weekly WHERE level = %s AND domain_code IS NULL', ("total",)
        ).fetchone()
    assert set(columns) == set(FEATURE_COLUMNS) | {"event_date"}
    assert not set(columns) & set(LABEL_ONLY_COLUMNS)  # features only, never the labels
    assert keys == ("PRIMARY KEY (domain_code, event_date)",)
    assert comment is not None and 'DISTKEY ("domain_code") COMPOUND SORTKEY ("event_date")' in comment[0]
    assert totals is not None and totals[0] > 0  # null-keyed 'total' rows survive

    before = {name: _row_versions(postgres_db, name) for name in exported}
    second = export_warehouse(spark, lake, postgres_db)
    assert all(t.changed == 0 for t in second.tables), second.describe()
    assert {name: _row_versions(postgres_db, name) for name in exported} == before


@pytest.mark.slow
def test_a_non_default_churn_window_exports_the_lakes_own_feature_columns(
    spark: SparkSession, lake: Settings, postgres_db: str, tmp_path: Path
) -> None:
    # The same raw zone built with a 5-day churn window: its past-window features are named for 5
    # days (avg_views_past_5d), and the export must ask the lake for those, not the default's.
    churn = ChurnSettings(window_days=5)
    settings = lake.model_copy(update={"lake_uri": str(tmp_path / "lake"), "churn": churn})
    run_pipeline(spark, settings)
    spec = {s.name: s for s in warehouse_tables(churn)}["gold_churn_features"]
    assert spec.columns is not None and spec.columns[:2] == KEY_COLUMNS and "avg_views_past_5d" in spec.columns

    result = export_warehouse(spark, settings, postgres_db)
    exported = {t.table: t for t in result.tables}
    lake_rows = DeltaTable(f"{settings.lake_uri}/gold_churn_features").to_pyarrow_table().num_rows
    assert exported["gold_churn_features"].inserted == lake_rows > 0
    assert set(result.skipped) == {s.name for s in TABLES if not s.required}  # no EDA on this lake
    with psycopg.connect(postgres_db) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (SCHEMA, "gold_churn_features"),
            )
        }
    assert columns == set(feature_columns(churn)) | {"event_date"}
    assert {"avg_views_past_5d", "log_avg_views_past_5d"} <= columns and "avg_views_past_3d" not in columns
    assert not columns & set(label_columns(churn.horizon_days))


SPEC = WarehouseTable("t_kpis", ("level", "domain_code", "day"), "domain_code", ("day",), nullable_key=("domain_code",))


def _kpis(rows: list[tuple[str, str | None, date, float | None]]) -> pa.Table:
    return pa.table(
        {
            "level": pa.array([r[0] for r in rows], pa.string()),
            "domain_code": pa.array([r[1] for r in rows], pa.string()),
            "day": pa.array([r[2] for r in rows], pa.date32()),
            "value": pa.array([r[3] for r in rows], pa.float64()),
        }
    )


def _table(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT level, domain_code, day, value FROM "{SCHEMA}".t_kpis').fetchall()


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: (r[0], r[1] or "", r[2]))


def test_merge_updates_inserts_and_deletes_by_key_null_safely(postgres_db: str) -> None:
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    old = [("domain", "en", d1, 1.0), ("domain", "en", d2, None), ("total", None, d1, 3.0), ("domain", "ja", d1, 2.0)]
    with psycopg.connect(postgres_db) as conn:
        (first,) = export_tables(conn, [(SPEC, _kpis(old))], SCHEMA)
    assert (first.inserted, first.updated, first.deleted) == (4, 0, 0)

    # One value changes (the null-keyed total), one null becomes a value, one key goes, one arrives.
    nan = float("nan")
    new = [("domain", "en", d1, 1.0), ("domain", "en", d2, nan), ("total", None, d1, 4.0), ("total", None, d2, 5.0)]
    with psycopg.connect(postgres_db) as conn:
        (second,) = export_tables(conn, [(SPEC, _kpis(new))], SCHEMA)
    assert (second.inserted, second.updated, second.deleted) == (1, 2, 1)
    stored = _sorted(_table(postgres_db))
    assert [r[:3] for r in stored] == [r[:3] for r in _sorted(new)]
    assert stored[1][3] != stored[1][3]  # NaN came through as NaN, not NULL
    assert [r[3] for r in stored if r[3] == r[3]] == [1.0, 4.0, 5.0]

    with psycopg.connect(postgres_db) as conn:
        (third,) = export_tables(conn, [(SPEC, _kpis(new))], SCHEMA)
    assert third.changed == 0


def test_empty_strings_stay_distinct_from_nulls(postgres_db: str) -> None:
    spec = WarehouseTable("t_text", ("id",), None, ("id",))
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "text": pa.array(["", None, 'a "quoted", value'])})
    with psycopg.connect(postgres_db) as conn:
        export_tables(conn, [(spec, data)], SCHEMA)
        rows = conn.execute(f'SELECT id, text FROM "{SCHEMA}".t_text ORDER BY id').fetchall()
    assert rows == [(1, ""), (2, None), (3, 'a "quoted", value')]


def test_duplicate_keys_fail_and_write_nothing(postgres_db: str) -> None:
    d1 = date(2024, 1, 1)
    with psycopg.connect(postgres_db) as conn:
        export_tables(conn, [(SPEC, _kpis([("domain", "en", d1, 1.0)]))], SCHEMA)
    twice = _kpis([("total", None, d1, 1.0), ("total", None, d1, 2.0), ("domain", "ja", d1, 3.0)])
    with psycopg.connect(postgres_db) as conn, pytest.raises(WarehouseError, match="appears 2 times"):
        export_tables(conn, [(SPEC, twice)], SCHEMA)
    assert _table(postgres_db) == [("domain", "en", d1, 1.0)]  # the failed export rolled back whole


def test_ddl_is_redshift_compatible() -> None:
    schema = pa.schema([("domain_code", pa.string()), ("event_date", pa.date32()), ("count_views", pa.int64())])
    spec = next(s for s in TABLES if s.name == "gold_daily_projectviews")
    postgres = create_table_sql(spec, schema, SCHEMA)
    redshift = create_table_sql(spec, schema, SCHEMA, dialect="redshift")
    layout = 'DISTSTYLE KEY DISTKEY ("domain_code") COMPOUND SORTKEY ("event_date")'
    assert postgres.endswith(f"/* Redshift: {layout} */")
    assert redshift.endswith(f")\n{layout}")
    assert '"domain_code" VARCHAR(256) NOT NULL' in redshift and '"count_views" BIGINT' in redshift
    assert 'PRIMARY KEY ("domain_code", "event_date")' in redshift
    assert [sql_type(t) for t in (pa.float64(), pa.bool_(), pa.int32(), pa.timestamp("us", tz="UTC"))] == [
        "DOUBLE PRECISION",
        "BOOLEAN",
        "INTEGER",
        "TIMESTAMPTZ",
    ]
    with pytest.raises(WarehouseError, match="no warehouse column type"):
        sql_type(pa.list_(pa.int64()))


def test_export_without_a_url_says_how_to_give_one(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="WIKICHURN_WAREHOUSE__URL"):
        export_warehouse(spark, Settings(lake_uri=str(tmp_path / "lake")))
