"""The table steps of a pipeline run, one function per table change, each given what it needs.

Every step reads and writes through :class:`~wikichurn.pipeline.lakehouse.lake.Lake` and takes its
business parameters as arguments (nothing reads settings here); the transforms they apply are the
pure functions of ``bronze``, ``silver`` and ``gold``. :mod:`.run` calls them in commit order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from wikichurn.core import tables
from wikichurn.core.layout import parse_file_time
from wikichurn.pipeline.lakehouse.bronze import build_bronze
from wikichurn.pipeline.lakehouse.gold import build_gold_daily
from wikichurn.pipeline.lakehouse.schemas import (
    DQ_REPORT_SCHEMA,
    FILE_HOURS_SCHEMA,
    KEYED_FILE_HOURS_SCHEMA,
    LEDGER_SCHEMA,
    SOURCE_PATHS_SCHEMA,
)
from wikichurn.pipeline.lakehouse.silver import (
    DQ_REASONS,
    PATH_KEY,
    classify,
    clean_rows,
    file_hours,
    parse_fields,
    path_key,
    quarantined_rows,
    rule_findings,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from wikichurn.pipeline.lakehouse.lake import Lake

log = logging.getLogger(__name__)


class ConservationError(RuntimeError):
    """Bronze rows did not all land in silver clean or quarantine."""


# --- bronze and its ledger -------------------------------------------------------------------


@dataclass(frozen=True)
class BronzeBatch:
    """The raw files of one bronze commit: whole folders, or a list of files."""

    paths: list[str]
    folders: list[str]  # empty: read ``paths`` one by one


def bronze_batches(paths: Sequence[str], folder_files: Mapping[str, int], batch_files: int) -> list[BronzeBatch]:
    """Cut the raw files ``paths`` into bronze commits of at most ``batch_files`` files.

    A folder whose every raw file is in ``paths`` (``folder_files``: how many raw files each folder
    holds) is read by listing it, which costs a fraction of looking up its files one by one (a
    year's 8,734 files: 4.0 -> 2.3 s on Sail); runs of such folders share a commit. The other files
    (a folder partly read before, or larger than a commit) are read as lists.
    """
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(path.rsplit("/", 1)[0], []).append(path)
    batches: list[BronzeBatch] = []
    run: list[str] = []
    loose: list[str] = []

    def close_run() -> None:
        if run:
            batches.append(BronzeBatch(paths=[p for f in run for p in by_folder[f]], folders=list(run)))
            run.clear()

    for folder, files in sorted(by_folder.items()):
        if len(files) == folder_files.get(folder) and len(files) <= batch_files:
            if sum(len(by_folder[f]) for f in run) + len(files) > batch_files:
                close_run()
            run.append(folder)
        else:
            loose.extend(files)
    close_run()
    batches.extend(
        BronzeBatch(paths=loose[start : start + batch_files], folders=[]) for start in range(0, len(loose), batch_files)
    )
    return batches


def append_bronze(
    lake: Lake, paths: Sequence[str], raw_root: str, run_at: datetime, batch_files: int, folder_files: Mapping[str, int]
) -> None:
    """Append the lines of the raw files ``paths`` to bronze, at most ``batch_files`` files per commit.

    Args:
        folder_files: how many raw files each folder of the listing holds (see :func:`bronze_batches`).
    """
    for batch in bronze_batches(paths, folder_files, batch_files):
        files = lake.read_folders(batch.folders, batch.paths) if batch.folders else lake.read_files(batch.paths)
        lake.append(build_bronze(files, raw_root, run_at), tables.BRONZE)
        log.info("bronze: appended %d files", len(batch.paths))


def reconcile_ledger(
    lake: Lake, sizes: dict[str, int], run_at: datetime, expected: Iterable[str] = (), known: set[str] | None = None
) -> set[str]:
    """Add ledger rows for bronze files that have none, and for ``expected`` files with no lines.

    Args:
        lake: the lake.
        sizes: byte size of every raw file, by path (the listing).
        run_at: ingestion time recorded for ``expected`` files that left no bronze row.
        expected: files this run read (an empty file leaves no bronze row but still needs a ledger row).
        known: the ledger's paths when the caller already has them (saves a read).

    Returns:
        Every path the ledger holds afterwards.
    """
    if known is None:
        known = _ledger_paths(lake)
    rows: dict[str, tuple[int, datetime]] = {}
    if lake.exists(tables.BRONZE):
        bronze = lake.read(tables.BRONZE)
        newest = lake.max_value(tables.BRONZE_LEDGER, "_ingested_at") if known else None
        if newest is not None:
            # Only bronze rows newer than the ledger can lack a ledger row (bronze commits first).
            bronze = bronze.where(F.col("_ingested_at") > F.lit(newest))
        counted = bronze.groupBy("_source_path").agg(F.count(F.lit(1)).alias("n"), F.max("_ingested_at").alias("at"))
        rows = {r["_source_path"]: (int(r["n"]), r["at"]) for r in counted.collect() if r["_source_path"] not in known}
    for path in expected:
        if path not in known and path not in rows:
            rows[path] = (0, run_at)
    if not rows:
        return known
    lake.append_rows(
        (_ledger_row(path, sizes.get(path), n, at) for path, (n, at) in sorted(rows.items())),
        LEDGER_SCHEMA,
        tables.BRONZE_LEDGER,
    )
    log.info("ledger: recorded %d files", len(rows))
    return known | set(rows)


def _ledger_paths(lake: Lake) -> set[str]:
    if not lake.exists(tables.BRONZE_LEDGER):
        return set()
    return {row[0] for row in lake.read(tables.BRONZE_LEDGER).select("_source_path").collect()}


def _ledger_row(path: str, size: int | None, count: int, at: datetime) -> tuple[Any, ...]:
    name = path.rsplit("/", 1)[-1]
    when = parse_file_time(name)
    hour = when.replace(tzinfo=None) if when else None
    return (path, name, size, count, hour, hour.date() if hour else None, at)


# --- silver ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """Bronze rows silver has not taken yet: those above the last DQ report's watermark."""

    condition: str  # SQL predicate on ``_ingested_at`` (also selects their silver rows)
    since: datetime | None  # the last report's watermark (None before the first report)
    watermark: datetime  # the newest ``_ingested_at`` among them: the next report's watermark
    rows: int
    files: list[str]

    def of(self, df: DataFrame) -> DataFrame:
        """``df`` restricted to the rows of this batch."""
        return df.where(self.condition)


def pending_bronze(lake: Lake) -> Pending | None:
    """The bronze rows newer than the last DQ report, or None when there are none."""
    if not lake.exists(tables.BRONZE):
        return None
    last = lake.max_value(tables.SILVER_DQ_REPORTS, "bronze_watermark")
    condition = "true" if last is None else f"_ingested_at > TIMESTAMP'{last.isoformat(sep=' ')}'"
    per_file = (
        lake.read(tables.BRONZE)
        .where(condition)
        .groupBy("_source_path")
        .agg(F.max("_ingested_at").alias("at"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    if not per_file:
        return None
    return Pending(
        condition=condition,
        since=last,
        watermark=max(r["at"] for r in per_file),
        rows=sum(int(r["n"]) for r in per_file),
        files=sorted(r["_source_path"] for r in per_file),
    )


def clear_unreported_silver(lake: Lake, pending: Pending) -> None:
    """Delete silver rows a crashed run wrote above the watermark (they would be counted twice)."""
    for table in (tables.SILVER_CLEAN, tables.SILVER_QUARANTINE):
        # A DELETE scans the whole table (minutes on years of silver); the newest ingestion time
        # comes from file statistics, so a run after a clean one skips it.
        newest = lake.max_value(table, "_ingested_at")
        if newest is not None and (pending.since is None or newest > pending.since):
            lake.delete_where(table, pending.condition)


@dataclass(frozen=True)
class Classified:
    """The pending bronze rows with their ``dq_reason``, as two plans over bronze."""

    rows: DataFrame  # every pending row
    suspects: DataFrame  # the rows of the files that can hold a quarantined row (see rule_findings)


def classify_pending(lake: Lake, pending: Pending, first_hour: datetime) -> Classified:
    """Apply the rules to the pending bronze rows.

    The small frames the rules need (each file's hour, the domains repeated in an hour) are
    computed first and brought to the driver, so the joins against the 100 M-row side are
    broadcasts on every engine. The same aggregate names the files with flagged rows: the
    quarantine then parses only those and the files of repeated domains' hours (a few in real
    data), not every line a third time.
    """
    bronze = pending.of(lake.read(tables.BRONZE))
    paths = lake.frame(((p,) for p in pending.files), SOURCE_PATHS_SCHEMA)
    hour_of = {r["_source_path"]: r["_event_timestamp"] for r in file_hours(paths).collect()}
    hours = lake.frame(hour_of.items(), FILE_HOURS_SCHEMA)
    keyed = hours.select(path_key().alias(PATH_KEY), "_event_timestamp").collect()
    if len({key for key, _ in keyed}) == len(keyed):  # else (a 64-bit collision): join on the paths
        hours = lake.frame(keyed, KEYED_FILE_HOURS_SCHEMA)
    fields = parse_fields(bronze, hours, first_hour)
    findings = rule_findings(fields).collect()
    repeated = [(r["_event_timestamp"], r["_domain"], r["_rows"]) for r in findings if r["_domain"] is not None]
    # The hours with a flagged row or a repeated domain (None: files without an hour).
    hours_to_check = {r["_event_timestamp"] for r in findings}
    suspects = sorted(path for path, hour in hour_of.items() if hour in hours_to_check)
    log.info(
        "silver: rules applied to %d files; %d domain-hours listed twice; %d files to look at for the quarantine",
        len(pending.files),
        len(repeated),
        len(suspects),
    )
    # The filter goes on bronze itself: the parse then runs on those files' rows only.
    in_suspects = F.col("_source_path").isin(suspects) if suspects else F.lit(False)
    suspect_fields = parse_fields(bronze.where(in_suspects), hours, first_hour)
    return Classified(rows=classify(fields, repeated), suspects=classify(suspect_fields, repeated))


def append_silver_clean(lake: Lake, classified: Classified) -> None:
    """Append rows no rule flagged to ``silver_projectviews_clean`` (partitioned by day)."""
    lake.append(clean_rows(classified.rows), tables.SILVER_CLEAN, partition_by=["event_date"])
    log.info("silver: clean rows appended")


def append_quarantine(lake: Lake, classified: Classified) -> None:
    """Append flagged rows, with their raw line and reason, to ``silver_projectviews_quarantine``."""
    lake.append(quarantined_rows(classified.suspects), tables.SILVER_QUARANTINE)
    log.info("silver: quarantined rows appended")


@dataclass(frozen=True)
class SilverCounts:
    """What silver holds for one pending batch."""

    clean: int
    by_reason: dict[str, int]
    dates: list[date]

    @property
    def quarantined(self) -> int:
        return sum(self.by_reason.values())


def check_conservation(lake: Lake, pending: Pending) -> SilverCounts:
    """Count the batch's silver rows; raise :class:`ConservationError` unless clean + quarantined = bronze."""
    per_date = pending.of(lake.read(tables.SILVER_CLEAN)).groupBy("event_date").count().collect()
    by_reason = {
        r["dq_reason"]: int(r["count"])
        for r in pending.of(lake.read(tables.SILVER_QUARANTINE)).groupBy("dq_reason").count().collect()
    }
    counts = SilverCounts(
        clean=sum(int(r["count"]) for r in per_date), by_reason=by_reason, dates=sorted(r[0] for r in per_date)
    )
    if counts.clean + counts.quarantined != pending.rows:
        raise ConservationError(
            f"bronze rows {pending.rows} != clean {counts.clean} + quarantined {counts.quarantined}: "
            "silver is inconsistent"
        )
    log.info("silver: %d rows in = %d clean + %d quarantined", pending.rows, counts.clean, counts.quarantined)
    return counts


# --- gold and the report ---------------------------------------------------------------------


def merge_gold(lake: Lake, dates: Sequence[date]) -> None:
    """Recompute ``gold_daily_projectviews`` for ``dates`` from all of their clean rows (a merge)."""
    if not dates:
        return
    touched = lake.read(tables.SILVER_CLEAN).where(F.col("event_date").isin(list(dates)))
    lake.upsert(
        build_gold_daily(touched),
        tables.GOLD_DAILY,
        keys=["domain_code", "event_date"],
        partition_by=["event_date"],
        partitions=dates,  # prunes the merge's scan of gold to these days
    )
    log.info("gold: merged %d dates", len(dates))


def dq_report(
    lake: Lake, run_id: str, run_at: datetime, pending: Pending, counts: SilverCounts, min_hours_complete: int
) -> dict[str, Any]:
    """The run's data-quality report (a JSON-safe dict).

    Args:
        min_hours_complete: a day with fewer hourly files is listed as incomplete.
    """
    completeness: dict[str, int] = {}
    if counts.dates and lake.exists(tables.BRONZE_LEDGER):
        per_date = (
            lake.read(tables.BRONZE_LEDGER)
            .where(F.col("event_date").isin(counts.dates))
            .groupBy("event_date")
            .agg(F.countDistinct("event_timestamp").alias("hours"))
            .collect()
        )
        completeness = {str(r["event_date"]): int(r["hours"]) for r in sorted(per_date)}
    return {
        "run_id": run_id,
        "run_at": run_at.isoformat() + "Z",
        "rows_in": pending.rows,
        "rows_clean": counts.clean,
        "rows_quarantined": counts.quarantined,
        "quarantined_by_reason": {reason: counts.by_reason.get(reason, 0) for reason in DQ_REASONS},
        "files_processed": len(pending.files),
        "hourly_completeness": completeness,
        "incomplete_dates": sorted(d for d, hours in completeness.items() if hours < min_hours_complete),
    }


def append_dq_report(lake: Lake, report: dict[str, Any], run_at: datetime, pending: Pending) -> None:
    """Append ``report`` to ``silver_dq_reports``: this commits the run (its watermark moves on)."""
    row = (
        report["run_id"],
        run_at,
        pending.watermark,
        report["rows_in"],
        report["rows_clean"],
        report["rows_quarantined"],
        json.dumps(report),
    )
    lake.append_rows([row], DQ_REPORT_SCHEMA, tables.SILVER_DQ_REPORTS)
