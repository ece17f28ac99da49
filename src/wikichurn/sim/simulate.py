"""A realistic, deterministic simulation of the Wikimedia dumps' projectviews files.

``simulate(out, start, end, domains, seed)`` writes a folder laid out like
``https://dumps.wikimedia.org/other/pageviews/``:

- ``YYYY/YYYY-MM/projectviews-YYYYMMDD-HH0000``: one plain-text file per UTC hour, lines
  ``domain_code - count_views 0`` sorted by domain code; a domain with no views that hour is absent;
- a few ``pageviews-YYYYMMDD-HH0000.gz`` decoys per month (per-page format) ingestion must skip;
- ``index.html`` in every folder, shaped like the site's (nginx autoindex) listings;
- ``simulation.json``: parameters, counts and the ground truth (churn events, spikes, missing hours).

Traffic model, data-quality defects and calibration are documented in ``docs/simulator.md``; every
knob is a field of :class:`SimulationModel`. The same seed gives the same bytes: no wall-clock time
is written anywhere (listing dates and file mtimes are the simulated publication times).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wikichurn.core.layout import file_name, month_folders
from wikichurn.sim.catalog import Catalog, build_catalog, max_domains
from wikichurn.sim.check import MANIFEST_NAME, churn_labels, churn_positive_rate, daily_totals, load_manifest
from wikichurn.sim.codes import ACCESS
from wikichurn.sim.events import draw_events, draw_precursors, missing_hours
from wikichurn.sim.files import set_mtime, write_listings
from wikichurn.sim.mirror import ListingEntry
from wikichurn.sim.model import SimulationModel
from wikichurn.sim.traffic import Traffic, day_factor

__all__ = [
    "MALFORMED_KINDS",
    "MANIFEST_NAME",
    "SimulationModel",
    "SimulationSummary",
    "churn_labels",
    "churn_positive_rate",
    "daily_totals",
    "load_manifest",
    "max_domains",
    "simulate",
]
_missing = missing_hours  # the tests' historical name

if TYPE_CHECKING:
    pass

MANIFEST_VERSION = 1

# Kinds of malformed lines, in the order the simulator draws them. Names match silver's reasons
# except ``duplicate_domain``: the simulator counts the extra line, silver quarantines every copy.
MALFORMED_KINDS: tuple[str, ...] = (
    "wrong_field_count",
    "non_numeric_count",
    "negative_count",
    "empty_domain",
    "duplicate_domain",
    "unexpected_page_title",
)

_PAGE_TITLES = (
    "Main_Page",
    "Special:Search",
    "Wikipedia:Featured_articles",
    "Portal:Current_events",
    "Help:Contents",
    "Special:Random",
    "United_States",
    "Deaths_in_2024",
    "Taylor_Swift",
    "Olympic_Games",
    "Berlin",
    "Paris",
    "Tokyo",
    "COVID-19_pandemic",
    "YouTube",
    "Cleopatra",
    "Albert_Einstein",
    "World_War_II",
    "India",
    "Photosynthesis",
    "Python_(programming_language)",
)
_NON_NUMERIC = ("abc", "12x", "NaN", "n/a", "?", "x1", "--", "1O")


@dataclass
class SimulationSummary:
    """What one simulation wrote."""

    out: Path
    start: date
    end: date
    domains: int
    seed: int
    hourly_files: int
    missing_hours: list[str]
    lines: int  # every non-blank line written to projectviews files, malformed ones included
    malformed: dict[str, int]
    decoys: int
    blank_lines: int = 0
    valid_lines: int = 0
    churn_events: int = 0
    spikes: int = 0
    bytes_written: int = 0
    manifest: Path | None = None

    def describe(self) -> str:
        bad = sum(self.malformed.values())
        kinds = ", ".join(f"{k} {v}" for k, v in self.malformed.items() if v)
        days = (self.end - self.start).days + 1
        return (
            f"Simulated {days} days ({self.start} to {self.end}) of {self.domains:,} domain codes "
            f"with seed {self.seed} into {self.out}: {self.hourly_files:,} hourly projectviews files "
            f"({len(self.missing_hours)} hours deliberately missing), {self.lines:,} lines of which "
            f"{bad:,} malformed ({kinds or 'none'}) plus {self.blank_lines} trailing blank lines, "
            f"{self.decoys} pageviews-*.gz decoys, {self.churn_events} churn events and "
            f"{self.spikes} bot-like spikes in the ground truth, {self.bytes_written / 1e6:,.1f} MB "
            f"in all; manifest {MANIFEST_NAME}."
        )


# --------------------------------------------------------------------------------------------
# Files


def _malformed_line(kind: str, code: str, count: int, rng: np.random.Generator) -> str:
    small = int(rng.integers(1, 1000))
    if kind == "wrong_field_count":
        return f"{code} - {small}" if rng.random() < 0.6 else f"{code} - {small} 0 0"
    if kind == "non_numeric_count":
        return f"{code} - {_NON_NUMERIC[int(rng.integers(len(_NON_NUMERIC)))]} 0"
    if kind == "negative_count":
        return f"{code} - -{small} 0"
    if kind == "empty_domain":
        return f" - {small} 0"
    if kind == "duplicate_domain":
        other = small if small != count else small + 1
        return f"{code} - {other} 0"
    if kind == "unexpected_page_title":
        return f"{code} {_PAGE_TITLES[int(rng.integers(len(_PAGE_TITLES)))]} {small} 0"
    raise ValueError(kind)


def _hour_file(
    prefixes: list[str],
    codes: list[str],
    counts: np.ndarray,
    rng: np.random.Generator,
    model: SimulationModel,
    malformed: dict[str, int],
) -> tuple[bytes, int, int]:
    """The bytes of one hourly file, its number of non-blank lines and of blank lines."""
    present = np.flatnonzero(counts)
    values = counts[present].tolist()
    index = present.tolist()
    lines = [f"{prefixes[j]}{c} 0" for j, c in zip(index, values, strict=True)]
    n_bad = int(rng.binomial(len(lines), model.malformed_rate)) if lines else 0
    if n_bad:
        anchors = rng.choice(len(lines), size=min(n_bad, len(lines)), replace=False)
        inserts = []
        for a in anchors.tolist():
            kind = MALFORMED_KINDS[int(rng.integers(len(MALFORMED_KINDS)))]
            malformed[kind] += 1
            inserts.append((a, _malformed_line(kind, codes[index[a]], values[a], rng)))
        for a, line in sorted(inserts, key=lambda x: x[0], reverse=True):
            lines.insert(a + 1, line)
    blank = 1 if rng.random() < model.blank_line_rate else 0
    body = "\n".join(lines) + "\n" + ("\n" * blank)
    return body.encode("utf-8"), len(lines), blank


def _decoy(cat: Catalog, rng: np.random.Generator, model: SimulationModel) -> bytes:
    lo, hi = model.decoy_lines
    n = int(rng.integers(lo, hi + 1))
    weights = np.sqrt(cat.level)
    picks = rng.choice(len(cat.codes), size=n, p=weights / weights.sum())
    rows = set()
    for d in picks.tolist():
        title = _PAGE_TITLES[int(rng.integers(len(_PAGE_TITLES)))]
        if rng.random() < 0.5:
            title = f"{title}_({int(rng.integers(1, 2000))})"
        rows.add((cat.codes[d], title, int(rng.zipf(1.8)) if rng.random() < 0.9 else int(rng.integers(1, 5000))))
    text = "".join(f"{c} {t} {v} 0\n" for c, t, v in sorted(rows))
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_GENERATED = re.compile(r"^(projectviews-\d{8}-\d{6}|pageviews-\d{8}-\d{6}\.gz|index\.html)$")


def _prepare(out: Path) -> None:
    """Make ``out`` ready: empty, or a previous simulation whose generated files are removed."""
    out.mkdir(parents=True, exist_ok=True)
    if not any(out.iterdir()):
        return
    if not (out / MANIFEST_NAME).is_file():
        raise FileExistsError(f"{out} is not empty and holds no {MANIFEST_NAME}: refusing to write into it")
    for year in out.iterdir():
        if not (year.is_dir() and _YEAR.match(year.name)):
            continue
        for month in year.iterdir():
            if month.is_dir() and _MONTH.match(month.name):
                for item in month.iterdir():
                    if item.is_file() and _GENERATED.match(item.name):
                        item.unlink()
                with_rest = any(month.iterdir())
                if not with_rest:
                    month.rmdir()
        index = year / "index.html"
        if index.is_file():
            index.unlink()
        if not any(year.iterdir()):
            year.rmdir()
    for name in ("index.html", MANIFEST_NAME):
        if (out / name).is_file():
            (out / name).unlink()


# --------------------------------------------------------------------------------------------
# Entry point


def simulate(
    out: Path,
    start: date,
    end: date,
    domains: int = 500,
    seed: int = 0,
    *,
    progress: bool = False,
    model: SimulationModel | None = None,
) -> SimulationSummary:
    """Write a simulated dumps mirror for the UTC days ``start`` .. ``end`` (inclusive) into ``out``.

    ``domains`` distinct domain codes exist over the period. Same arguments, same bytes. ``out``
    must be empty, missing, or hold a previous simulation (whose generated files are replaced).
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if domains < 1:
        raise ValueError("domains must be at least 1")
    model = model or SimulationModel()
    out = Path(out)
    ndays = (end - start).days + 1
    # A 7th stream for the precursors: the first six children of a SeedSequence do not depend
    # on how many are spawned, so every earlier draw is unchanged.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    rng_catalog, rng_events, rng_traffic, rng_quality, rng_decoys, rng_publish, rng_precursors = streams

    cat = build_catalog(domains, rng_catalog, model)
    mods, churn, appear, spikes = draw_events(cat, ndays, start, rng_events, model)
    declines, bursts = draw_precursors(cat, ndays, start, mods, rng_precursors, model)
    missing = missing_hours(ndays, rng_quality, model)
    lo_delay, hi_delay = model.publish_delay_minutes
    delays = rng_publish.integers(lo_delay, hi_delay + 1, size=ndays * 24)
    traffic = Traffic(cat, start, rng_traffic, model)
    mod_arrays = mods.arrays()

    _prepare(out)
    prefixes = [f"{code} - " for code in cat.codes]
    malformed = dict.fromkeys(MALFORMED_KINDS, 0)
    listing: dict[str, list[ListingEntry]] = defaultdict(list)
    written_hours: dict[str, list[int]] = defaultdict(list)
    missing_names: list[str] = []
    n_files = n_lines = n_blank = n_bytes = 0
    day0 = datetime(start.year, start.month, start.day, tzinfo=UTC)

    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("days"), TimeRemainingColumn()
        )
        bar.start()
        task = bar.add_task("days", total=ndays)
    try:
        for i in range(ndays):
            counts = traffic.day(i, day_factor(mod_arrays, len(cat.codes), i * 24))
            for h in range(24):
                hour = i * 24 + h
                when = day0 + timedelta(hours=hour)
                name = file_name(when)
                if missing[hour]:
                    missing_names.append(name)
                    continue
                body, lines, blank = _hour_file(prefixes, cat.codes, counts[:, h], rng_quality, model, malformed)
                folder = f"{when:%Y}/{when:%Y-%m}"
                path = out / folder / name
                if not path.parent.is_dir():
                    path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
                published = when + timedelta(minutes=int(delays[hour]))
                set_mtime(path, published)
                listing[folder].append(ListingEntry(name, published, len(body)))
                written_hours[folder].append(hour)
                n_files += 1
                n_lines += lines
                n_blank += blank
                n_bytes += len(body)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()

    # Decoys: per-page files beside the projectviews ones, published a little later.
    decoy_names: list[str] = []
    for folder in month_folders(start, end):
        hours = written_hours.get(folder, [])
        k = min(model.decoys_per_month, len(hours))
        for hour in sorted(rng_decoys.choice(hours, size=k, replace=False).tolist()) if k else []:
            when = day0 + timedelta(hours=hour)
            name = f"pageviews-{when:%Y%m%d-%H}0000.gz"
            data = _decoy(cat, rng_decoys, model)
            path = out / folder / name
            path.write_bytes(data)
            published = when + timedelta(minutes=int(delays[hour]) + int(rng_decoys.integers(1, 6)))
            set_mtime(path, published)
            listing[folder].append(ListingEntry(name, published, len(data)))
            decoy_names.append(f"{folder}/{name}")
            n_bytes += len(data)

    write_listings(out, start, end, listing)

    summary = SimulationSummary(
        out=out,
        start=start,
        end=end,
        domains=domains,
        seed=seed,
        hourly_files=n_files,
        missing_hours=missing_names,
        lines=n_lines,
        malformed=malformed,
        decoys=len(decoy_names),
        blank_lines=n_blank,
        valid_lines=n_lines - sum(malformed.values()),
        churn_events=len(churn),
        spikes=len(spikes),
        bytes_written=n_bytes,
        manifest=out / MANIFEST_NAME,
    )
    manifest = {
        "generator": "wikichurn wikichurn.sim.simulate",
        "version": MANIFEST_VERSION,
        "parameters": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "domains": domains,
            "seed": seed,
            "model": asdict(model),
        },
        "counts": {
            "hourly_files": n_files,
            "missing_hours": missing_names,
            "lines": n_lines,
            "valid_lines": summary.valid_lines,
            "malformed": malformed,
            "blank_lines": n_blank,
            "decoys": len(decoy_names),
            "decoy_files": decoy_names,
            "bytes": n_bytes,
        },
        "domains": [
            {
                "code": code,
                "rank": int(cat.rank[d]),
                "hourly_level": round(float(cat.level[d]), 2),
                "access": ACCESS[int(cat.access[d])],
                "utc_offset": None if cat.spread[d] else float(cat.tz[d]),
            }
            for d, code in enumerate(cat.codes)
        ],
        "churn_events": churn,
        "appearances": appear,
        "spikes": spikes,
        "declines": declines,
        "bursts": bursts,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return summary
