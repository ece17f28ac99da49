"""Bronze: raw projectviews lines, one row per non-empty line, with where and when they came from.

Sail has neither ``input_file_name()`` nor ``_metadata.file_path``, so bronze reads files with the
``binaryFile`` source (path + bytes, on Sail and Spark alike) and carries the path as a column.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from wikichurn.pipeline import compat
from wikichurn.pipeline.lakehouse.frames import conform
from wikichurn.pipeline.lakehouse.schemas import BRONZE_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Raw keys bronze takes: projectviews-* files in YYYY/YYYY-MM folders. A name that looks like a
# projectviews file but carries an impossible timestamp is still taken, so silver quarantines its
# lines as unparseable instead of silently dropping them.
RAW_KEY = re.compile(r"^\d{4}/\d{4}-\d{2}/projectviews-[^/]+$")
# Bronze reads only files whose keys match RAW_KEY, three segments each, so the key is the last three
# segments of whatever path form the engine reports (file:/, s3://, bare). Taken with a string
# function, not regexp_extract: a binaryFile read yields a batch per file, and Sail compiles the
# pattern for every batch (measured: 2.5 of the 4 s of a year's bronze read, 8,734 files).
_KEY_SEGMENTS = 3


def is_raw_key(key: str) -> bool:
    """True for raw-storage keys bronze ingests."""
    return bool(RAW_KEY.match(key))


def build_bronze(files: DataFrame, raw_root: str, ingested_at: datetime) -> DataFrame:
    """Explode raw files into bronze rows.

    Args:
        files: rows with ``path`` (string) and ``content`` (binary), as the binaryFile source gives.
        raw_root: URI of the raw zone; ``_source_path`` is ``<raw_root>/<YYYY/YYYY-MM/name>``.
        ingested_at: the run's timestamp, shared by every row of the run.

    Returns:
        ``value``, ``_source_path``, ``_ingested_at``; empty lines (a trailing newline) dropped.
    """
    files = compat.distinct_files(files)
    key = F.substring_index("path", "/", -_KEY_SEGMENTS)
    lines = files.select(
        F.concat(F.lit(raw_root.rstrip("/") + "/"), key).alias("_source_path"),
        # make_valid_utf8, not a cast: Sail's cast fails the whole job on one invalid byte, and a raw
        # file is never trusted to be UTF-8. Invalid bytes become U+FFFD and the DQ rules judge the line.
        F.explode(F.split(F.make_valid_utf8("content"), "\n")).alias("value"),
    )
    # One trailing CR (files written on Windows) goes; a string test is cheaper than a regex.
    lines = lines.withColumn(
        "value",
        F.when(F.col("value").endswith("\r"), F.expr("substr(value, 1, length(value) - 1)")).otherwise(F.col("value")),
    )
    return conform(
        lines.where(F.col("value") != "").withColumn("_ingested_at", F.lit(ingested_at)),
        BRONZE_SCHEMA,
    )
