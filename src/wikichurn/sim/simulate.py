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
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wikichurn.core.layout import file_name, month_folders, parse_file_time
from wikichurn.sim.codes import ACCESS, LANGUAGES, PROJECTS, SPECIALS, WEEKLY_DESKTOP, WEEKLY_MOBILE
from wikichurn.sim.files import diurnal_shape, set_mtime, write_listings
from wikichurn.sim.mirror import ListingEntry

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_NAME = "simulation.json"
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


@dataclass(frozen=True)
class SimulationModel:
    """Every knob of the traffic and defect model (documented in docs/simulator.md)."""

    # Volumes: the mean hourly views of the domain ranked q (0 = biggest, 1 = smallest) is
    # 10 ** (lo + (hi - lo) * (1 - q ** tail_shape)), times a log10 jitter.
    top_hourly_views: float = 6.0e6
    tail_hourly_views: float = 1.0
    tail_shape: float = 0.45
    level_jitter_log10: float = 0.15
    min_hourly_views: float = 0.5
    rank_noise: float = 0.5  # sd of the log-prior noise mixing which codes exist and their order
    language_zipf: float = 1.25  # language size ~ rank ** -language_zipf
    mobile_share: tuple[float, float] = (0.45, 0.75)  # per-language mobile share, uniform
    zero_share: float = 0.0003  # prior share of the rare `.zero` access
    # Seasonality.
    diurnal_amplitude: float = 0.7  # log amplitude of the daily cycle, one time zone
    global_diurnal_amplitude: float = 0.3  # readers spread over many time zones
    desktop_peak_hour: float = 14.0  # local time
    mobile_peak_hour: float = 20.5
    weekly_desktop: tuple[float, ...] = WEEKLY_DESKTOP
    weekly_mobile: tuple[float, ...] = WEEKLY_MOBILE
    weekly_scale: tuple[float, float] = (0.3, 1.3)  # per-domain weekly amplitude factor, uniform
    # Trend and noise (log scale).
    trend_drift_sd: float = 0.15  # per year
    trend_walk_sd: float = 0.004  # per day
    day_noise_base: float = 0.022  # daily noise sd at ~3e8 views/day (English Wikipedia)
    day_noise_per_decade: float = 0.035  # added per decade of daily views below 10 ** 8.5
    day_noise_max: float = 0.25
    day_noise_ar: float = 0.25  # AR(1) coefficient of the daily noise
    hour_noise_sd: float = 0.05
    # Life cycle (codes appearing / disappearing entirely), as a fraction of all codes.
    appear_fraction: float = 0.03
    disappear_fraction: float = 0.03
    giants_fraction: float = 0.02  # the biggest codes never collapse, appear, disappear or spike
    # Churn events: collapses to a fraction of the normal level.
    collapse_rate: float = 0.011  # mean hazard per domain-day (scaled by size rank, see docs)
    collapse_level: tuple[float, float] = (0.0, 0.25)
    collapse_min_days: int = 3
    collapse_mean_extra_days: float = 7.0
    collapse_gap_days: int = 3  # minimum normal days between the end of one collapse and the next
    permanent_fraction: float = 0.08
    # Bot-like spikes.
    spike_rate: float = 0.004  # per domain-day
    spike_hours: tuple[int, int] = (1, 6)
    spike_factor: tuple[float, float] = (5.0, 50.0)  # log-uniform
    # Data-quality defects.
    missing_hour_rate: float = 0.001  # single hourly files not published
    outage_rate: float = 0.015  # per day: an outage of several hours in a row starts
    outage_hours: tuple[int, int] = (2, 10)
    malformed_rate: float = 0.0005  # per written data line
    blank_line_rate: float = 0.02  # per file: one blank line at the end
    decoys_per_month: int = 3
    decoy_lines: tuple[int, int] = (40, 160)
    publish_delay_minutes: tuple[int, int] = (30, 90)


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
# Domain catalog


@dataclass
class _Catalog:
    codes: list[str]  # sorted (the order of lines in a file)
    rank: np.ndarray  # 0 = biggest
    level: np.ndarray  # mean hourly views
    access: np.ndarray  # index into ACCESS
    tz: np.ndarray  # UTC offset, hours
    spread: np.ndarray  # True when readers are spread over many time zones


