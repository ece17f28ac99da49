"""The incremental medallion run: raw files -> bronze -> silver (+ quarantine, DQ report) -> gold.

Each step commits in an order that makes a crash harmless:
1. bronze rows of new files, then their ledger rows (a file in bronze but not yet in the ledger is
   reconciled on the next run, never read twice);
2. silver rows of bronze rows newer than the last DQ report's watermark (rows a crashed run left
   behind above that watermark are deleted first), then gold for the dates those rows touch
   (an idempotent merge), then the DQ report, which commits the run.

This module only orders the steps (:mod:`.steps`), hands each its parameters from the settings,
and times them: ``PipelineResult.phases`` says where a run's time went.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from wikichurn.core import tables
from wikichurn.core.storage import open_store
from wikichurn.core.tables import GOLD_FEATURES
from wikichurn.pipeline.lakehouse import steps
from wikichurn.pipeline.lakehouse.bronze import is_raw_key
from wikichurn.pipeline.lakehouse.features import run_features
from wikichurn.pipeline.lakehouse.freshness import is_older
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.pipeline.lakehouse.steps import ConservationError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import Settings

__all__ = ["ConservationError", "PipelineResult", "run_pipeline"]

log = logging.getLogger(__name__)


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
    # Wall seconds per step, in run order (bronze, ledger, silver_classify, silver_clean, ...).
    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall time of the ``with`` body to ``phases[phase]``."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - started

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
        settings: where raw files and the lake are, the engine's table format, the bronze batch
            size and the churn definition's completeness threshold (for the DQ report).
        features: also rebuild ``gold_churn_features`` when gold changed (or it is missing).

    Returns:
        Counts of what this run added, the row count of every table, and the time of each step.
    """
    started = time.monotonic()
    lake = Lake(spark, settings)
    store = open_store(settings.raw_uri, settings.s3)
    run_at = datetime.now(UTC).replace(tzinfo=None)  # naive UTC: the session time zone is UTC
    result = PipelineResult(run_id=uuid.uuid4().hex[:12], run_at=run_at)

    with result.timed("list"):
        listing = store.list_files()
        candidates = [f for f in listing if is_raw_key(f.key)]
        # Refused by size before reading (real files are tens of KB): left in place, named at every run.
        limit = settings.ingest.max_file_bytes
        if oversized := [f.key for f in candidates if f.size > limit]:
            log.warning("not reading %d files over ingest.max_file_bytes (%d): %s", len(oversized), limit, oversized)
            candidates = [f for f in candidates if f.size <= limit]
        result.files_ignored = len(listing) - len(candidates)
        sizes = {store.uri(f.key): f.size for f in candidates}
        # Raw files per folder, oversized ones included: bronze lists a folder only when all are new.
        folder_files = Counter(store.uri(f.key).rsplit("/", 1)[0] for f in listing if is_raw_key(f.key))
    with result.timed("ledger"):
        # A previous run may have died between bronze and ledger; this also gives the known files.
        known = steps.reconcile_ledger(lake, sizes, run_at)
    new_paths = [store.uri(f.key) for f in candidates if store.uri(f.key) not in known]
    result.files_new = len(new_paths)
    if new_paths:
        with result.timed("bronze"):
            steps.append_bronze(lake, new_paths, store.root, run_at, settings.pipeline.bronze_batch_files, folder_files)
        with result.timed("ledger"):
            # Files with no lines leave no bronze row: name them so the ledger still records them.
            steps.reconcile_ledger(lake, sizes, run_at, expected=new_paths, known=known)

    _silver_and_gold(
        lake,
        result,
        min_hours_complete=settings.churn.min_hours_complete,
        first_hour=settings.pipeline.first_file_hour,
    )
    # is_older: a run killed after its DQ report but before the features left them stale.
    stale = result.gold_dates or is_older(lake, GOLD_FEATURES, tables.GOLD_DAILY)
    if features and lake.exists(tables.GOLD_DAILY) and stale:
        with result.timed("features"):
            log.info("features: rebuilding %s", GOLD_FEATURES)
            result.features = run_features(spark, settings).describe()
    with result.timed("table_counts"):
        result.table_counts = {name: lake.count(name) for name in (*tables.PIPELINE_TABLES, GOLD_FEATURES)}
    result.seconds = time.monotonic() - started
    log.info(result.describe())
    log.info("phases: %s", ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items()))
    return result


def _silver_and_gold(lake: Lake, result: PipelineResult, *, min_hours_complete: int, first_hour: datetime) -> None:
    """Silver, gold and the DQ report for the bronze rows no report covers yet."""
    with result.timed("pending"):
        pending = steps.pending_bronze(lake)
    if pending is None:
        return
    with result.timed("silver_clear"):
        steps.clear_unreported_silver(lake, pending)
    with result.timed("silver_classify"):
        classified = steps.classify_pending(lake, pending, first_hour)
    with result.timed("silver_clean"):
        steps.append_silver_clean(lake, classified)
    with result.timed("silver_quarantine"):
        steps.append_quarantine(lake, classified)
    with result.timed("conservation"):
        counts = steps.check_conservation(lake, pending)
    with result.timed("gold_merge"):
        steps.merge_gold(lake, counts.dates)
    with result.timed("dq_report"):
        report = steps.dq_report(lake, result.run_id, result.run_at, pending, counts, min_hours_complete)
        steps.append_dq_report(lake, report, result.run_at, pending)
    result.bronze_rows, result.clean_rows, result.quarantined_rows = pending.rows, counts.clean, counts.quarantined
    result.by_reason, result.gold_dates = counts.by_reason, counts.dates
