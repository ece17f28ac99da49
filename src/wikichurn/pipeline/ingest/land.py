"""Ingestion: land projectviews files from the dumps site into raw storage, idempotently.

For each month folder covering the requested dates, the source is listed, files whose hour falls on
a requested date are kept, those already in raw storage with the same size are skipped, and the rest
are downloaded concurrently and written with an atomic ``put`` at ``YYYY/YYYY-MM/<name>``. One
failing file never stops the others: failures are counted and reported in the summary, and the
command line exits non-zero when there are any.

The same code runs from the CLI (``wikichurn ingest``) and from AWS Lambda (:func:`lambda_handler`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from wikichurn.core import layout
from wikichurn.core.settings import Settings, load_settings
from wikichurn.core.storage import RawStore, open_store
from wikichurn.pipeline.ingest.dumps import DumpsError, DumpsSource, RemoteFile, open_source

log = logging.getLogger(__name__)

# The Lambda entry point refuses longer ranges (one invocation must finish within its time limit);
# the CLI has no such limit.
MAX_LAMBDA_DAYS = 62
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


@dataclass
class IngestSummary:
    """What one ingestion run did.

    ``listed`` counts the source's projectviews files on the requested dates; each of them is
    ``skipped`` (already in raw storage, same size), ``downloaded`` or failed. ``failed`` also counts
    month listings that could not be read; ``failures`` holds ``(file or folder, error message)``.
    """

    listed: int = 0
    skipped: int = 0
    downloaded: int = 0
    failed: int = 0
    bytes_downloaded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add_failure(self, name: str, error: object) -> None:
        self.failed += 1
        self.failures.append((name, str(error)))

    def describe(self) -> str:
        """A human-readable report, one line plus one line per failure (first 20)."""
        text = (
            f"ingest: {self.listed} files listed, {self.downloaded} downloaded "
            f"({self.bytes_downloaded:,} bytes), {self.skipped} already present, "
            f"{self.failed} failed, in {self.seconds:.1f} s"
        )
        lines = [text] + [f"  FAILED {name}: {message}" for name, message in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more failures")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (failures as ``{"name", "error"}`` objects)."""
        data = asdict(self)
        data["failures"] = [{"name": name, "error": message} for name, message in self.failures]
        data["seconds"] = round(self.seconds, 3)
        return data


def _wanted(
    source: DumpsSource, store: RawStore, start: date, end: date, summary: IngestSummary
) -> list[tuple[str, RemoteFile, str]]:
    """``(folder, file, key)`` for every listed file on the dates that raw storage lacks."""
    todo: list[tuple[str, RemoteFile, str]] = []
    seen: set[str] = set()
    for folder in layout.month_folders(start, end):
        try:
            files = source.list_month(folder)
        except DumpsError as err:
            log.error("cannot list %s: %s", folder, err)
            summary.add_failure(folder, err)
            continue
        # One listing of the destination per month (one LIST on S3 instead of a HEAD per file).
        present = {stored.key: stored.size for stored in store.list_files(folder)}
        for file in files:
            when = layout.parse_file_time(file.name)
            if when is None:
                # Matches the name pattern but is not a real hour (month 13, minute 30, ...).
                log.warning("skipping %s in %s: not a valid projectviews hour", file.name, folder)
                continue
            if not start <= when.date() <= end:
                continue
            key = layout.key_for(file.name)
            if key in seen:
                continue
            seen.add(key)
            summary.listed += 1
            # A file listed under another month than its name says lands in its own month folder.
            size = present.get(key) if key.rsplit("/", 1)[0] == folder else store.size(key)
            if size is not None and (file.size is None or file.size == size):
                summary.skipped += 1
                continue
            if size is not None:
                log.warning("%s changed upstream (%d -> %s bytes): downloading again", key, size, file.size)
            todo.append((folder, file, key))
    return todo


