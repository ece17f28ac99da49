"""The churn features and labels, declared once; two compilers turn this list into code.

Each :class:`Feature` names a column and says what it is (its ``kind``, over how many rows, with
which statistic). Nothing here computes anything. :func:`wikichurn.pipeline.lakehouse.features.spark_columns`
compiles the list to Spark window Columns for the lake (``gold_churn_features``) and
:mod:`wikichurn.core.columnar` to numpy for serving, the tests and the EDA checks; a property test
(``tests/pipeline/test_features_equivalence.py``) proves the two compilations agree on every column.
Adding a feature is one line in :func:`feature_spec` (and, for a new ``kind``, one case in each
compiler). See ``docs/features.md``.

Conventions (one row per calendar day of a domain, ``t`` = the row's day, ``v`` = the day's views as
the statistics see them, i.e. rescaled on partial days under the ``rescale`` policy):

===================== =====================================================================
``observed``          ``count_views`` as in gold (never rescaled)
``lag`` k             ``v[t-k]`` (``k = 0``: ``v[t]``); NULL before the domain's first day
``rolling`` n, stat   mean | std (sample) | min | max of ``v[t-n+1 .. t]`` (the rows there are)
``past_mean`` n       mean of ``v[t-n .. t-1]``, times ``scale``; NULL on the first day
``ratio_to_past`` n   ``(v[t] + 1) / (past_mean n + 1)``
``trend_slope`` n     ``covar_samp(log1p(v), day) / var_samp(day)`` over ``t-n+1 .. t`` (2+ rows)
``zero_days`` n       days with ``v = 0`` in ``t-n+1 .. t``
``position``          days since the first day with views
``hours``             hourly files of day t
``calendar`` part     year | month | day | dayofweek (ISO, Monday = 1) | quarter | is_weekend
``domain`` part       domain_code | language | project_family | access (``parse_domain_code``)
``lead`` k            ``v[t+k]`` (label side)
``future_min`` n      min of ``v[t+1 .. t+n]`` (label side)
``churn``             ``future_min <= factor x past_mean`` (NULL when either is NULL)
``label_available``   see :mod:`wikichurn.core.churn`
===================== =====================================================================

``log1p`` applies ``log(1 + x)`` to the value of any kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from wikichurn.core.settings import ChurnSettings

Kind = Literal[
    "observed",
    "lag",
    "rolling",
    "past_mean",
    "ratio_to_past",
    "trend_slope",
    "zero_days",
    "position",
    "hours",
    "calendar",
    "domain",
    "lead",
    "future_min",
    "churn",
    "label_available",
]
DType = Literal["double", "bigint", "int", "string", "boolean"]

KEY_COLUMNS: tuple[str, ...] = ("domain_code", "event_date")
LAGS: tuple[int, ...] = tuple(range(1, 8))
ROLLING_WINDOWS: tuple[int, ...] = (7, 14, 28)
ROLLING_STATS: tuple[str, ...] = ("mean", "std", "min", "max")
PAST_MEAN_WINDOWS: tuple[int, ...] = (3, 7, 28)
SLOPE_WINDOWS: tuple[int, ...] = (7, 28)
ZERO_WINDOWS: tuple[int, ...] = (7, 28)
CALENDAR_PARTS: tuple[str, ...] = ("year", "month", "day", "dayofweek", "quarter", "is_weekend")
DOMAIN_PARTS: tuple[str, ...] = ("language", "project_family", "access")


@dataclass(frozen=True)
class Feature:
    """One column of ``gold_churn_features``: what it is, not how it is computed."""

    name: str
    kind: Kind
    rows: int = 0  # k of a lag or lead, n of a window
    stat: str = ""  # the rolling statistic, the calendar part or the domain part
    scale: float = 1.0  # past_mean only: the mean times this (the threshold is factor x mean)
    log1p: bool = False  # the value is log(1 + x)
    dtype: DType = "double"
    seed: bool = False  # one of the seed features (baseline (a) of training)
    label: bool = False  # computed from the future: never a model input


def past_mean_name(window_days: int, log: bool = False) -> str:
    """Name of the mean over the label's past window (it follows ``window_days``)."""
    return f"{'log_' if log else ''}avg_views_past_{window_days}d"


def feature_spec(churn: ChurnSettings | None = None) -> tuple[Feature, ...]:
    """Every column after the keys, in table order: features first, then the labels.

    Args:
        churn: the churn definition (window, factor and horizon); default: the committed one.
    """
    churn = churn or ChurnSettings()
    return _spec(churn.window_days, churn.horizon_days, churn.factor)


