"""Simulated hourly traffic: level, trend, daily noise, weekly and daily cycles, then Poisson counts."""

from __future__ import annotations

import math
from datetime import date

import numpy as np

from wikichurn.sim.catalog import Catalog
from wikichurn.sim.files import diurnal_shape
from wikichurn.sim.model import SimulationModel

# --------------------------------------------------------------------------------------------
# Traffic


class Traffic:
    """Draws one day of hourly counts (domains x 24) at a time."""

    def __init__(self, cat: Catalog, start: date, rng: np.random.Generator, model: SimulationModel) -> None:
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


def day_factor(mods: tuple[np.ndarray, ...], n: int, first_hour: int) -> np.ndarray:
    domain, start, end, factor = mods
    factors = np.ones((n, 24))
    hit = (start < first_hour + 24) & (end > first_hour)
    if hit.any():
        hours = first_hour + np.arange(24)[None, :]
        inside = (hours >= start[hit, None]) & (hours < end[hit, None])
        np.multiply.at(factors, domain[hit], np.where(inside, factor[hit, None], 1.0))
    return factors
