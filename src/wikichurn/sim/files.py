"""Writing a dumps mirror: hourly projectviews bodies, publication times and the listings.

Shared by the simulator (:mod:`wikichurn.sim.simulate`) and the real-data replay
(:mod:`wikichurn.sim.replay`), so both produce exactly the layout ingestion reads.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from wikichurn.core.layout import month_folders
from wikichurn.sim.mirror import SITE_PREFIX, ListingEntry, render_listing


def diurnal_shape(local_hour: np.ndarray, peak_hour: np.ndarray | float) -> np.ndarray:
    """The daily cycle's shape (before amplitude): a main peak at ``peak_hour`` local time and a
    smaller second harmonic (morning shoulder); ``local_hour`` is mid-hour local time."""
    x = local_hour - peak_hour
    return np.cos(2 * np.pi * x / 24) + 0.3 * np.cos(4 * np.pi * (x + 3) / 24)


def projectviews_body(codes: Sequence[str], counts: Sequence[int] | np.ndarray) -> bytes:
    """``domain_code - count_views 0`` lines in the given (sorted) code order; zero counts get no line."""
    return "".join(f"{c} - {int(v)} 0\n" for c, v in zip(codes, counts, strict=True) if v > 0).encode("utf-8")


def set_mtime(path: Path, when: datetime) -> None:
    """Give ``path`` the (simulated) publication time as its modification time."""
    stamp = when.timestamp()
    os.utime(path, (stamp, stamp))


def write_listings(out: Path, start: date, end: date, entries: dict[str, list[ListingEntry]]) -> None:
    """index.html for every month folder, year folder and the root."""
    years: dict[str, list[ListingEntry]] = defaultdict(list)
    for folder in month_folders(start, end):
        year, month = folder.split("/")
        files = entries.get(folder, [])
        y, m = int(month[:4]), int(month[5:])
        newest = max((e.modified for e in files), default=datetime(y, m, 1, tzinfo=UTC))
        (out / folder).mkdir(parents=True, exist_ok=True)
        page = render_listing(f"{SITE_PREFIX}/{folder}/", files)
        (out / folder / "index.html").write_text(page, encoding="utf-8")
        years[year].append(ListingEntry(month, newest))
    root_entries = []
    for year, months in years.items():
        page = render_listing(f"{SITE_PREFIX}/{year}/", months)
        (out / year / "index.html").write_text(page, encoding="utf-8")
        root_entries.append(ListingEntry(year, max(e.modified for e in months)))
    (out / "index.html").write_text(render_listing(f"{SITE_PREFIX}/", root_entries), encoding="utf-8")