def _candidates(rng: np.random.Generator, model: SimulationModel) -> tuple[list[str], np.ndarray, list]:
    """Every code the simulator may use, with its log prior size and (access, tz, spread)."""
    codes: list[str] = []
    prior: list[float] = []
    attrs: list[tuple[int, float, bool]] = []
    lo, hi = model.mobile_share
    shares = rng.uniform(lo, hi, size=len(LANGUAGES))
    for i, (lang, tz) in enumerate(LANGUAGES):
        size = -model.language_zipf * math.log(i + 1)
        spread = tz is None
        offset = 0.0 if tz is None else float(tz)
        for project, project_share in PROJECTS:
            suffix = f".{project}" if project else ""
            for access, share in (
                ("desktop", 1 - shares[i]),
                ("mobile", shares[i]),
                ("zero", model.zero_share),
            ):
                if access == "zero" and project not in ("", "d"):
                    continue
                middle = {"desktop": "", "mobile": ".m", "zero": ".zero"}[access]
                codes.append(f"{lang}{middle}{suffix}")
                prior.append(size + math.log(project_share) + math.log(share))
                attrs.append((ACCESS.index(access), offset, spread))
    for code, share, access, tz in SPECIALS:
        codes.append(code)
        prior.append(math.log(share))
        attrs.append((ACCESS.index(access), 0.0 if tz is None else tz, tz is None))
    return codes, np.asarray(prior), attrs


def max_domains() -> int:
    """How many distinct domain codes the simulator can produce."""
    n_lang = len(LANGUAGES)
    per_lang = len(PROJECTS) * 2 + 2  # desktop + mobile for every project, zero for two
    return n_lang * per_lang + len(SPECIALS)


def _catalog(n: int, rng: np.random.Generator, model: SimulationModel) -> _Catalog:
    codes, prior, attrs = _candidates(rng, model)
    if n > len(codes):
        raise ValueError(f"at most {len(codes)} domain codes can be simulated, not {n}")
    score = prior + rng.normal(0.0, model.rank_noise, size=len(codes))
    chosen = np.argsort(-score, kind="stable")[:n]  # biggest first
    q = np.arange(n) / max(n - 1, 1)
    hi, lo = math.log10(model.top_hourly_views), math.log10(model.tail_hourly_views)
    log_level = lo + (hi - lo) * (1 - q**model.tail_shape)
    log_level = log_level + rng.normal(0.0, model.level_jitter_log10, size=n) * (q > 0.01)
    level = np.maximum(10**log_level, model.min_hourly_views)
    order = sorted(range(n), key=lambda i: codes[chosen[i]])  # file order: by code
    return _Catalog(
        codes=[codes[chosen[i]] for i in order],
        rank=np.asarray(order),
        level=level[order],
        access=np.asarray([attrs[chosen[i]][0] for i in order]),
        tz=np.asarray([attrs[chosen[i]][1] for i in order], dtype=float),
        spread=np.asarray([attrs[chosen[i]][2] for i in order], dtype=bool),
    )


# --------------------------------------------------------------------------------------------
# Ground truth: life cycle, collapses, spikes, missing hours


@dataclass
class _Modifiers:
    """Multiplicative modifiers over absolute hours [start, end) of one domain each."""

    domain: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    factor: list[float] = field(default_factory=list)

    def add(self, domain: int, start: int, end: int, factor: float) -> None:
        self.domain.append(domain)
        self.start.append(start)
        self.end.append(end)
        self.factor.append(factor)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(self.domain, dtype=np.int64),
            np.asarray(self.start, dtype=np.int64),
            np.asarray(self.end, dtype=np.int64),
            np.asarray(self.factor, dtype=float),
        )


def _hour_iso(start: date, hour: int) -> str:
    return (datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(hours=hour)).strftime(
        "%Y-%m-%dT%H:00Z"
    )