def _download(source: DumpsSource, store: RawStore, folder: str, file: RemoteFile, key: str) -> int:
    data = source.fetch(folder, file)
    store.put(key, data)
    return len(data)


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("downloading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("downloading", total=total)
        yield lambda: bar.advance(task)


def ingest_into(
    source: DumpsSource,
    store: RawStore,
    start: date,
    end: date,
    settings: Settings,
    *,
    progress: bool = False,
) -> IngestSummary:
    """:func:`ingest` with an already opened source and store."""
    began = time.monotonic()
    summary = IngestSummary()
    todo = _wanted(source, store, start, end, summary)
    log.info("%d files on %s..%s, %d to download", summary.listed, start, end, len(todo))
    with (
        _progress_bar(progress, len(todo)) as advance,
        ThreadPoolExecutor(max_workers=settings.ingest.concurrency, thread_name_prefix="ingest") as pool,
    ):
        futures = {pool.submit(_download, source, store, folder, file, key): key for folder, file, key in todo}
        for future in as_completed(futures):
            key = futures[future]
            try:
                size = future.result()
            except Exception as err:  # one file's failure never stops the others
                log.error("failed %s: %s", key, err)
                summary.add_failure(key.rsplit("/", 1)[-1], err)
            else:
                summary.downloaded += 1
                summary.bytes_downloaded += size
            advance()
    summary.failures.sort()
    summary.seconds = time.monotonic() - began
    log.info(summary.describe())
    return summary


def ingest(
    source: str,
    dest: str,
    start: date,
    end: date,
    settings: Settings,
    *,
    progress: bool = False,
) -> IngestSummary:
    """Land the projectviews files of ``start`` .. ``end`` (UTC dates, inclusive) from ``source``
    (dumps URL or folder) into ``dest`` (folder or ``s3://bucket/prefix``). Re-running downloads
    only what is missing or changed upstream."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    store = open_store(dest, settings.s3)
    src = open_source(source, settings.ingest)
    try:
        return ingest_into(src, store, start, end, settings, progress=progress)
    finally:
        close = getattr(src, "close", None)
        if close is not None:
            close()


def _bad_request(message: str) -> dict[str, Any]:
    log.warning("bad ingest request: %s", message)
    return {"statusCode": 400, "error": message}


def _parse_date(value: object, name: str) -> date:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError(f"{name} must be a date YYYY-MM-DD, got {value!r}")
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as err:
        raise ValueError(f"{name} is not a valid date: {value!r}") from err


def lambda_handler(event: dict, context: object) -> dict:
    """AWS Lambda entry point: ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD", "source": ...,
    "dest": ...}``, every key optional (default: yesterday UTC; ``end`` defaults to ``start``;
    source and destination from the settings, i.e. ``WIKICHURN_*`` environment variables).

    Returns ``{"statusCode": 200, "summary": {...}}``, 207 when some files failed, or
    ``{"statusCode": 400, "error": ...}`` for an invalid request. Infrastructure errors (e.g. the
    destination bucket unreachable) raise, so that Lambda reports and retries the invocation.
    """
    if event is None:
        event = {}
    if not isinstance(event, dict):
        return _bad_request(f"the event must be a JSON object, got {type(event).__name__}")
    try:
        if event.get("start") is None:
            start = datetime.now(UTC).date() - timedelta(days=1)
        else:
            start = _parse_date(event["start"], "start")
        end = start if event.get("end") is None else _parse_date(event["end"], "end")
    except ValueError as err:
        return _bad_request(str(err))
    if end < start:
        return _bad_request(f"end {end} is before start {start}")
    days = (end - start).days + 1
    if days > MAX_LAMBDA_DAYS:
        return _bad_request(f"range of {days} days is over the limit of {MAX_LAMBDA_DAYS}")

    settings = load_settings()
    overrides = {}
    for name, default in (("source", settings.source_url), ("dest", settings.raw_uri)):
        value = event.get(name)
        value = default if value is None else value
        if not isinstance(value, str) or not value.strip():
            return _bad_request(f"{name} must be a non-empty string, got {value!r}")
        overrides[name] = value.strip()
    try:
        store = open_store(overrides["dest"], settings.s3)
        source = open_source(overrides["source"], settings.ingest)
    except (ValueError, DumpsError) as err:
        return _bad_request(str(err))

    try:
        summary = ingest_into(source, store, start, end, settings)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return {
        "statusCode": 207 if summary.failed else 200,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "summary": summary.to_dict(),
    }
