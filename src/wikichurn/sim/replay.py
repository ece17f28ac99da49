"""Replay real daily view totals as a dumps mirror of hourly projectviews files.

Input: a folder of ``<wiki>.csv`` files as published in ``wikimedia/analytics-aggregator-data``
(``projectcounts/daily``): header ``Date,Total,Desktop site,Mobile site,Zero site``, one row per
UTC day. Output: the same layout the simulator writes (``YYYY/YYYY-MM/projectviews-...``,
``index.html`` listings, :mod:`wikichurn.sim.files`), so ingestion reads it unchanged, plus
``replay.json`` (sources with their SHA-256, code mapping, day counts).

- Database name -> domain code as the real scheme has them: ``xxwiki`` -> ``xx`` (desktop),
  ``xx.m`` (mobile), ``xx.zero`` (Zero); ``xxwiktionary`` -> ``xx.d`` / ``xx.m.d`` /
  ``xx.zero.d``; likewise ``.b`` books, ``.q`` quote, ``.s`` source, ``.n`` news, ``.v``
  versity, ``.voy`` voyage. Underscores in the language become hyphens (``be_x_old`` -> ``be-x-old``).
- A day's total per access type is spread over its 24 UTC hours by a multinomial draw over a
  diurnal profile (the simulator's shape, in the language's local time, desktop and mobile peaks
  apart, with a little day-to-day jitter), so the hours sum **exactly** to the day's figure.
- A figure missing in the source gives that code no line that day; a day missing from every
  source gives no hourly files at all (ingestion and the pipeline see an outage).

Deterministic: same inputs and seed, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wikichurn.core.layout import file_name
from wikichurn.sim.codes import LANGUAGES
from wikichurn.sim.files import diurnal_shape, projectviews_body, set_mtime, write_listings
from wikichurn.sim.mirror import ListingEntry

REPLAY_MANIFEST = "replay.json"
COLUMNS = {"desktop": "Desktop site", "mobile": "Mobile site", "zero": "Zero site"}
HEADER = ("Date", "Total", "Desktop site", "Mobile site", "Zero site")
# Database-name suffix -> project part of the domain code ("" = Wikipedia). Longest first.
PROJECT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("wiktionary", "d"),
    ("wikibooks", "b"),
    ("wikiquote", "q"),
    ("wikisource", "s"),
    ("wikinews", "n"),
    ("wikiversity", "v"),
    ("wikivoyage", "voy"),
    ("wiki", ""),
)
_OFFSETS = {**dict(LANGUAGES), "be-x-old": 3.0}  # be-x-old: the old code of be-tarask
_DB_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ReplayProfile:
    """The diurnal spread: log amplitude, local peak hours, day-to-day jitter of the profile."""

    amplitude: float = 0.7
    spread_amplitude: float = 0.3  # languages read in many time zones (``en``)
    desktop_peak_hour: float = 14.0
    mobile_peak_hour: float = 20.5
    jitter_sd: float = 0.05  # per-day, per-hour log jitter of the profile
    publish_delay_minutes: tuple[int, int] = (30, 90)


def domain_codes(db_name: str) -> dict[str, str]:
    """``{access: domain_code}`` of a database name, e.g. ``bgwiktionary`` -> ``bg.d``, ``bg.m.d``, ``bg.zero.d``.

    Raises:
        ValueError: a name outside the language-project scheme.
    """
    if not _DB_NAME.match(db_name):
        raise ValueError(f"not a database name: {db_name!r}")
    for suffix, project in PROJECT_SUFFIXES:
        if db_name.endswith(suffix) and len(db_name) > len(suffix):
            lang = db_name[: -len(suffix)].replace("_", "-")
            tail = f".{project}" if project else ""
            return {"desktop": f"{lang}{tail}", "mobile": f"{lang}.m{tail}", "zero": f"{lang}.zero{tail}"}
    raise ValueError(f"database name {db_name!r} has no known project suffix (wiki, wiktionary, ...)")


def read_daily(path: Path) -> pd.DataFrame:
    """One ``<wiki>.csv``: columns ``desktop``, ``mobile``, ``zero`` (nullable ints) indexed by day.

    Before the source split access types, ``Total`` is the desktop figure.

    Raises:
        ValueError: wrong header, unparsable dates or counts, negative counts, duplicate dates.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != HEADER:
        raise ValueError(f"{path}: header {list(frame.columns)} is not {list(HEADER)}")
    try:
        days = pd.to_datetime(frame["Date"], format="%Y-%m-%d")
        values = {k: pd.to_numeric(frame[c].replace("", None), errors="raise") for k, c in COLUMNS.items()}
        total = pd.to_numeric(frame["Total"].replace("", None), errors="raise")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if days.duplicated().any():
        raise ValueError(f"{path}: duplicate dates, e.g. {days[days.duplicated()].iloc[0].date()}")
    out = pd.DataFrame(values).astype("Int64")
    split = out.notna().any(axis=1)
    out.loc[~split, "desktop"] = total[~split].astype("Int64")
    if (out.fillna(0) < 0).to_numpy().any():
        raise ValueError(f"{path}: negative counts")
    out.index = days.dt.date
    return out.sort_index()