def _events(
    cat: _Catalog, ndays: int, start: date, rng: np.random.Generator, model: SimulationModel
) -> tuple[_Modifiers, list[dict], list[dict], list[dict]]:
    """Modifiers plus the ground truth: churn events, appearances, spikes."""
    n = len(cat.codes)
    hours = ndays * 24
    big = max(2, int(n * model.giants_fraction))
    eligible = np.flatnonzero(cat.rank >= big)
    mods = _Modifiers()
    churn: list[dict] = []
    appear: list[dict] = []
    spikes: list[dict] = []
    alive_from = np.zeros(n, dtype=np.int64)
    alive_to = np.full(n, hours, dtype=np.int64)
    day0 = datetime(start.year, start.month, start.day, tzinfo=UTC)

    def day_of(hour: int) -> str:
        return (day0 + timedelta(hours=hour)).date().isoformat()

    if ndays >= 7 and len(eligible) > 0:
        n_app = min(len(eligible), round(model.appear_fraction * n))
        n_dis = min(len(eligible) - n_app, round(model.disappear_fraction * n))
        picked = rng.permutation(eligible)
        for d in sorted(picked[:n_app].tolist()):
            at = int(rng.integers(2 * 24, (ndays - 3) * 24))
            alive_from[d] = at
            mods.add(d, 0, at, 0.0)
            appear.append({"domain": cat.codes[d], "date": day_of(at), "hour": _hour_iso(start, at)})
        for d in sorted(picked[n_app : n_app + n_dis].tolist()):
            at = int(rng.integers(2 * 24, (ndays - 2) * 24))
            alive_to[d] = at
            mods.add(d, at, hours, 0.0)
            churn.append(
                {
                    "domain": cat.codes[d],
                    "kind": "disappear",
                    "start": day_of(at),
                    "start_hour": _hour_iso(start, at),
                    "end": None,
                    "level": 0.0,
                }
            )

    # Collapses: hazard per day, scaled so small codes collapse more often than big ones.
    q = cat.rank / max(n - 1, 1)
    hazard = np.clip(model.collapse_rate * (0.3 + 1.4 * q), 0.0, 0.5)
    lo, hi = model.collapse_level
    for d in eligible.tolist():
        day = int(math.ceil(alive_from[d] / 24))
        while hazard[d] > 0:
            day += int(rng.geometric(hazard[d])) - 1
            at = day * 24 + int(rng.integers(0, 24))
            if at >= alive_to[d] - 24:
                break
            level = float(rng.uniform(lo, hi))
            if rng.random() < model.permanent_fraction:
                end_hour = int(alive_to[d])
                end_date = None
            else:
                days = model.collapse_min_days + int(rng.geometric(1.0 / model.collapse_mean_extra_days)) - 1
                end_hour = min(at + days * 24, int(alive_to[d]))
                end_date = day_of(end_hour) if end_hour < hours else None
            mods.add(d, at, end_hour, level)
            churn.append(
                {
                    "domain": cat.codes[d],
                    "kind": "collapse",
                    "start": day_of(at),
                    "start_hour": _hour_iso(start, at),
                    "end": end_date,
                    "level": round(level, 4),
                }
            )
            if end_date is None:
                break
            day = int(math.ceil(end_hour / 24)) + model.collapse_gap_days

    # Spikes: bot-like bursts of a few hours.
    lo_h, hi_h = model.spike_hours
    lo_f, hi_f = model.spike_factor
    for d in eligible.tolist():
        span = int(alive_to[d] - alive_from[d])
        if span <= 0:
            continue
        for _ in range(int(rng.poisson(model.spike_rate * span / 24))):
            at = int(alive_from[d] + rng.integers(0, span))
            length = int(rng.integers(lo_h, hi_h + 1))
            factor = float(math.exp(rng.uniform(math.log(lo_f), math.log(hi_f))))
            mods.add(d, at, min(at + length, hours), factor)
            spikes.append(
                {
                    "domain": cat.codes[d],
                    "start_hour": _hour_iso(start, at),
                    "hours": length,
                    "factor": round(factor, 2),
                }
            )
    churn.sort(key=lambda e: (e["start_hour"], e["domain"]))
    spikes.sort(key=lambda e: (e["start_hour"], e["domain"]))
    return mods, churn, appear, spikes


def _missing(ndays: int, rng: np.random.Generator, model: SimulationModel) -> np.ndarray:
    hours = ndays * 24
    missing = rng.random(hours) < model.missing_hour_rate
    lo, hi = model.outage_hours
    for day in np.flatnonzero(rng.random(ndays) < model.outage_rate).tolist():
        at = day * 24 + int(rng.integers(0, 24))
        missing[at : at + int(rng.integers(lo, hi + 1))] = True
    return missing


