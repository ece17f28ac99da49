"""The incremental medallion run: raw files -> bronze -> silver (+ quarantine, DQ report) -> gold.

Each step commits in an order that makes a crash harmless:
1. bronze rows of new files, then their ledger rows (a file in bronze but not yet in the ledger is
   reconciled on the next run, never read twice);
2. silver rows of bronze rows newer than the last DQ report's watermark (rows a crashed run left
   behind above that watermark are deleted first), then gold for the dates those rows touch
   (an idempotent merge), then the DQ report, which commits the run.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from wikichurn.core.layout import parse_file_time
from wikichurn.core.storage import RawStore, StoredFile, open_store
from wikichurn.pipeline.lakehouse import lake as tables
from wikichurn.pipeline.lakehouse.bronze import build_bronze, is_raw_key
from wikichurn.pipeline.lakehouse.features import GOLD_FEATURES, run_features
from wikichurn.pipeline.lakehouse.gold import build_gold_daily
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.pipeline.lakehouse.schemas import DQ_REPORT_SCHEMA, LEDGER_SCHEMA
from wikichurn.pipeline.lakehouse.silver import DQ_REASONS, PARSED_COLUMNS, clean_rows, parse_bronze, quarantined_rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)


class ConservationError(RuntimeError):
    """Bronze rows did not all land in silver clean or quarantine."""


@dataclass
class PipelineResult:
    """What one pipeline run did."""

    run_id: str
    run_at: datetime
    files_new: int = 0
    files_ignored: int = 0
    bronze_rows: int = 0
    clean_rows: int = 0
    quarantined_rows: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    gold_dates: list[date] = field(default_factory=list)
    table_counts: dict[str, int] = field(default_factory=dict)
    features: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` output and logs)."""
        data = asdict(self)
        data["run_at"] = self.run_at.isoformat() + "Z"
        data["gold_dates"] = [d.isoformat() for d in self.gold_dates]
        return data

    def describe(self) -> str:
        """A short human summary."""
        if not self.bronze_rows and not self.files_new:
            return f"run {self.run_id}: nothing new ({self.seconds:.1f} s)"
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.by_reason.items())) or "none"
        span = f"{min(self.gold_dates)}..{max(self.gold_dates)}" if self.gold_dates else "none"
        return (
            f"run {self.run_id}: {self.files_new} new files, {self.bronze_rows:,} bronze rows -> "
            f"{self.clean_rows:,} clean + {self.quarantined_rows:,} quarantined ({reasons}); "
            f"gold dates recomputed: {len(self.gold_dates)} ({span}); {self.seconds:.1f} s"
            + (f"\n{self.features}" if self.features else "")
        )


def run_pipeline(spark: SparkSession, settings: Settings, *, features: bool = True) -> PipelineResult:
    """Run bronze, silver and gold incrementally over everything raw storage holds.

    Args:
        spark: the session from :func:`wikichurn.pipeline.spark.build_spark`.
        settings: where raw files and the lake are, and the engine's table format.
        features: also rebuild ``gold_churn_features`` when gold changed (or it is missing).

    Returns:
        Counts of what this run added, and the row count of every table.
    """
    started = time.monotonic()
    lake = Lake(spark, settings)
    store = open_store(settings.raw_uri, settings.s3)
    run_at = datetime.now(UTC).replace(tzinfo=None)  # naive UTC: the session time zone is UTC
    result = PipelineResult(run_id=uuid.uuid4().hex[:12], run_at=run_at)

    listing = store.list_files()
    candidates = [f for f in listing if is_raw_key(f.key)]
    # Refused by size before reading (real files are tens of KB): left in place, named at every run.
    limit = settings.ingest.max_file_bytes
    if oversized := [f.key for f in candidates if f.size > limit]:
        log.warning("not reading %d raw files over ingest.max_file_bytes (%d): %s", len(oversized), limit, oversized)
        candidates = [f for f in candidates if f.size <= limit]
    result.files_ignored = len(listing) - len(candidates)
    sizes = {store.uri(f.key): f.size for f in candidates}

    # A previous run may have died between bronze and ledger; this also gives the known files.
    known = _reconcile_ledger(lake, sizes, run_at)
    new_files = [f for f in candidates if store.uri(f.key) not in known]
    result.files_new = len(new_files)
    if new_files:
        _append_bronze(lake, store, new_files, run_at, settings.pipeline.bronze_batch_files)
        # Files with no lines leave no bronze row: name them so the ledger still records them.
        _reconcile_ledger(lake, sizes, run_at, expected=[store.uri(f.key) for f in new_files])

    _update_silver_and_gold(lake, result)
    if features and lake.exists(tables.GOLD_DAILY) and (result.gold_dates or not lake.exists(GOLD_FEATURES)):
        result.features = run_features(spark, settings).describe()
    result.table_counts = {
        name: lake.count(name)
        for name in (
            tables.BRONZE,
            tables.BRONZE_LEDGER,
            tables.SILVER_CLEAN,
            tables.SILVER_QUARANTINE,
            tables.SILVER_DQ_REPORTS,
            tables.GOLD_DAILY,
            GOLD_FEATURES,
        )
    }
    result.seconds = time.monotonic() - started
    log.info(result.describe())
    return result


