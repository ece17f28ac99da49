"""Every read and write of a lakehouse table goes through :class:`Lake`, and so do the raw file
reads and the small driver-side frames the pipeline steps build: steps never touch the session.

Tables live at ``<lake_uri>/<table>``. With ``table_format: delta`` (Sail, or Spark with the Delta
jars) changes are made in SQL (``MERGE INTO``, ``DELETE FROM``) so the same statements run on Sail
and on Apache Spark. With ``table_format: parquet`` (the JVM compatibility lane, where the Delta
jars cannot be fetched) merges become dynamic partition overwrites and deletes are unavailable.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from wikichurn.core.storage import s3_client

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)

# The table names are the data contract's: wikichurn.core.tables.


class Lake:
    """Table I/O for one lake root, in one table format, on one Spark session."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.format = settings.table_format
        uri = settings.lake_uri
        self.is_s3 = settings.is_s3(uri)
        self.root = uri if self.is_s3 else str(Path(uri.removeprefix("file://")).expanduser().resolve())

    def path(self, table: str) -> str:
        """Location of ``table``."""
        return f"{self.root}/{table}"

    def exists(self, table: str) -> bool:
        """True when ``table`` has been written at least once."""
        marker = "_delta_log" if self.format == "delta" else ""
        if self.is_s3:
            bucket, _, prefix = self.path(table).split("://", 1)[1].partition("/")
            listed = s3_client(self.settings.s3).list_objects_v2(
                Bucket=bucket, Prefix=f"{prefix}/{marker}".rstrip("/") + "/", MaxKeys=1
            )
            return bool(listed.get("KeyCount"))
        folder = Path(self.path(table)) / marker
        return folder.is_dir() and any(folder.iterdir())

    def read(self, table: str) -> DataFrame:
        """The current version of ``table``."""
        return self.spark.read.format(self.format).load(self.path(table))

    def read_version(self, table: str, version: int) -> DataFrame:
        """``table`` as of a Delta version (time travel; Delta only)."""
        self._require_delta("time travel")
        return self.spark.read.format("delta").option("versionAsOf", version).load(self.path(table))

    def append(self, df: DataFrame, table: str, partition_by: Sequence[str] = ()) -> None:
        """Append ``df`` to ``table``, creating it (with its partitioning) if needed."""
        writer = df.write.format(self.format).mode("append")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(self.path(table))

    def overwrite(self, df: DataFrame, table: str, partition_by: Sequence[str] = ()) -> None:
        """Replace the whole content of ``table`` with ``df``."""
        writer = df.write.format(self.format).mode("overwrite")
        if self.format == "delta":
            writer = writer.option("overwriteSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(self.path(table))

    def upsert(
        self,
        df: DataFrame,
        table: str,
        keys: Sequence[str],
        partition_by: Sequence[str],
        partitions: Sequence[Any] = (),
    ) -> None:
        """Insert or update ``df`` rows in ``table`` by ``keys``, idempotently.

        ``df`` must hold complete partitions (every row of each ``partition_by`` value it touches):
        Delta merges row by row, parquet replaces exactly those partitions.

        Args:
            partitions: the values of the (single) ``partition_by`` column that ``df`` holds, when
                the caller knows them: the merge condition then names them as literals, so the
                engine reads only those partitions of ``table`` instead of all of it.
        """
        if not self.exists(table):
            self.append(df, table, partition_by)
            return
        if self.format == "delta":
            view = f"_upsert_{uuid.uuid4().hex[:12]}"
            df.createOrReplaceTempView(view)
            on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
            if partitions:
                (column,) = partition_by
                on += f" AND t.`{column}` IN ({', '.join(_sql_literal(v) for v in partitions)})"
            try:
                self.sql(
                    f"MERGE INTO {self.ref(table)} AS t USING {view} AS s ON {on} "
                    "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
                )
            finally:
                self.spark.catalog.dropTempView(view)
        else:
            # Dynamic mode replaces only the partitions present in df, as a Delta merge would.
            self.spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
            df.write.format("parquet").mode("overwrite").partitionBy(*partition_by).save(self.path(table))

    def delete_where(self, table: str, condition: str) -> None:
        """``DELETE FROM table WHERE condition`` (Delta only; a no-op with a warning on parquet)."""
        if not self.exists(table):
            return
        if self.format != "delta":
            log.warning("parquet tables cannot delete rows; skipped DELETE on %s WHERE %s", table, condition)
            return
        self.sql(f"DELETE FROM {self.ref(table)} WHERE {condition}")

    def count(self, table: str) -> int:
        """Row count of ``table`` (0 when it does not exist yet)."""
        return self.read(table).count() if self.exists(table) else 0

    def read_files(self, paths: Sequence[str]) -> DataFrame:
        """Raw files as rows of ``path`` and ``content`` (bytes): the ``binaryFile`` source, the one
        file source that carries each row's path on Sail and on Spark alike."""
        return self.spark.read.format("binaryFile").load(list(paths))

    def read_folders(self, folders: Sequence[str], paths: Sequence[str]) -> DataFrame:
        """The raw files ``paths``, read by listing the ``folders`` that hold them (``projectviews-*``
        files only), as :meth:`read_files` gives them.

        A file that lands in a folder after the run listed it is left for the next run: rows are
        kept only for ``paths``, matched on their ``YYYY/YYYY-MM/name`` key (engines report paths
        in several forms).
        """
        keys = [path.rsplit("/", 3)[-3:] for path in paths]
        files = self.spark.read.format("binaryFile").option("pathGlobFilter", "projectviews-*").load(list(folders))
        return files.where(F.substring_index("path", "/", -3).isin(["/".join(k) for k in keys]))

    def frame(self, rows: Iterable[Sequence[Any]], schema: StructType) -> DataFrame:
        """A small DataFrame of driver-side ``rows`` (ledger rows, reports, lookup tables).

        Engines know its exact size, so joining it to a large table is a broadcast join even where
        join hints are ignored (Sail 0.7).
        """
        return self.spark.createDataFrame([tuple(r) for r in rows], schema)

    def append_rows(self, rows: Iterable[Sequence[Any]], schema: StructType, table: str) -> None:
        """Append driver-side ``rows`` to ``table``."""
        self.append(self.frame(rows, schema), table)

    def max_value(self, table: str, column: str) -> Any:
        """The largest ``column`` value of ``table`` (None when it is empty or missing)."""
        if not self.exists(table):
            return None
        return self.read(table).agg(F.max(column)).collect()[0][0]

    def ref(self, table: str) -> str:
        """SQL reference to ``table``, e.g. ``delta.`/lake/gold` ``."""
        return f"{self.format}.`{self.path(table)}`"

    def sql(self, statement: str) -> None:
        """Run a DDL/DML statement and wait for it."""
        log.debug("sql: %s", statement)
        self.spark.sql(statement).collect()

    def _require_delta(self, what: str) -> None:
        if self.format != "delta":
            raise NotImplementedError(f"{what} needs table_format=delta (got {self.format})")


def _sql_literal(value: Any) -> str:
    """A SQL literal for a partition value (dates and strings; nothing user-typed reaches here)."""
    if isinstance(value, date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