# --------------------------------------------------------------------------------------------
# Traffic


class _Traffic:
    """Draws one day of hourly counts (domains x 24) at a time."""

    def __init__(self, cat: _Catalog, start: date, rng: np.random.Generator, model: SimulationModel) -> None:
        self.rng = rng
        self.model = model
        self.start = start
        n = len(cat.codes)
        self.log_level = np.log(cat.level)
        local = (np.arange(24)[None, :] + 0.5 + cat.tz[:, None]) % 24  # local hour, mid-hour
        peak = np.where(cat.access[:, None] == 0, model.desktop_peak_hour, model.mobile_peak_hour)
        shape = diurnal_shape(local, peak)
        amplitude = np.where(cat.spread, model.global_diurnal_amplitude, model.diurnal_amplitude)
        amplitude = amplitude * rng.uniform(0.8, 1.2, size=n)
        diurnal = amplitude[:, None] * shape
        self.diurnal = diurnal - np.log(np.exp(diurnal).mean(axis=1, keepdims=True))
        # Weekly profile on the readers' local day.
        self.day_shift = np.floor((np.arange(24)[None, :] + 0.5 + cat.tz[:, None]) / 24).astype(np.int64)
        weekly = np.log1p(np.asarray([model.weekly_desktop, model.weekly_mobile], dtype=float))
        weekly = weekly - weekly.mean(axis=1, keepdims=True)
        self.weekly = weekly[np.minimum(cat.access, 1)] * rng.uniform(*model.weekly_scale, size=n)[:, None]
        # Slow trend and daily noise.
        self.drift = rng.normal(0.0, model.trend_drift_sd / 365.0, size=n)
        self.trend = np.zeros(n)
        daily_views = cat.level * 24
        self.day_sd = np.clip(
            model.day_noise_base + model.day_noise_per_decade * np.maximum(8.5 - np.log10(daily_views), 0),
            0,
            model.day_noise_max,
        )
        self.ar = np.zeros(n)

    def day(self, index: int, factor: np.ndarray) -> np.ndarray:
        rng, model = self.rng, self.model
        n = len(self.log_level)
        self.trend += self.drift + rng.normal(0.0, model.trend_walk_sd, size=n)
        phi = model.day_noise_ar
        self.ar = phi * self.ar + math.sqrt(1 - phi * phi) * self.day_sd * rng.normal(size=n)
        dow = (self.start.weekday() + index + self.day_shift) % 7
        weekly = np.take_along_axis(self.weekly, dow, axis=1)
        log_rate = (
            (self.log_level + self.trend + self.ar)[:, None]
            + self.diurnal
            + weekly
            + rng.normal(0.0, model.hour_noise_sd, size=(n, 24))
        )
        return rng.poisson(np.exp(log_rate) * factor)


def _day_factor(mods: tuple[np.ndarray, ...], n: int, first_hour: int) -> np.ndarray:
    domain, start, end, factor = mods
    factors = np.ones((n, 24))
    hit = (start < first_hour + 24) & (end > first_hour)
    if hit.any():
        hours = first_hour + np.arange(24)[None, :]
        inside = (hours >= start[hit, None]) & (hours < end[hit, None])
        np.multiply.at(factors, domain[hit], np.where(inside, factor[hit, None], 1.0))
    return factors


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


def _decoy(cat: _Catalog, rng: np.random.Generator, model: SimulationModel) -> bytes:
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
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_catalog, rng_events, rng_traffic, rng_quality, rng_decoys, rng_publish = streams

    cat = _catalog(domains, rng_catalog, model)
    mods, churn, appear, spikes = _events(cat, ndays, start, rng_events, model)
    missing = _missing(ndays, rng_quality, model)
    lo_delay, hi_delay = model.publish_delay_minutes
    delays = rng_publish.integers(lo_delay, hi_delay + 1, size=ndays * 24)
    traffic = _Traffic(cat, start, rng_traffic, model)
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
            counts = traffic.day(i, _day_factor(mod_arrays, len(cat.codes), i * 24))
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
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return summary


# --------------------------------------------------------------------------------------------
# Self-checks: daily totals and the churn rule, computed from the files


