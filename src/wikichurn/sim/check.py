"""Self-checks of a simulated (or replayed) mirror: its manifest, daily totals parsed back from the
files, and the churn rule applied to them."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wikichurn.core.layout import parse_file_time

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_NAME = "simulation.json"

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
