"""Explicit Spark schemas of the lakehouse tables; the train/serve contract tables' are in the core.

``gold_churn_features`` and ``gold_churn_scores`` are declared engine-free in
:mod:`wikichurn.core.tables` (serving and the dashboard read them without pyspark);
:func:`struct_type` is their Spark form.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from wikichurn.core.tables import Column


def struct_type(columns: Sequence[Column]) -> StructType:
    """The Spark schema of a contract table of :mod:`wikichurn.core.tables`."""
    return StructType([StructField(c.name, spark_type(c.type), c.nullable) for c in columns])


_SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(),
    "date": DateType(),
    "timestamp": TimestampType(),
    "double": DoubleType(),
    "bigint": LongType(),
    "int": IntegerType(),
    "boolean": BooleanType(),
}


def spark_type(name: str) -> DataType:
    """A Spark SQL type name of the contract (``bigint``, ``date``, ...) as a ``DataType``."""
    return _SPARK_TYPES[name]


BRONZE_SCHEMA = StructType(
    [
        StructField("value", StringType(), False),
        StructField("_source_path", StringType(), False),
        StructField("_ingested_at", TimestampType(), False),
    ]
)

# One row per raw file bronze has taken, including files with no lines.
LEDGER_SCHEMA = StructType(
    [
        StructField("_source_path", StringType(), False),
        StructField("file_name", StringType(), False),
        StructField("file_bytes", LongType(), True),
        StructField("line_count", LongType(), False),
        StructField("event_timestamp", TimestampType(), True),
        StructField("event_date", DateType(), True),
        StructField("_ingested_at", TimestampType(), False),
    ]
)

SILVER_CLEAN_SCHEMA = StructType(
    [
        StructField("domain_code", StringType(), False),
        StructField("count_views", LongType(), False),
        StructField("event_timestamp", TimestampType(), False),
        StructField("event_date", DateType(), False),
        StructField("_source_path", StringType(), False),
        StructField("_ingested_at", TimestampType(), False),
    ]
)

SILVER_QUARANTINE_SCHEMA = StructType(
    [
        StructField("value", StringType(), False),
        StructField("_source_path", StringType(), False),
        StructField("_ingested_at", TimestampType(), False),
        StructField("dq_reason", StringType(), False),
    ]
)

DQ_REPORT_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("run_at", TimestampType(), False),
        StructField("bronze_watermark", TimestampType(), True),
        StructField("rows_in", LongType(), False),
        StructField("rows_clean", LongType(), False),
        StructField("rows_quarantined", LongType(), False),
        StructField("report", StringType(), False),
    ]
)

GOLD_DAILY_SCHEMA = StructType(
    [
        StructField("domain_code", StringType(), False),
        StructField("count_views", LongType(), False),
        StructField("hours_present", IntegerType(), False),
        StructField("event_date", DateType(), False),
    ]
)

# Driver-side frames of a run (not tables): the files of a pending batch, the hour each names,
# and the domains a batch lists more than once in one hour.
SOURCE_PATHS_SCHEMA = StructType([StructField("_source_path", StringType(), False)])

FILE_HOURS_SCHEMA = StructType(
    [
        StructField("_source_path", StringType(), False),
        StructField("_event_timestamp", TimestampType(), True),
    ]
)

# The same, keyed by silver.path_key() (when no two files of the batch share a key).
KEYED_FILE_HOURS_SCHEMA = StructType(
    [
        StructField("_path_key", LongType(), False),
        StructField("_event_timestamp", TimestampType(), True),
    ]
)
