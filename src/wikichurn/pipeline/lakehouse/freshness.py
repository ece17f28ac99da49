"""When a table last committed: lets a run notice a derived table older than its source.

A run killed after its DQ report (which commits silver and gold) but before the feature table was
rebuilt leaves ``gold_churn_features`` older than ``gold_daily_projectviews``; the next run finds
nothing new in silver and, without this check, would keep the stale features for good (found by
tests/reliability/test_chaos.py). The time of a table's newest Delta (or parquet) log/data file is
its last commit: one folder listing, or one S3 listing, with no Spark job.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wikichurn.core.storage import s3_client

if TYPE_CHECKING:
    from wikichurn.pipeline.lakehouse.lake import Lake


def last_commit_time(lake: Lake, table: str) -> float | None:
    """Epoch seconds of the newest commit of ``table`` (None when it has none)."""
    folder = "_delta_log" if lake.format == "delta" else ""
    path = f"{lake.path(table)}/{folder}".rstrip("/")
    if lake.is_s3:
        bucket, _, prefix = path.split("://", 1)[1].partition("/")
        listing = s3_client(lake.settings.s3).get_paginator("list_objects_v2")
        pages = listing.paginate(Bucket=bucket, Prefix=prefix + "/")
        times = [obj["LastModified"].timestamp() for page in pages for obj in page.get("Contents", [])]
    else:
        times = [p.stat().st_mtime for p in Path(path).rglob("*") if p.is_file()] if Path(path).is_dir() else []
    return max(times, default=None)


def is_older(lake: Lake, derived: str, source: str) -> bool:
    """True when ``source`` committed after ``derived`` did (or ``derived`` has no commit)."""
    source_at = last_commit_time(lake, source)
    derived_at = last_commit_time(lake, derived)
    return source_at is not None and (derived_at is None or derived_at < source_at)
