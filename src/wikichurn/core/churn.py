"""The churn definition, the feature catalogue, and the pure-Python feature implementation.

This module is the single source of truth that the Spark feature job (``wikichurn.pipeline.lakehouse.features``),
training and serving all read. It imports neither Spark nor MLflow.

Label. A domain *churns* on day t if, within the next ``horizon_days`` days, its daily views fall
to at most ``factor`` x its mean over the ``window_days`` days before t (t excluded)::

    churn(t) = min(v[t+1 .. t+H]) <= factor * mean(v[t-W .. t-1])

Calendar. A domain exists from the first day it had views to the last day the lake has files for.
Inside that span a day the domain is absent from is a day of zero views; a day whose hourly files
are missing (fewer than ``min_hours_complete``) is a data gap, and with the ``strict`` policy any
label whose past window or future horizon touches one is unavailable (``rescale`` first scales days
with at least ``min_hours_rescale`` files to 24 hours and treats only sparser days as gaps; with
``rescale``, ``count_views`` stays as observed while every statistic uses the scaled series), as is a label whose past
window or horizon is not fully inside the calendar, and one whose past mean is zero (a dead domain
cannot collapse).

Features use day t and earlier only; the label-only columns never reach a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from wikichurn.core.settings import ChurnSettings

KEY_COLUMNS: tuple[str, ...] = ("domain_code", "event_date")
LAGS: tuple[int, ...] = tuple(range(1, 8))
ROLLING_WINDOWS: tuple[int, ...] = (7, 14, 28)
PAST_MEAN_WINDOWS: tuple[int, ...] = (3, 7, 28)
SLOPE_WINDOWS: tuple[int, ...] = (7, 28)
ZERO_WINDOWS: tuple[int, ...] = (7, 28)

# The seed feature set (baseline (a) of training uses exactly these).
SEED_FEATURES: tuple[str, ...] = (
    "count_views",
    "avg_views_past_3d",
    "threshold",
    "domain_code",
    "year",
    "month",
    "day",
    "dayofweek",
    "quarter",
    "is_weekend",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("domain_code", "language", "project_family", "access")

HISTORY_FEATURES: tuple[str, ...] = (
    *(f"views_lag_{k}" for k in LAGS),
    *(f"rolling_{stat}_{n}d" for n in ROLLING_WINDOWS for stat in ("mean", "std", "min", "max")),
    *(f"ratio_to_mean_{n}d" for n in PAST_MEAN_WINDOWS),
    *(f"trend_slope_{n}d" for n in SLOPE_WINDOWS),
    *(f"zero_days_{n}d" for n in ZERO_WINDOWS),
    "days_since_first_seen",
    "log_count_views",
    "log_avg_views_past_3d",
    "day_hours_available",
)
FEATURE_COLUMNS: tuple[str, ...] = (*SEED_FEATURES, *HISTORY_FEATURES, "language", "project_family", "access")


def label_columns(horizon_days: int = 7) -> tuple[str, ...]:
    """Columns computed from the future: never features."""
    return (
        *(f"views_plus_{k}" for k in range(1, horizon_days + 1)),
        "min_views_future",
        "churn",
        "label_available",
    )


LABEL_ONLY_COLUMNS: tuple[str, ...] = label_columns(7)

PROJECT_FAMILIES: dict[str, str] = {
    "": "wikipedia",
    "b": "wikibooks",
    "d": "wiktionary",
    "f": "wikimediafoundation",
    "m": "wikimedia",
    "n": "wikinews",
    "q": "wikiquote",
    "s": "wikisource",
    "v": "wikiversity",
    "voy": "wikivoyage",
    "w": "mediawiki",
    "wd": "wikidata",
}
# Wikimedia-wide sites whose desktop code is `<site>.m` (mobile is `<site>.m.m`).
WIKIMEDIA_SITES = frozenset(
    {"commons", "meta", "species", "incubator", "outreach", "strategy", "foundation", "wikimania", "login"}
)


@dataclass(frozen=True)
class DomainInfo:
    """What a domain code says about a wiki."""

    language: str
    project_family: str
    access: str  # desktop | mobile | zero


def parse_domain_code(code: str) -> DomainInfo:
    """Parse ``<lang>[.m|.zero][.<project>]`` (e.g. ``de.m.s`` = mobile German wikisource).

    ``.m`` is ambiguous: ``en.m`` is mobile English Wikipedia but ``commons.m`` is desktop Commons
    (mobile Commons is ``commons.m.m``). Unknown suffixes give project family ``other``.
    """
    parts = code.split(".")
    language, rest = parts[0], parts[1:]
    if language in WIKIMEDIA_SITES and rest[:1] == ["m"]:
        rest = rest[1:]
        access = "mobile" if rest[:1] == ["m"] else "desktop"
        return DomainInfo(language, "wikimedia", access)
    access = "desktop"
    if rest[:1] in (["m"], ["zero"]):
        access = "mobile" if rest[0] == "m" else "zero"
        rest = rest[1:]
    suffix = rest[0] if rest else ""
    family = PROJECT_FAMILIES.get(suffix, "other") if len(rest) <= 1 else "other"
    return DomainInfo(language, family, access)


def _rolling(series: pd.Series, n: int, past_only: bool = False) -> pd.core.window.Rolling:
    return (series.shift(1) if past_only else series).rolling(n, min_periods=1)


def compute_domain_frame(
    daily_views: Mapping[date, float] | pd.Series,
    churn: ChurnSettings,
    *,
    domain_code: str,
    end_date: date | None = None,
    day_hours: Mapping[date, int] | None = None,
) -> pd.DataFrame:
    """Features and labels of every day of one domain, as the Spark job computes them.

    Args:
        daily_views: views per date; dates absent between the first day with views and
            ``end_date`` count as zero views.
        churn: the churn definition (horizon, window, factor, completeness policy).
        domain_code: the domain (for the categorical and metadata features).
        end_date: last day of the calendar (default: the last date given).
        day_hours: hourly files available per date (default: every date complete).

    Returns:
        One row per calendar day with ``KEY_COLUMNS``, ``FEATURE_COLUMNS`` and the label columns.
    """
    series = pd.Series(daily_views, dtype="float64")
    series.index = pd.to_datetime(series.index)
    positive = series[series > 0]
    last = pd.Timestamp(end_date) if end_date is not None else series.index.max()
    if positive.empty or last is pd.NaT or positive.index.min() > last:
        return pd.DataFrame(columns=[*KEY_COLUMNS, *FEATURE_COLUMNS, *label_columns(churn.horizon_days)])
    calendar = pd.date_range(positive.index.min(), last, freq="D")
    observed = series.reindex(calendar, fill_value=0.0).fillna(0.0)
    hours_map = {pd.Timestamp(k): int(h) for k, h in (day_hours or {}).items()}
    hours = pd.Series([hours_map.get(d, 24) if day_hours is None else hours_map.get(d, 0) for d in calendar], calendar)
    v = observed
    if churn.incomplete_policy == "rescale":
        partial = (hours >= churn.min_hours_rescale) & (hours < 24)
        v = observed.where(~partial, observed * 24.0 / hours.where(partial, 24))

    out = pd.DataFrame(index=calendar)
    out["domain_code"] = domain_code
    out["event_date"] = calendar.date
    out["count_views"] = observed.astype("int64")
    past = _rolling(v, churn.window_days, past_only=True).mean()
    out["avg_views_past_3d"] = past
    out["threshold"] = churn.factor * past
    out["year"] = calendar.year
    out["month"] = calendar.month
    out["day"] = calendar.day
    out["dayofweek"] = calendar.dayofweek + 1  # ISO: Monday = 1 .. Sunday = 7
    out["quarter"] = calendar.quarter
    out["is_weekend"] = (calendar.dayofweek >= 5).astype("int64")
    for k in LAGS:
        out[f"views_lag_{k}"] = v.shift(k)
    for n in ROLLING_WINDOWS:
        window = _rolling(v, n)
        out[f"rolling_mean_{n}d"] = window.mean()
        out[f"rolling_std_{n}d"] = window.std(ddof=1)
        out[f"rolling_min_{n}d"] = window.min()
        out[f"rolling_max_{n}d"] = window.max()
    for n in PAST_MEAN_WINDOWS:
        out[f"ratio_to_mean_{n}d"] = (v + 1.0) / (_rolling(v, n, past_only=True).mean() + 1.0)
    log_v = np.log1p(v)
    x = pd.Series(np.arange(len(v), dtype="float64"), calendar)
    for n in SLOPE_WINDOWS:
        out[f"trend_slope_{n}d"] = log_v.rolling(n, min_periods=2).cov(x) / x.rolling(n, min_periods=2).var()
    for n in ZERO_WINDOWS:
        out[f"zero_days_{n}d"] = _rolling((v == 0).astype("float64"), n).sum().astype("int64")
    out["days_since_first_seen"] = np.arange(len(v), dtype="int64")
    out["log_count_views"] = log_v
    out["log_avg_views_past_3d"] = np.log1p(past)
    out["day_hours_available"] = hours.astype("int64")
    info = parse_domain_code(domain_code)
    out["language"], out["project_family"], out["access"] = info.language, info.project_family, info.access

    horizon = churn.horizon_days
    for k in range(1, horizon + 1):
        out[f"views_plus_{k}"] = v.shift(-k)
    future_min = v[::-1].shift(1).rolling(horizon, min_periods=1).min()[::-1]
    out["min_views_future"] = future_min
    out["churn"] = np.where(future_min.isna() | past.isna(), np.nan, (future_min <= churn.factor * past).astype(float))
    out["label_available"] = _label_available(v, hours, past, churn)
    return out.reset_index(drop=True)


def _label_available(v: pd.Series, hours: pd.Series, past: pd.Series, churn: ChurnSettings) -> pd.Series:
    n, w, h = len(v), churn.window_days, churn.horizon_days
    position = np.arange(n)
    inside = (position >= w) & (position + h <= n - 1)
    available = inside & (past.to_numpy() > 0)
    if churn.incomplete_policy != "ignore":
        incomplete = (hours < churn.gap_hours()).astype("int64").to_numpy()
        # Incomplete days in [t-w, t-1] and in [t+1, t+h], by prefix sums.
        prefix = np.concatenate([[0], np.cumsum(incomplete)])
        lo, hi = np.clip(position - w, 0, n), np.clip(position + h + 1, 0, n)
        touched = (prefix[position] - prefix[lo]) + (prefix[hi] - prefix[np.clip(position + 1, 0, n)])
        available &= touched == 0
    return pd.Series(available, v.index)


def feature_vector(
    daily_views: Mapping[date, float] | pd.Series,
    churn: ChurnSettings,
    *,
    domain_code: str,
    as_of: date | None = None,
    day_hours: Mapping[date, int] | None = None,
) -> dict[str, Any]:
    """The features of ``domain_code`` on day ``as_of`` (default: its last day), for scoring."""
    frame = compute_domain_frame(daily_views, churn, domain_code=domain_code, end_date=as_of, day_hours=day_hours)
    if frame.empty:
        raise ValueError(f"{domain_code}: no day with views on or before {as_of}")
    row = frame.iloc[-1]
    return {name: _plain(row[name]) for name in FEATURE_COLUMNS}


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    return value
