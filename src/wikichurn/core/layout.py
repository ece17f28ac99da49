"""File names and folder layout of the Wikimedia projectviews dumps.

The dumps site keeps ``YYYY/YYYY-MM/projectviews-YYYYMMDD-HHMMSS`` (one plain-text file per hour)
beside the large per-page ``pageviews-*.gz`` files, which wikichurn never takes. Raw storage keeps
the same layout. The strict pattern below is the only gate between a listing and a storage key, so
nothing a listing says can escape the destination prefix.

Timestamp convention: the time in the file name labels the hour; wikichurn uses it verbatim as
``event_timestamp`` (seconds, present in some old files, are dropped), so the 24 files named
``YYYYMMDD-00..23`` make day ``YYYY-MM-DD``. Wikimedia documents the name as the end of the
aggregation hour; a consumer wanting that reading shifts by one hour, consistently.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

# Anchored, ASCII digits only: nothing else can become a storage key.
PROJECTVIEWS_NAME = re.compile(r"^projectviews-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})$", re.ASCII)
# The same pattern as a Spark SQL regular expression over a file path's last segment.
PROJECTVIEWS_NAME_SQL = r"projectviews-(\d{8})-(\d{2})\d{4}$"


def parse_file_time(name: str) -> datetime | None:
    """The hour a projectviews file name labels (UTC, seconds dropped), or None if it is not one."""
    match = PROJECTVIEWS_NAME.fullmatch(name)  # fullmatch: "$" would accept a trailing newline
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if minute != 0:
        return None
    try:
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:  # e.g. month 13 or hour 24
        return None


def key_for(name: str) -> str:
    """Storage key ``YYYY/YYYY-MM/name`` for a projectviews file name; ValueError otherwise."""
    when = parse_file_time(name)
    if when is None:
        raise ValueError(f"not a projectviews file name: {name!r}")
    return f"{when:%Y}/{when:%Y-%m}/{name}"


def file_name(when: datetime) -> str:
    """The projectviews file name for the hour ``when``."""
    return f"projectviews-{when:%Y%m%d-%H}0000"


def month_folders(start: date, end: date) -> list[str]:
    """``YYYY/YYYY-MM`` folders covering ``start`` .. ``end`` inclusive."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    folders = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        folders.append(f"{year:04d}/{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return folders
