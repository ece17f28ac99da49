"""The warehouse: the gold tables copied into PostgreSQL with Redshift-compatible DDL.

The seed's deployment picture persists the gold tables in a data warehouse (e.g. Amazon Redshift).
``wikichurn warehouse export`` copies ``gold_daily_projectviews``, the feature columns of
``gold_churn_features`` (never the labels) and the EDA KPI tables into a PostgreSQL database:

- **DDL** uses only types Redshift has (``VARCHAR(n)``, ``BIGINT``, ``DOUBLE PRECISION``, ``DATE``,
  ``TIMESTAMPTZ``, ...); each table's distribution and sort keys are kept as a documented comment in
  the PostgreSQL DDL, and :func:`create_table_sql` with ``dialect="redshift"`` emits them for real.
- **Bulk load**: every table goes through ``COPY ... FROM STDIN (FORMAT csv)`` into a temporary
  staging table (Arrow record batches written as CSV, no row-by-row INSERT).
- **Idempotent**: staging is merged by key (update rows that differ, insert new keys, delete keys the
  lake no longer has), so the warehouse mirrors the lake and a second export changes no row.
  Everything happens in one transaction: readers see the old export or the new one, never half.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv

from wikichurn.core.churn import keyed_feature_columns
from wikichurn.core.tables import (
    GOLD_DAILY,
    GOLD_FEATURES,
    GOLD_KPIS_DAILY,
    GOLD_KPIS_DOMAIN,
    GOLD_KPIS_MONTHLY,
    GOLD_KPIS_WEEKLY,
    GOLD_QUALITY_SPIKES,
)

if TYPE_CHECKING:
    import psycopg
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import ChurnSettings, Settings

log = logging.getLogger(__name__)

# Redshift's default VARCHAR length; domain codes and labels of the gold tables are far shorter.
VARCHAR_LENGTH = 256
Dialect = Literal["postgres", "redshift"]


class WarehouseError(Exception):
    """The export cannot proceed (no URL, a required table missing, duplicate keys in the lake)."""


@dataclass(frozen=True)
class WarehouseTable:
    """One lake table exported to the warehouse, and how Redshift should lay it out."""

    name: str
    key: tuple[str, ...]
    # Redshift: DISTKEY column (None = DISTSTYLE ALL, for small dimension-like tables) and SORTKEY.
    distkey: str | None
    sortkey: tuple[str, ...]
    # Columns exported (None = every column of the lake table).
    columns: tuple[str, ...] | None = None
    # Key columns that may be null (e.g. domain_code of the 'total' rows): matched null-safely, and
    # the table gets no PRIMARY KEY constraint.
    nullable_key: tuple[str, ...] = ()
    # Written by `wikichurn pipeline run` (required) or by `wikichurn eda` (skipped when absent).
    required: bool = True


def warehouse_tables(churn: ChurnSettings | None = None) -> tuple[WarehouseTable, ...]:
    """The exported tables, in export order; ``gold_churn_features`` exports the keys and the feature
    columns of ``churn``'s definition (their past-window names follow ``window_days``), never its labels.

    Args:
        churn: the churn definition the lake's features were built with (default: the committed one).
    """
    return (
        WarehouseTable(GOLD_DAILY, ("domain_code", "event_date"), "domain_code", ("event_date",)),
        WarehouseTable(
            GOLD_FEATURES,
            ("domain_code", "event_date"),
            "domain_code",
            ("event_date",),
            columns=keyed_feature_columns(churn),
        ),
        WarehouseTable(GOLD_KPIS_DAILY, ("event_date",), None, ("event_date",), required=False),
        WarehouseTable(GOLD_KPIS_DOMAIN, ("domain_code",), "domain_code", ("domain_code",), required=False),
        WarehouseTable(
            GOLD_KPIS_WEEKLY,
            ("level", "domain_code", "week_start"),
            "domain_code",
            ("week_start",),
            nullable_key=("domain_code",),
            required=False,
        ),
        WarehouseTable(
            GOLD_KPIS_MONTHLY,
            ("level", "domain_code", "month_start"),
            "domain_code",
            ("month_start",),
            nullable_key=("domain_code",),
            required=False,
        ),
        WarehouseTable(
            GOLD_QUALITY_SPIKES, ("domain_code", "event_date"), "domain_code", ("event_date",), required=False
        ),
    )


# The tables of the committed churn definition; an export uses those of its settings' definition.
TABLES: tuple[WarehouseTable, ...] = warehouse_tables()


@dataclass
class TableExport:
    """What one table's export changed."""

    table: str
    rows: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass
class ExportResult:
    """The export of every table, in one transaction."""

    target: str
    tables: list[TableExport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        lines = [f"warehouse export to {self.target} in {self.seconds:.1f} s"]
        for t in self.tables:
            lines.append(
                f"  {t.table}: {t.rows:,} rows ({t.inserted:,} inserted, {t.updated:,} updated, {t.deleted:,} deleted)"
            )
        lines += [f"  {name}: not in the lake, skipped (run `wikichurn eda` to build it)" for name in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "tables": {
                t.table: {"rows": t.rows, "inserted": t.inserted, "updated": t.updated, "deleted": t.deleted}
                for t in self.tables
            },
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


def sql_type(dtype: pa.DataType) -> str:
    """The Redshift- and PostgreSQL-compatible column type for an Arrow type."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return f"VARCHAR({VARCHAR_LENGTH})"
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_int8(dtype) or pa.types.is_int16(dtype):
        return "SMALLINT"
    if pa.types.is_int32(dtype):
        return "INTEGER"
    if pa.types.is_int64(dtype):
        return "BIGINT"
    if pa.types.is_float32(dtype):
        return "REAL"
    if pa.types.is_float64(dtype):
        return "DOUBLE PRECISION"
    if pa.types.is_decimal(dtype):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if pa.types.is_date(dtype):
        return "DATE"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMPTZ" if dtype.tz else "TIMESTAMP"
    raise WarehouseError(f"no warehouse column type for Arrow type {dtype}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _layout(spec: WarehouseTable) -> str:
    dist = f"DISTSTYLE KEY DISTKEY ({_quote(spec.distkey)})" if spec.distkey else "DISTSTYLE ALL"
    return f"{dist} COMPOUND SORTKEY ({', '.join(map(_quote, spec.sortkey))})"


def create_table_sql(spec: WarehouseTable, schema: pa.Schema, db_schema: str, dialect: Dialect = "postgres") -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``spec`` with the columns of ``schema``.

    PostgreSQL has no distribution or sort keys, so there they are a comment naming what Redshift
    gets; ``dialect="redshift"`` writes them as clauses.
    """
    lines = []
    for column in schema:
        not_null = " NOT NULL" if column.name in spec.key and column.name not in spec.nullable_key else ""
        lines.append(f"    {_quote(column.name)} {sql_type(column.type)}{not_null}")
    if not spec.nullable_key:
        lines.append(f"    PRIMARY KEY ({', '.join(map(_quote, spec.key))})")
    head = f"CREATE TABLE IF NOT EXISTS {_quote(db_schema)}.{_quote(spec.name)} (\n" + ",\n".join(lines) + "\n)"
    if dialect == "redshift":
        return f"{head}\n{_layout(spec)}"
    return f"{head}\n/* Redshift: {_layout(spec)} */"


def _key_match(spec: WarehouseTable, left: str, right: str) -> str:
    # '=' where keys are never null keeps the joins hashable; IS NOT DISTINCT FROM for the rest.
    parts = [
        f"{left}.{_quote(k)} IS NOT DISTINCT FROM {right}.{_quote(k)}"
        if k in spec.nullable_key
        else f"{left}.{_quote(k)} = {right}.{_quote(k)}"
        for k in spec.key
    ]
    return " AND ".join(parts)


def merge_sql(spec: WarehouseTable, columns: Sequence[str], target: str, stage: str) -> tuple[str, str, str]:
    """The UPDATE (rows that differ), INSERT (new keys) and DELETE (keys gone) of one merge."""
    values = [c for c in columns if c not in spec.key]
    quoted = ", ".join(map(_quote, columns))
    match = _key_match(spec, "t", "s")
    if values:
        changed = f"({', '.join('t.' + _quote(c) for c in values)}) IS DISTINCT FROM " + (
            f"({', '.join('s.' + _quote(c) for c in values)})"
        )
        assignments = ", ".join(f"{_quote(c)} = s.{_quote(c)}" for c in values)
        update = f"UPDATE {target} AS t SET {assignments} FROM {stage} AS s WHERE {match} AND {changed}"
    else:
        update = "SELECT 1 WHERE false"
    insert = (
        f"INSERT INTO {target} ({quoted}) SELECT {', '.join('s.' + _quote(c) for c in columns)} FROM {stage} AS s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {match})"
    )
    delete = f"DELETE FROM {target} AS t WHERE NOT EXISTS (SELECT 1 FROM {stage} AS s WHERE {match})"
    return update, insert, delete


def _csv_chunks(table: pa.Table) -> Iterable[bytes]:
    # Arrow's CSV writer quotes every string and writes nulls as bare empty fields: exactly how
    # COPY's csv format tells an empty string from NULL.
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    for batch in table.to_batches(max_chunksize=50_000):
        buffer = io.BytesIO()
        pa_csv.write_csv(batch, buffer, options)
        yield buffer.getvalue()


def _existing_columns(cur: psycopg.Cursor, db_schema: str, name: str) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (db_schema, name),
    )
    return [(row[0], row[1]) for row in cur.fetchall()]


def load_table(cur: psycopg.Cursor, spec: WarehouseTable, data: pa.Table, db_schema: str) -> TableExport:
    """Create ``spec``'s table if needed and merge ``data`` into it (inside the caller's transaction)."""
    target = f"{_quote(db_schema)}.{_quote(spec.name)}"
    columns = data.column_names
    missing = [k for k in spec.key if k not in columns]
    if missing:
        raise WarehouseError(f"{spec.name}: key columns {missing} are not in the lake table")
    existing = [name for name, _type in _existing_columns(cur, db_schema, spec.name)]
    if existing and existing != columns:
        # The warehouse is a copy of the lake: a table whose columns changed is rebuilt.
        log.warning("%s: columns changed in the lake, recreating the warehouse table", spec.name)
        cur.execute(f"DROP TABLE {target}")
    cur.execute(create_table_sql(spec, data.schema, db_schema))
    # The layout Redshift would get, also readable from the catalog (\dt+ in psql).
    note = f"wikichurn {spec.name}, key ({', '.join(spec.key)}); Redshift: {_layout(spec)}"
    cur.execute(f"COMMENT ON TABLE {target} IS {_literal(note)}")
    stage = _quote(f"_stage_{spec.name}")
    cur.execute(f"CREATE TEMPORARY TABLE {stage} (LIKE {target}) ON COMMIT DROP")
    with cur.copy(f"COPY {stage} ({', '.join(map(_quote, columns))}) FROM STDIN (FORMAT csv)") as copy:
        for chunk in _csv_chunks(data):
            copy.write(chunk)
    keys = ", ".join(map(_quote, spec.key))
    cur.execute(f"SELECT {keys}, count(*) FROM {stage} GROUP BY {keys} HAVING count(*) > 1 LIMIT 1")
    duplicate = cur.fetchone()
    if duplicate:
        raise WarehouseError(f"{spec.name}: key {duplicate[:-1]} appears {duplicate[-1]} times in the lake table")
    update, insert, delete = merge_sql(spec, columns, target, stage)
    result = TableExport(spec.name, data.num_rows)
    cur.execute(update)
    result.updated = max(cur.rowcount, 0)
    cur.execute(insert)
    result.inserted = max(cur.rowcount, 0)
    cur.execute(delete)
    result.deleted = max(cur.rowcount, 0)
    return result


def connect(url: str) -> psycopg.Connection:
    """A psycopg connection for ``postgresql://`` (SQLAlchemy-style ``postgresql+psycopg://`` too)."""
    import psycopg

    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise WarehouseError(f"unsupported warehouse URL {url!r}: use postgresql://user:password@host:port/db")
    return psycopg.connect(f"postgresql://{rest}")


def export_tables(
    conn: psycopg.Connection, tables: Sequence[tuple[WarehouseTable, pa.Table]], db_schema: str
) -> list[TableExport]:
    """Merge every ``(spec, data)`` into the warehouse in one transaction (all or nothing)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(db_schema)}")
        return [load_table(cur, spec, data, db_schema) for spec, data in tables]


def read_lake_tables(
    spark: SparkSession, settings: Settings
) -> tuple[list[tuple[WarehouseTable, pa.Table]], list[str]]:
    """The exported tables as Arrow, read through the lake (either table format); plus skipped names.

    The feature table's columns are those of ``settings.churn`` (the definition the lake was built with).
    """
    from wikichurn.pipeline.lakehouse.lake import Lake

    lake = Lake(spark, settings)
    found: list[tuple[WarehouseTable, pa.Table]] = []
    skipped: list[str] = []
    for spec in warehouse_tables(settings.churn):
        if not lake.exists(spec.name):
            if spec.required:
                where = lake.path(spec.name)
                raise WarehouseError(f"{spec.name} is not in the lake at {where}: run the pipeline first")
            skipped.append(spec.name)
            continue
        frame = lake.read(spec.name)
        if spec.columns is not None:
            frame = frame.select(*spec.columns)
        found.append((spec, frame.toArrow()))
    return found, skipped


def export_warehouse(spark: SparkSession, settings: Settings, url: str | None = None) -> ExportResult:
    """Export the gold and KPI tables of the lake to the warehouse at ``url`` (default: settings)."""
    target = url or settings.warehouse.url
    if not target:
        raise WarehouseError("no warehouse URL: pass --url or set WIKICHURN_WAREHOUSE__URL")
    began = time.monotonic()
    tables, skipped = read_lake_tables(spark, settings)
    with connect(target) as conn:
        exported = export_tables(conn, tables, settings.warehouse.db_schema)
    result = ExportResult(_redact(target), exported, skipped, time.monotonic() - began)
    log.info(result.describe())
    return result


def _redact(url: str) -> str:
    """``url`` without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
