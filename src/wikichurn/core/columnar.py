"""The numpy compilation of :mod:`wikichurn.core.featurespec`: features of many days at once.

Every row of a :class:`Windows` is one (domain, day t) with its neighbourhood laid out as a row of a
matrix: column ``look + j`` holds day ``t + j`` and NaN stands for a day outside the domain's
calendar. Each feature kind is then one vectorised reduction over a slice of columns, the same for
one request (a matrix of one row per instance, no future columns) and for a whole table (one row
per day, built with ``sliding_window_view``). No pandas on this path; :func:`domain_frame` wraps the
result in a DataFrame for the callers that want one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from wikichurn.core.churn import parse_domain_code
from wikichurn.core.featurespec import Feature, feature_spec, lookback_rows, table_columns
from wikichurn.core.settings import ChurnSettings

if TYPE_CHECKING:
    import pandas as pd  # only domain_frame builds a DataFrame, and imports pandas when it does

Columns = dict[str, np.ndarray]
# The per-day quantities a window sums (see Windows.total), in the order of Windows._quantities.
_QUANTITY = {name: i for i, name in enumerate(("days", "views", "zeros", "x", "xx", "y", "xy", "d", "dd"))}


@dataclass(frozen=True)
class Windows:
    """Rows of (domain, day t) with the days around t (see the module docstring)."""

    views: np.ndarray  # (rows, look + 1 + ahead) float64: the statistics' views, NaN outside the calendar
    hours: np.ndarray  # same shape: hourly files of each day (NaN outside)
    observed: np.ndarray  # (rows,) int64: views of day t as in gold
    position: np.ndarray  # (rows,) int64: days since the first day with views
    days: np.ndarray  # (rows,) datetime64[D]: day t
    domains: np.ndarray  # (rows,) object: the domain codes
    look: int  # index of day t in a row

    @property
    def ahead(self) -> int:
        """Days after t a row holds."""
        return int(self.views.shape[1]) - self.look - 1

    @cached_property
    def memo(self) -> dict[tuple[object, ...], np.ndarray]:
        """Reductions several features share (a window's min and max, the calendar, ...)."""
        return {}

    @cached_property
    def _quantities(self) -> np.ndarray:
        """Every quantity of :meth:`total` on every day, ``(quantity, row, column)``, 0 where no day is."""
        valid = ~np.isnan(self.views)
        filled = np.where(valid, self.views, 0.0)
        log = np.log1p(filled)
        x = valid * np.arange(self.views.shape[1], dtype="float64")
        # Deviations from day t's views: a window's variance from their sums is exact (0.0) for
        # equal days and keeps its precision, since t is in every window the std reads.
        d = np.where(valid, self.views - self.views[:, self.look : self.look + 1], 0.0)
        return np.stack([valid, filled, self.views == 0, x, x * x, log, x * log, d, d * d])  # float64

    @cached_property
    def _spans(self) -> dict[str, Any]:
        """What :meth:`precompute` left: ``index`` (span -> column) and the ``(..., span)`` arrays."""
        return {}

    def precompute(self, spans: Sequence[tuple[int, int]]) -> None:
        """Sum every quantity over each span ``(start, stop)``, and the mean views, std and slope
        of each, in a few whole-array operations (one matrix product for all the sums), so the
        features of those spans are look-ups: numpy's per-call overhead, not arithmetic, is the
        cost of a small batch."""
        if not spans:
            return
        spans = tuple(spans)
        totals = self._quantities @ _span_matrix(self.views.shape[1], self.look, spans)  # (quantity, row, span)
        days, views = totals[0], totals[1]
        q = _QUANTITY
        self._spans.update(
            index={span: k for k, span in enumerate(spans)},
            totals=totals,
            mean=np.divide(views, days, out=np.full(days.shape, np.nan), where=days > 0),
            std=_std_from(days, totals[q["d"]], totals[q["dd"]]),
            slope=_slope_from(days, *(totals[q[name]] for name in ("x", "y", "xy", "xx"))),
        )

    def _precomputed(self, what: str, start: int, stop: int) -> np.ndarray | None:
        """``what`` (``totals``, ``mean``, ``std``, ``slope``) of a precomputed span, else None."""
        k = self._spans.get("index", {}).get((start, stop))
        if k is None:
            return None
        values: np.ndarray = self._spans[what][..., k]
        return values

    def total(self, quantity: str, start: int, stop: int) -> np.ndarray:
        """Sum of a quantity over ``t+start .. t+stop`` (inclusive). Quantities (over the days
        present): ``days``, ``views``, ``zeros`` (days of 0 views), ``x``, ``xx`` (the column
        index and its square), ``y``, ``xy`` (log1p of the views, and times the index), ``d``,
        ``dd`` (views minus day t's, and squared)."""
        block = self._precomputed("totals", start, stop)
        if block is not None:
            row: np.ndarray = block[_QUANTITY[quantity]]
            return row
        values = self._quantities[_QUANTITY[quantity], :, self.look + start : self.look + stop + 1]
        return np.asarray(values.sum(axis=1))

    def mean(self, start: int, stop: int) -> np.ndarray:
        """Mean views of ``t+start .. t+stop`` over the days present (NaN when none is)."""
        known = self._precomputed("mean", start, stop)
        if known is not None:
            return known
        days, total = self.total("days", start, stop), self.total("views", start, stop)
        return np.asarray(np.divide(total, days, out=np.full(len(days), np.nan), where=days > 0))


@lru_cache(maxsize=64)
def _span_matrix(width: int, look: int, spans: tuple[tuple[int, int], ...]) -> np.ndarray:
    """``(width, spans)`` of 0/1: column k selects the days of span k, so a product sums them."""
    out = np.zeros((width, len(spans)))
    for k, (start, stop) in enumerate(spans):
        out[look + start : look + stop + 1, k] = 1.0
    return out


def adjusted_views(observed: np.ndarray, hours: np.ndarray, churn: ChurnSettings) -> np.ndarray:
    """Views as the statistics see them: scaled to 24 hours on partial days under ``rescale``."""
    views = observed.astype("float64")
    if churn.incomplete_policy != "rescale":
        return views
    partial = (hours >= churn.min_hours_rescale) & (hours < 24)
    return np.where(partial, views * 24.0 / np.where(partial, hours, 24.0), views)


def series_windows(
    domain_code: str,
    first: date,
    observed: np.ndarray,
    hours: np.ndarray,
    churn: ChurnSettings,
    *,
    ahead: int | None = None,
) -> Windows:
    """Every day of one domain's dense calendar (``observed[i]`` = views of ``first + i`` days)."""
    look = lookback_rows(churn)
    ahead = churn.horizon_days if ahead is None else ahead
    n = len(observed)
    pad_l, pad_r = np.full(look, np.nan), np.full(ahead, np.nan)
    hours_f = hours.astype("float64")
    views = adjusted_views(observed, hours_f, churn)
    width = look + 1 + ahead
    return Windows(
        views=sliding_window_view(np.concatenate([pad_l, views, pad_r]), width),
        hours=sliding_window_view(np.concatenate([pad_l, hours_f, pad_r]), width),
        observed=observed.astype("int64"),
        position=np.arange(n, dtype="int64"),
        days=np.datetime64(first, "D") + np.arange(n),
        domains=np.full(n, domain_code, dtype=object),
        look=look,
    )


# -- reductions over a slice of columns (NaN = no such day) --------------------------------------


def _extreme(block: np.ndarray, largest: bool) -> np.ndarray:
    """Min or max over the days present (``fmin``/``fmax`` skip NaN); NaN when none is."""
    return np.asarray((np.fmax if largest else np.fmin).reduce(block, axis=1))


def _std(w: Windows, n: int) -> np.ndarray:
    """Sample std of ``t-n+1 .. t`` (see :func:`_std_from`)."""
    known = w._precomputed("std", 1 - n, 0)
    if known is not None:
        return known
    return _std_from(w.total("days", 1 - n, 0), w.total("d", 1 - n, 0), w.total("dd", 1 - n, 0))


def _std_from(count: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Sample std from the sums of deviations from day t (``t`` in the window); NaN below two days,
    exactly 0.0 when every day is equal. Elementwise, so any shape."""
    safe = np.maximum(count, 1)
    var = np.divide(np.maximum(s2 - s1 * s1 / safe, 0.0), count - 1, out=np.full(count.shape, np.nan), where=count > 1)
    return np.asarray(np.sqrt(var))


def _rolling_extreme(w: Windows, n: int, largest: bool) -> np.ndarray:
    """Min or max of ``t-n+1 .. t``: column ``n - 1`` of one running extreme from t backwards,
    shared by every window (NaN-skipping, as :func:`_extreme`)."""
    key = ("extreme", largest)
    if key not in w.memo:
        backwards = w.views[:, w.look :: -1]
        w.memo[key] = (np.fmax if largest else np.fmin).accumulate(backwards, axis=1)
    return np.asarray(w.memo[key][:, n - 1])


def _slope(w: Windows, n: int) -> np.ndarray:
    """Least-squares slope of log1p(views) on the day index over ``t-n+1 .. t`` (see :func:`_slope_from`)."""
    known = w._precomputed("slope", 1 - n, 0)
    if known is not None:
        return known
    quantities = (w.total(q, 1 - n, 0) for q in ("days", "x", "y", "xy", "xx"))
    return _slope_from(*quantities)


def _slope_from(count: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxy: np.ndarray, sxx: np.ndarray) -> np.ndarray:
    """covar_samp / var_samp from running sums; 2+ days. The index and log views are small, so no
    cancellation. Elementwise, so any shape."""
    safe = np.maximum(count, 1)
    cov = sxy - sx * sy / safe
    var = sxx - sx * sx / safe
    return np.asarray(np.divide(cov, var, out=np.full(count.shape, np.nan), where=(count > 1) & (var > 0)))


# -- one evaluator per kind -----------------------------------------------------------------------


_ROLLING: dict[str, Callable[[Windows, int], np.ndarray]] = {
    "mean": lambda w, n: w.mean(1 - n, 0),
    "std": _std,
    "min": lambda w, n: _rolling_extreme(w, n, False),
    "max": lambda w, n: _rolling_extreme(w, n, True),
}


def _calendar(w: Windows, part: str) -> np.ndarray:
    key = ("calendar", part)
    if key not in w.memo:
        w.memo.update({("calendar", name): value for name, value in _calendar_parts(w.days).items()})
    return w.memo[key]


def _calendar_parts(days: np.ndarray) -> dict[str, np.ndarray]:
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    month = months.astype("int64") % 12 + 1
    iso_dow = (days.astype("int64") + 3) % 7 + 1  # 1970-01-01 was a Thursday (ISO 4)
    return {
        "year": years.astype("int64") + 1970,
        "month": month,
        "day": (days - months).astype("int64") + 1,
        "dayofweek": iso_dow,
        "quarter": (month - 1) // 3 + 1,
        "is_weekend": (iso_dow >= 6).astype("int64"),
    }


@lru_cache(maxsize=65536)
def _domain_parts(code: str) -> dict[str, str]:
    return {"domain_code": code, **vars(parse_domain_code(code))}


def _domain(codes: np.ndarray, part: str) -> np.ndarray:
    return np.array([_domain_parts(str(c))[part] for c in codes], dtype=object)


def _label_available(w: Windows, churn: ChurnSettings) -> np.ndarray:
    wd, h = churn.window_days, churn.horizon_days
    # The window's maximum, not its mean: a mean from running sums can keep a rounding residue.
    had_views = np.nanmax(w.views[:, w.look - wd : w.look], axis=1, initial=0.0) > 0
    available = (w.position >= wd) & ~np.isnan(w.views[:, w.look + h]) & had_views
    if churn.incomplete_policy != "ignore":
        hours = np.concatenate([w.hours[:, w.look - wd : w.look], w.hours[:, w.look + 1 : w.look + h + 1]], axis=1)
        available &= ~(hours < churn.gap_hours()).any(axis=1)
    return np.asarray(available)


def _churn(f: Feature, w: Windows, churn: ChurnSettings) -> np.ndarray:
    past = w.mean(-churn.window_days, -1)
    future = _extreme(w.views[:, w.look + 1 : w.look + churn.horizon_days + 1], False)
    # The past mean at least 0, as in the Spark compilation: running sums keep rounding residues.
    floor = np.maximum(past, 0.0)
    return np.where(np.isnan(future) | np.isnan(past), np.nan, (future <= churn.factor * floor).astype("float64"))


# One evaluator per kind, looked up once per feature (a chain of ifs costs more than most features).
_EVALUATORS: dict[str, Callable[[Feature, Windows, ChurnSettings], np.ndarray]] = {
    "observed": lambda f, w, c: w.observed,
    "lag": lambda f, w, c: w.views[:, w.look - f.rows],
    "lead": lambda f, w, c: w.views[:, w.look + f.rows],
    "rolling": lambda f, w, c: _ROLLING[f.stat](w, f.rows),
    "past_mean": lambda f, w, c: f.scale * w.mean(-f.rows, -1),
    "ratio_to_past": lambda f, w, c: (w.views[:, w.look] + 1.0) / (w.mean(-f.rows, -1) + 1.0),
    "trend_slope": lambda f, w, c: _slope(w, f.rows),
    "zero_days": lambda f, w, c: np.asarray(np.rint(w.total("zeros", 1 - f.rows, 0)), dtype="int64"),
    "position": lambda f, w, c: w.position,
    "hours": lambda f, w, c: w.hours[:, w.look].astype("int64"),
    "calendar": lambda f, w, c: _calendar(w, f.stat),
    "domain": lambda f, w, c: _domain(w.domains, f.stat),
    "future_min": lambda f, w, c: _extreme(w.views[:, w.look + 1 : w.look + f.rows + 1], False),
    "churn": _churn,
    "label_available": lambda f, w, c: _label_available(w, c),
}


def _evaluate(f: Feature, w: Windows, churn: ChurnSettings) -> np.ndarray:
    evaluator = _EVALUATORS.get(f.kind)
    if evaluator is None:
        raise ValueError(f"{f.name}: unknown feature kind {f.kind!r}")
    return evaluator(f, w, churn)


def compute_columns(w: Windows, churn: ChurnSettings, names: Sequence[str] | None = None) -> Columns:
    """The columns of :func:`feature_spec` (or just ``names``) for every row of ``w``.

    Labels need ``w.ahead >= horizon_days``; ask only for features when the future is not there.
    """
    features, spans = _plan(
        churn.window_days, churn.horizon_days, churn.factor, None if names is None else tuple(names)
    )
    w.precompute(spans)
    out: Columns = {"event_date": w.days}
    for f in features:
        value = _evaluate(f, w, churn)
        out[f.name] = value if f.log1p is False else np.log1p(value)
    return out


@lru_cache(maxsize=256)  # keyed on plain values: hashing 43 Feature dataclasses costs more than a feature
def _plan(
    window_days: int, horizon_days: int, factor: float, names: tuple[str, ...] | None
) -> tuple[tuple[Feature, ...], tuple[tuple[int, int], ...]]:
    """The features to compute (those of ``names``, all when None, in spec order) and the windows
    ``(start, stop)`` relative to day t whose sums they read."""
    spec = feature_spec(ChurnSettings(window_days=window_days, horizon_days=horizon_days, factor=factor))
    wanted = None if names is None else set(names)
    features = tuple(f for f in spec if wanted is None or f.name in wanted)
    spans: dict[tuple[int, int], None] = {}
    for f in features:
        if f.kind in ("rolling", "trend_slope", "zero_days") and f.stat not in ("min", "max"):
            spans[(1 - f.rows, 0)] = None
        elif f.kind in ("past_mean", "ratio_to_past"):
            spans[(-f.rows, -1)] = None
        elif f.kind in ("future_min", "churn", "label_available"):
            spans[(-window_days, -1)] = None
    return features, tuple(spans)


@dataclass(frozen=True)
class History:
    """One domain's dense daily views, ``views[i]`` on ``first + i`` days, the last one scored."""

    domain_code: str
    first: date
    views: np.ndarray  # int64, one per calendar day (a missing day is 0)


def last_day_windows(histories: Sequence[History], churn: ChurnSettings) -> Windows:
    """The last day of each history as one row (no future: features only), every day complete.

    This is the serving path: a matrix of ``len(histories)`` rows and only the days the features
    read, so its cost does not grow with the length of a history.
    """
    look = lookback_rows(churn)
    rows = len(histories)
    views = np.full((rows, look + 1), np.nan)
    for i, history in enumerate(histories):
        tail = history.views[-(look + 1) :]
        views[i, look + 1 - len(tail) :] = tail
    lengths = np.fromiter((len(h.views) for h in histories), "int64", rows)
    firsts = np.array([h.first for h in histories], dtype="datetime64[D]")
    return tail_windows(views, firsts + (lengths - 1), lengths - 1, [h.domain_code for h in histories])


def tail_windows(views: np.ndarray, days: np.ndarray, position: np.ndarray, domains: Sequence[str]) -> Windows:
    """Rows that end on their day t (the last column), every day complete (24 hourly files).

    Args:
        views: ``(rows, lookback_rows + 1)`` daily views, day t last, NaN before the domain's first day.
        days: day t of each row (datetime64[D]).
        position: days from the domain's first day with views to t.
        domains: the domain code of each row.
    """
    look = views.shape[1] - 1
    return Windows(
        views=views,  # complete days: nothing to rescale
        hours=np.where(np.isnan(views), np.nan, 24.0),
        observed=views[:, look].astype("int64"),
        position=np.asarray(position, dtype="int64"),
        days=np.asarray(days, dtype="datetime64[D]"),
        domains=np.array(domains, dtype=object),
        look=look,
    )


def domain_windows(
    daily_views: Mapping[date, float],
    churn: ChurnSettings,
    *,
    domain_code: str,
    end_date: date | None = None,
    day_hours: Mapping[date, int] | None = None,
) -> Windows | None:
    """The dense calendar of one domain (first day with views .. ``end_date``), as windows.

    Dates absent inside the calendar are days of zero views; ``day_hours`` gives the hourly files
    per date (default: every day complete; with a mapping, a date absent from it has none).
    None when the domain has no day with views on or before ``end_date``.
    """
    positive = [d for d, v in daily_views.items() if v and v > 0]
    last = end_date if end_date is not None else max(daily_views, default=None)
    if not positive or last is None or min(positive) > last:
        return None
    first = min(positive)
    n = (last - first).days + 1
    hours = np.full(n, 24, dtype="int64") if day_hours is None else _dense(day_hours, first, n)
    return series_windows(domain_code, first, _dense(daily_views, first, n), hours, churn)


def _dense(values: Mapping[date, float], first: date, n: int) -> np.ndarray:
    """``values`` on the ``n`` days from ``first`` (0 where a day is absent)."""
    out = np.zeros(n, dtype="int64")
    for day, value in values.items():
        i = (day - first).days
        if 0 <= i < n:
            out[i] = int(value)
    return out


def domain_frame(
    daily_views: Mapping[date, float],
    churn: ChurnSettings,
    *,
    domain_code: str,
    end_date: date | None = None,
    day_hours: Mapping[date, int] | None = None,
) -> pd.DataFrame:
    """Features and labels of every day of one domain as a DataFrame (the table's columns and order)."""
    import pandas as pd

    windows = domain_windows(daily_views, churn, domain_code=domain_code, end_date=end_date, day_hours=day_hours)
    columns = list(table_columns(churn))
    if windows is None:
        return pd.DataFrame(columns=columns)
    values = compute_columns(windows, churn)
    frame = pd.DataFrame({name: values[name] for name in columns})
    frame["event_date"] = [d.item() for d in values["event_date"]]
    return frame
