"""The simulator's knobs: :class:`SimulationModel` (traffic, life cycle, events, defects).

Documented, with the calibration against real daily totals, in ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from wikichurn.sim.codes import WEEKLY_DESKTOP, WEEKLY_MOBILE


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
    # Precursors, calibrated on real daily totals (docs/simulator.md), drawn from their own
    # random stream so every draw above is unchanged. Slow declines before a share of collapses:
    decline_fraction: float = 0.5  # of collapses
    decline_days: tuple[int, int] = (4, 14)
    decline_depth: tuple[float, float] = (0.35, 0.8)  # traffic on the eve of the collapse, x normal
    # Multi-day bursts (bot traffic, a linked page) after which traffic falls back: the drop
    # after the spike is a collapse by the rule, as in the real series.
    burst_rate: float = 0.003  # per domain-day
    burst_days: tuple[int, int] = (1, 4)
    burst_factor: tuple[float, float] = (3.0, 12.0)  # log-uniform, whole days
    # Data-quality defects.
    missing_hour_rate: float = 0.001  # single hourly files not published
    outage_rate: float = 0.015  # per day: an outage of several hours in a row starts
    outage_hours: tuple[int, int] = (2, 10)
    malformed_rate: float = 0.0005  # per written data line
    blank_line_rate: float = 0.02  # per file: one blank line at the end
    decoys_per_month: int = 3
    decoy_lines: tuple[int, int] = (40, 160)
    publish_delay_minutes: tuple[int, int] = (30, 90)