def hourly_counts(
    total: int, local_offset: float | None, access: str, rng: np.random.Generator, profile: ReplayProfile
) -> np.ndarray:
    """24 UTC-hour counts of one code-day that sum exactly to ``total``."""
    local = (np.arange(24) + 0.5 + (local_offset or 0.0)) % 24
    peak = profile.desktop_peak_hour if access == "desktop" else profile.mobile_peak_hour
    amplitude = profile.spread_amplitude if local_offset is None else profile.amplitude
    log_share = amplitude * diurnal_shape(local, peak) + rng.normal(0.0, profile.jitter_sd, 24)
    share = np.exp(log_share - log_share.max())
    return rng.multinomial(int(total), share / share.sum())


@dataclass
class ReplaySummary:
    """What a replay wrote."""

    out: Path
    start: date
    end: date
    codes: list[str]
    files: int
    missing_days: list[str]
    views: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe digest."""
        return {
            "out": str(self.out),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "codes": len(self.codes),
            "files": self.files,
            "missing_days": len(self.missing_days),
            "views": self.views,
        }


def replay(
    daily_dir: Path,
    out: Path,
    *,
    start: date | None = None,
    end: date | None = None,
    wikis: list[str] | None = None,
    seed: int = 0,
    profile: ReplayProfile | None = None,
) -> ReplaySummary:
    """Write a projectviews mirror into ``out`` from the ``<wiki>.csv`` files of ``daily_dir``.

    Args:
        daily_dir: folder of daily-total CSV files (file stem = database name).
        out: the mirror root; must be empty, missing, or a previous replay.
        start, end: first and last UTC day (default: the span of the sources).
        wikis: database names to use (default: every ``*.csv``).
        seed: seeds the hourly spread.
        profile: diurnal profile parameters.

    Returns:
        Codes, files written, days missing from every source and the total views written.
    """
    profile = profile or ReplayProfile()
    paths = sorted(Path(daily_dir).glob("*.csv"))
    if wikis is not None:
        paths = [p for p in paths if p.stem in set(wikis)]
        missing = set(wikis) - {p.stem for p in paths}
        if missing:
            raise FileNotFoundError(f"no daily file for {sorted(missing)} in {daily_dir}")
    if not paths:
        raise FileNotFoundError(f"no <wiki>.csv files in {daily_dir}")
    series: dict[str, pd.Series] = {}
    offsets: dict[str, float | None] = {}
    access_of: dict[str, str] = {}
    for path in paths:
        daily = read_daily(path)
        lang = path.stem.split("wik")[0].replace("_", "-")
        for access, code in domain_codes(path.stem).items():
            values = daily[access].dropna()
            if (values > 0).any():
                series[code] = values
                offsets[code] = _OFFSETS.get(lang, 0.0)
                access_of[code] = access
    all_days = sorted({d for s in series.values() for d in s.index})
    first, last = start or all_days[0], end or all_days[-1]
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    out = Path(out)
    _prepare(out)
    codes = sorted(series)  # byte order of the domain codes, as the dumps sort them
    rng = np.random.default_rng(seed)
    listing: dict[str, list[ListingEntry]] = defaultdict(list)
    missing_days: list[str] = []
    files = views = 0
    day = first
    while day <= last:
        present = [c for c in codes if day in series[c].index]
        if not present:
            missing_days.append(day.isoformat())
            day += timedelta(days=1)
            continue
        counts = np.zeros((len(codes), 24), dtype=np.int64)
        for i, code in enumerate(codes):
            if code in present and series[code][day] > 0:
                counts[i] = hourly_counts(int(series[code][day]), offsets[code], access_of[code], rng, profile)
        views += int(counts.sum())
        delays = rng.integers(profile.publish_delay_minutes[0], profile.publish_delay_minutes[1] + 1, 24)
        day0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for h in range(24):
            when = day0 + timedelta(hours=h)
            folder = f"{when:%Y}/{when:%Y-%m}"
            body = projectviews_body(codes, counts[:, h])
            path = out / folder / file_name(when)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            published = when + timedelta(minutes=int(delays[h]))
            set_mtime(path, published)
            listing[folder].append(ListingEntry(path.name, published, len(body)))
            files += 1
        day += timedelta(days=1)
    write_listings(out, first, last, listing)
    manifest = {
        "kind": "replay",
        "version": 1,
        "seed": seed,
        "start": first.isoformat(),
        "end": last.isoformat(),
        "profile": profile.__dict__,
        "sources": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths},
        "codes": {c: access_of[c] for c in codes},
        "missing_days": missing_days,
        "files": files,
        "views": views,
    }
    (out / REPLAY_MANIFEST).write_text(json.dumps(manifest, indent=1, default=list) + "\n", encoding="utf-8")
    return ReplaySummary(out, first, last, codes, files, missing_days, views)


def _prepare(out: Path) -> None:
    """``out`` empty or missing (created), or a previous replay (its files are replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    if not any(out.iterdir()):
        return
    if not (out / REPLAY_MANIFEST).is_file():
        raise FileExistsError(f"{out} is not empty and holds no {REPLAY_MANIFEST}: refusing to write into it")
    import shutil

    for item in out.iterdir():
        if item.is_dir() and re.fullmatch(r"\d{4}", item.name):
            shutil.rmtree(item)
        elif item.name in ("index.html", REPLAY_MANIFEST):
            item.unlink()