def _chunks(items: list[StoredFile], size: int) -> Iterable[list[StoredFile]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _append_bronze(lake: Lake, store: RawStore, files: list[StoredFile], run_at: datetime, batch_files: int) -> None:
    for batch in _chunks(files, batch_files):
        raw = lake.spark.read.format("binaryFile").load([store.uri(f.key) for f in batch])
        lake.append(build_bronze(raw, store.root, run_at), tables.BRONZE)
        log.info("bronze: appended %d files", len(batch))


def _ledger_paths(lake: Lake) -> set[str]:
    if not lake.exists(tables.BRONZE_LEDGER):
        return set()
    return {row[0] for row in lake.read(tables.BRONZE_LEDGER).select("_source_path").collect()}


def _reconcile_ledger(lake: Lake, sizes: dict[str, int], run_at: datetime, expected: Iterable[str] = ()) -> set[str]:
    """Add ledger rows for bronze files that have none, and for ``expected`` files with no lines.

    Returns:
        Every path the ledger holds afterwards.
    """
    known = _ledger_paths(lake)
    rows: dict[str, tuple[int, datetime]] = {}
    if lake.exists(tables.BRONZE):
        bronze = lake.read(tables.BRONZE)
        if known and lake.exists(tables.BRONZE_LEDGER):
            # Only bronze rows newer than the ledger can lack a ledger row (see module docstring).
            newest = lake.read(tables.BRONZE_LEDGER).agg(F.max("_ingested_at")).collect()[0][0]
            bronze = bronze.where(F.col("_ingested_at") > F.lit(newest))
        counted = bronze.groupBy("_source_path").agg(F.count(F.lit(1)).alias("n"), F.max("_ingested_at").alias("at"))
        rows = {r["_source_path"]: (int(r["n"]), r["at"]) for r in counted.collect() if r["_source_path"] not in known}
    for path in expected:
        if path not in known and path not in rows:
            rows[path] = (0, run_at)
    if not rows:
        return known
    ledger = []
    for path, (count, at) in sorted(rows.items()):
        name = path.rsplit("/", 1)[-1]
        when = parse_file_time(name)
        hour = when.replace(tzinfo=None) if when else None
        ledger.append((path, name, sizes.get(path), count, hour, hour.date() if hour else None, at))
    lake.append(lake.spark.createDataFrame(ledger, LEDGER_SCHEMA), tables.BRONZE_LEDGER)
    log.info("ledger: recorded %d files", len(ledger))
    return known | set(rows)


def _last_watermark(lake: Lake) -> datetime | None:
    if not lake.exists(tables.SILVER_DQ_REPORTS):
        return None
    value = lake.read(tables.SILVER_DQ_REPORTS).agg(F.max("bronze_watermark")).collect()[0][0]
    return value  # type: ignore[no-any-return]


def _after(column: str, watermark: datetime | None) -> str:
    return "true" if watermark is None else f"{column} > TIMESTAMP'{watermark.isoformat(sep=' ')}'"


def _update_silver_and_gold(lake: Lake, result: PipelineResult) -> None:
    if not lake.exists(tables.BRONZE):
        return
    watermark = _last_watermark(lake)
    pending_filter = _after("_ingested_at", watermark)
    pending = lake.read(tables.BRONZE).where(pending_filter)
    newest = pending.agg(F.max("_ingested_at"), F.count(F.lit(1))).collect()[0]
    if newest[1] == 0:
        return
    new_watermark, rows_in = newest[0], int(newest[1])

    # Rows a crashed run wrote above the watermark would otherwise be counted twice.
    for table in (tables.SILVER_CLEAN, tables.SILVER_QUARANTINE):
        lake.delete_where(table, pending_filter)

    # Parse once into scratch parquet, then split: engines without caching (Sail) would
    # otherwise run the parse, regexes and duplicate window twice, once per output table.
    scratch = f"silver-{result.run_id}"
    parse_bronze(pending).select(*PARSED_COLUMNS).write.mode("overwrite").parquet(lake.scratch_path(scratch))
    parsed = lake.spark.read.parquet(lake.scratch_path(scratch))
    lake.append(clean_rows(parsed), tables.SILVER_CLEAN, partition_by=["event_date"])
    log.info("silver: clean rows appended")
    lake.append(quarantined_rows(parsed), tables.SILVER_QUARANTINE)
    log.info("silver: quarantined rows appended")
    lake.drop_scratch(scratch)

    clean_new = lake.read(tables.SILVER_CLEAN).where(pending_filter)
    rows_clean = clean_new.count()
    by_reason = {
        r["dq_reason"]: int(r["n"])
        for r in lake.read(tables.SILVER_QUARANTINE)
        .where(pending_filter)
        .groupBy("dq_reason")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    quarantined = sum(by_reason.values())
    if rows_clean + quarantined != rows_in:
        raise ConservationError(
            f"bronze rows {rows_in} != clean {rows_clean} + quarantined {quarantined}: silver is inconsistent"
        )

    dates = sorted(r[0] for r in clean_new.select("event_date").distinct().collect())
    log.info("silver: %d rows in = %d clean + %d quarantined", rows_in, rows_clean, quarantined)
    if dates:
        touched = lake.read(tables.SILVER_CLEAN).where(F.col("event_date").isin(dates))
        lake.upsert(
            build_gold_daily(touched),
            tables.GOLD_DAILY,
            keys=["domain_code", "event_date"],
            partition_by=["event_date"],
        )

    report = _dq_report(lake, result, rows_in, rows_clean, by_reason, dates, pending)
    lake.append(
        lake.spark.createDataFrame(
            [(result.run_id, result.run_at, new_watermark, rows_in, rows_clean, quarantined, json.dumps(report))],
            DQ_REPORT_SCHEMA,
        ),
        tables.SILVER_DQ_REPORTS,
    )
    result.bronze_rows, result.clean_rows, result.quarantined_rows = rows_in, rows_clean, quarantined
    result.by_reason, result.gold_dates = by_reason, dates


def _dq_report(
    lake: Lake,
    result: PipelineResult,
    rows_in: int,
    rows_clean: int,
    by_reason: dict[str, int],
    dates: list[date],
    pending: DataFrame,
) -> dict[str, Any]:
    files = [r[0] for r in pending.select("_source_path").distinct().collect()]
    completeness: dict[str, int] = {}
    if dates and lake.exists(tables.BRONZE_LEDGER):
        per_date = (
            lake.read(tables.BRONZE_LEDGER)
            .where(F.col("event_date").isin(dates))
            .groupBy("event_date")
            .agg(F.countDistinct("event_timestamp").alias("hours"))
            .collect()
        )
        completeness = {str(r["event_date"]): int(r["hours"]) for r in sorted(per_date)}
    return {
        "run_id": result.run_id,
        "run_at": result.run_at.isoformat() + "Z",
        "rows_in": rows_in,
        "rows_clean": rows_clean,
        "rows_quarantined": sum(by_reason.values()),
        "quarantined_by_reason": {reason: by_reason.get(reason, 0) for reason in DQ_REASONS},
        "files_processed": len(files),
        "hourly_completeness": completeness,
        "incomplete_dates": sorted(
            d for d, hours in completeness.items() if hours < lake.settings.churn.min_hours_complete
        ),
    }