@lru_cache(maxsize=64)  # the scoring hot path asks for it on every request
def _spec(w: int, h: int, factor: float) -> tuple[Feature, ...]:
    calendar = tuple(
        Feature(part, "calendar", stat=part, dtype="bigint" if part == "is_weekend" else "int", seed=True)
        for part in CALENDAR_PARTS
    )
    return (
        Feature("count_views", "observed", dtype="bigint", seed=True),
        Feature(past_mean_name(w), "past_mean", w, seed=True),
        Feature("threshold", "past_mean", w, scale=factor, seed=True),
        Feature("domain_code", "domain", stat="domain_code", dtype="string", seed=True),
        *calendar,
        *(Feature(f"views_lag_{k}", "lag", k) for k in LAGS),
        *(Feature(f"rolling_{s}_{n}d", "rolling", n, stat=s) for n in ROLLING_WINDOWS for s in ROLLING_STATS),
        *(Feature(f"ratio_to_mean_{n}d", "ratio_to_past", n) for n in PAST_MEAN_WINDOWS),
        *(Feature(f"trend_slope_{n}d", "trend_slope", n) for n in SLOPE_WINDOWS),
        *(Feature(f"zero_days_{n}d", "zero_days", n, dtype="bigint") for n in ZERO_WINDOWS),
        Feature("days_since_first_seen", "position", dtype="bigint"),
        Feature("log_count_views", "lag", 0, log1p=True),
        Feature(past_mean_name(w, log=True), "past_mean", w, log1p=True),
        Feature("day_hours_available", "hours", dtype="bigint"),
        *(Feature(part, "domain", stat=part, dtype="string") for part in DOMAIN_PARTS),
        *(Feature(f"views_plus_{k}", "lead", k, label=True) for k in range(1, h + 1)),
        Feature("min_views_future", "future_min", h, label=True),
        Feature("churn", "churn", label=True),
        Feature("label_available", "label_available", dtype="boolean", label=True),
    )


def feature_columns(churn: ChurnSettings | None = None) -> tuple[str, ...]:
    """The model-input columns (``domain_code`` among them), in table order."""
    return tuple(f.name for f in feature_spec(churn) if not f.label)


def keyed_feature_columns(churn: ChurnSettings | None = None) -> tuple[str, ...]:
    """The keys, then the model-input columns after them: what a scoring or export job reads."""
    return (*KEY_COLUMNS, *(c for c in feature_columns(churn) if c not in KEY_COLUMNS))


def label_columns(horizon_days: int | None = None) -> tuple[str, ...]:
    """Columns computed from the future (never features); default horizon: the committed one."""
    horizon = ChurnSettings().horizon_days if horizon_days is None else horizon_days
    return tuple(f.name for f in feature_spec(ChurnSettings(horizon_days=horizon)) if f.label)


def seed_features(churn: ChurnSettings | None = None) -> tuple[str, ...]:
    """The seed feature set (baseline (a) of training uses exactly these)."""
    return tuple(f.name for f in feature_spec(churn) if f.seed)


def table_columns(churn: ChurnSettings | None = None) -> tuple[str, ...]:
    """Every column of ``gold_churn_features``, in order: keys, features, labels."""
    return (*KEY_COLUMNS, *(f.name for f in feature_spec(churn) if f.name not in KEY_COLUMNS))


def lookback_rows(churn: ChurnSettings | None = None) -> int:
    """How many rows before t any feature or label reads (the history a score needs, minus t)."""
    churn = churn or ChurnSettings()
    return _lookback(churn.window_days, churn.horizon_days, churn.factor)


@lru_cache(maxsize=64)
def _lookback(w: int, h: int, factor: float) -> int:
    reach = {"lag": 0, "rolling": -1, "past_mean": 0, "ratio_to_past": 0, "trend_slope": -1, "zero_days": -1}
    return max(f.rows + reach[f.kind] for f in _spec(w, h, factor) if f.kind in reach)


CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in feature_spec() if f.kind == "domain")
FEATURE_COLUMNS: tuple[str, ...] = feature_columns()
SEED_FEATURES: tuple[str, ...] = seed_features()
HISTORY_FEATURES: tuple[str, ...] = tuple(
    name for name in FEATURE_COLUMNS if name not in SEED_FEATURES and name not in CATEGORICAL_FEATURES
)
LABEL_ONLY_COLUMNS: tuple[str, ...] = label_columns()
