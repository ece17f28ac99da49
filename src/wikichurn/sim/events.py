"""The simulated ground truth: appearances, disappearances, collapses, spikes and missing hours."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from wikichurn.sim.catalog import Catalog
from wikichurn.sim.model import SimulationModel

# --------------------------------------------------------------------------------------------
# Ground truth: life cycle, collapses, spikes, missing hours


@dataclass
class Modifiers:
    """Multiplicative modifiers over absolute hours [start, end) of one domain each."""

    domain: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    factor: list[float] = field(default_factory=list)
    collapses: list[tuple[int, int]] = field(default_factory=list)  # (domain, start hour)

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


def draw_events(
    cat: Catalog, ndays: int, start: date, rng: np.random.Generator, model: SimulationModel
) -> tuple[Modifiers, list[dict], list[dict], list[dict]]:
    """Modifiers plus the ground truth: churn events, appearances, spikes."""
    n = len(cat.codes)
    hours = ndays * 24
    big = max(2, int(n * model.giants_fraction))
    eligible = np.flatnonzero(cat.rank >= big)
    mods = Modifiers()
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
            mods.collapses.append((d, at))
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


def missing_hours(ndays: int, rng: np.random.Generator, model: SimulationModel) -> np.ndarray:
    hours = ndays * 24
    missing = rng.random(hours) < model.missing_hour_rate
    lo, hi = model.outage_hours
    for day in np.flatnonzero(rng.random(ndays) < model.outage_rate).tolist():
        at = day * 24 + int(rng.integers(0, 24))
        missing[at : at + int(rng.integers(lo, hi + 1))] = True
    return missing


def draw_precursors(
    cat: Catalog, ndays: int, start: date, mods: Modifiers, rng: np.random.Generator, model: SimulationModel
) -> tuple[list[dict], list[dict]]:
    """Slow declines before a share of the collapses, and multi-day bursts; added to ``mods``.

    Returns the ground truth of both (declines: domain, start, days, depth; bursts: domain,
    start, days, factor).
    """
    hours = ndays * 24
    declines: list[dict] = []
    lo_d, hi_d = model.decline_days
    lo_v, hi_v = model.decline_depth
    for d, at in mods.collapses:
        if rng.random() >= model.decline_fraction:
            continue
        days = int(rng.integers(lo_d, hi_d + 1))
        depth = float(rng.uniform(lo_v, hi_v))
        first = max(0, at - days * 24)
        for j in range(days):  # day j of the ramp: depth ** ((j + 1) / days), log-linear down
            a, b = at - (days - j) * 24, at - (days - j - 1) * 24
            if b > first:
                mods.add(d, max(a, first), b, depth ** ((j + 1) / days))
        declines.append(
            {"domain": cat.codes[d], "start_hour": _hour_iso(start, first), "days": days, "depth": round(depth, 3)}
        )
    bursts: list[dict] = []
    n = len(cat.codes)
    big = max(2, int(n * model.giants_fraction))
    lo_b, hi_b = model.burst_days
    lo_f, hi_f = model.burst_factor
    q = cat.rank / max(n - 1, 1)
    for d in np.flatnonzero(cat.rank >= big).tolist():
        # Whole-day bursts are a small-wiki phenomenon: the rate grows as 3 q**2 (mean 1).
        for _ in range(int(rng.poisson(model.burst_rate * 3 * q[d] ** 2 * ndays))):
            day = int(rng.integers(0, ndays))
            days = int(rng.integers(lo_b, hi_b + 1))
            factor = float(math.exp(rng.uniform(math.log(lo_f), math.log(hi_f))))
            mods.add(d, day * 24, min(hours, (day + days) * 24), factor)
            bursts.append(
                {
                    "domain": cat.codes[d],
                    "start_hour": _hour_iso(start, day * 24),
                    "days": days,
                    "factor": round(factor, 2),
                }
            )
    declines.sort(key=lambda e: (e["start_hour"], e["domain"]))
    bursts.sort(key=lambda e: (e["start_hour"], e["domain"]))
    return declines, bursts