def load_manifest(out: Path) -> dict[str, Any]:
    """The ``simulation.json`` of a simulated mirror."""
    return json.loads((Path(out) / MANIFEST_NAME).read_text(encoding="utf-8"))


def _valid_lines(text: str) -> dict[str, int]:
    """domain -> count for the well-formed lines of one file (first occurrence of a domain wins)."""
    seen: dict[str, int] = {}
    for line in text.split("\n"):
        parts = line.split(" ")
        if len(parts) != 4 or not parts[0] or parts[1] != "-" or parts[3] != "0":
            continue
        if not (parts[2].isascii() and parts[2].isdigit()):
            continue
        seen.setdefault(parts[0], int(parts[2]))
    return seen


def daily_totals(out: Path, *, scale_incomplete: bool = False) -> pd.DataFrame:
    """Daily views per domain (index: date, columns: domain codes, 0 when absent) from the files.

    Only well-formed lines count; for a domain listed twice in one file the first line counts. The
    number of hourly files behind each day is in ``df.attrs["hours"]`` (a dict date -> hours).
    With ``scale_incomplete`` a day built from h < 24 files is scaled by 24 / h.
    """
    import pandas as pd

    totals: dict[tuple[date, str], int] = defaultdict(int)
    hours: dict[date, int] = defaultdict(int)
    for path in sorted(Path(out).glob("[0-9][0-9][0-9][0-9]/[0-9][0-9][0-9][0-9]-[0-9][0-9]/projectviews-*")):
        when = parse_file_time(path.name)
        if when is None:
            continue
        day = when.date()
        hours[day] += 1
        for domain, count in _valid_lines(path.read_text(encoding="utf-8")).items():
            totals[(day, domain)] += count
    if not totals:
        return pd.DataFrame()
    series = pd.Series(totals, dtype="int64")
    frame = series.unstack(fill_value=0).sort_index()
    frame.index = pd.Index(frame.index, name="date")
    full = pd.date_range(frame.index.min(), frame.index.max(), freq="D").date
    frame = frame.reindex(full, fill_value=0)
    frame.index.name = "date"
    if scale_incomplete:
        factor = np.asarray([24 / hours[d] if hours.get(d) else 0.0 for d in frame.index])
        frame = frame.mul(factor, axis=0)
    frame.attrs["hours"] = {d: hours.get(d, 0) for d in frame.index}
    return frame


def churn_labels(
    daily: pd.DataFrame,
    *,
    horizon_days: int = 7,
    window_days: int = 3,
    factor: float = 0.3,
    complete_hours: int = 24,
) -> pd.DataFrame:
    """The churn rule on daily totals: True/False per (day, domain), NaN where it is undefined.

    Day t is positive when ``min(views[t+1 .. t+horizon]) <= factor * mean(views[t-window .. t-1])``.
    Undefined: the windows run off the data, the past mean is 0 (nothing to churn from), or a day in
    the windows has fewer than ``complete_hours`` hourly files (``daily.attrs["hours"]``).
    """
    import pandas as pd

    past = daily.shift(1).rolling(window_days).mean()
    future = daily.shift(-horizon_days).rolling(horizon_days).min()
    labels = (future <= factor * past).astype("float64")
    defined = past.notna() & future.notna() & (past > 0)
    hours = pd.Series(daily.attrs.get("hours", {}), dtype="float64").reindex(daily.index).fillna(24)
    complete = (hours >= complete_hours).astype("float64")
    ok = (complete.shift(1).rolling(window_days).min() == 1) & (
        complete.shift(-horizon_days).rolling(horizon_days).min() == 1
    )
    defined = defined & ok.to_numpy()[:, None]
    return labels.where(defined)


def churn_positive_rate(out: Path, *, min_hours: int = 18, **rule: Any) -> float:
    """Share of positive domain-days under the churn rule, over the defined domain-days.

    Days with missing hourly files are scaled up to 24 hours; windows touching a day with fewer than
    ``min_hours`` files are left out. ``rule`` goes to :func:`churn_labels`.
    """
    rule.setdefault("complete_hours", min_hours)
    labels = churn_labels(daily_totals(out, scale_incomplete=True), **rule)
    values = labels.to_numpy().ravel()
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
