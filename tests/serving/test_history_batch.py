"""The whole-batch history parser of ``history_windows`` against its one-instance path.

From a few instances on, ``history_windows`` checks every entry of a request at once and builds the
feature rows of all its histories in one matrix; below that it runs ``history_from_views`` +
``last_day_windows`` one instance at a time, which name each problem exactly. On any batch, valid
and invalid instances mixed, both paths must give the same rows and the same problems, in the same
places.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wikichurn.core.settings import ChurnSettings
from wikichurn.serving.schemas import ScoreInstance
from wikichurn.serving.scoring import ItemProblem, _parse_all, history_windows

CHURN = ChurnSettings()
D0 = date(2024, 3, 1)
MAX_DAYS = 60
# Dates the byte-level parser must refuse, or read exactly as the one-instance rules do.
_ODD_DATES = {
    "word": "yesterday",
    "impossible": "2024-02-30",
    "not_leap": "2023-02-29",
    "century_not_leap": "2100-02-29",
    "leap": "2024-02-29",  # valid: the day before the histories' first
    "century_leap": "2000-02-29",  # valid, far back: the span rule refuses it
    "old": "1900-01-01",
    "year_zero": "0000-01-01",
    "month_13": "2024-13-01",
    "day_zero": "2024-05-00",
    "no_dashes": "2024x05x01",
    "short": "2024-5-01",
    "long": "2024-05-011",
    "separator": "2024|05-01",
    "spaces": " 2024-05-01",
    "unicode_digits": "\u0662\u0660\u0662\u0664-05-01",
    "last": "2199-12-31",
    "past_last": "2200-01-01",
}


def _said(problem: ItemProblem | None) -> tuple[str, str] | None:
    return None if problem is None else (problem.code, problem.message)


@st.composite
def entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A history: mostly clean, sometimes with an odd entry of each kind the rules refuse."""
    span = draw(st.integers(0, 75))
    offsets = draw(st.lists(st.integers(0, max(span - 1, 0)), max_size=span, unique=True)) if span else []
    views = st.one_of(st.integers(0, 3), st.integers(0, 10**6))
    out: list[dict[str, Any]] = [{"date": (D0 + timedelta(days=o)).isoformat(), "views": draw(views)} for o in offsets]
    odd = draw(st.sampled_from(["none"] * 6 + [*_ODD_DATES, "duplicate", "negative", "huge"]))
    if odd == "duplicate" and out:
        out.append(dict(out[0]))
    elif odd in _ODD_DATES:
        out.append({"date": _ODD_DATES[odd], "views": draw(views)})
    elif odd == "negative":
        out.append({"date": "2030-01-01", "views": -1})
    elif odd == "huge":
        out.append({"date": "2030-01-01", "views": 10**13})
    return draw(st.permutations(out))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(), min_size=1, max_size=6))
def test_batch_parser_equals_the_one_instance_rules(batch: list[list[dict[str, Any]]]) -> None:
    instances = [ScoreInstance(domain_code=f"d{i}", daily_views=h) for i, h in enumerate(batch)]
    windows, problems = history_windows(instances, CHURN, MAX_DAYS, whole_batch_from=1)
    expected, expected_problems = history_windows(instances, CHURN, MAX_DAYS, whole_batch_from=len(instances) + 1)
    assert [_said(p) for p in problems] == [_said(p) for p in expected_problems]
    if expected is None:
        assert windows is None
        return
    assert windows is not None
    np.testing.assert_array_equal(windows.views, expected.views)  # NaN where the other has NaN
    np.testing.assert_array_equal(windows.hours, expected.hours)
    for name in ("observed", "position", "days", "domains"):
        assert getattr(windows, name).tolist() == getattr(expected, name).tolist(), name
    assert windows.look == expected.look


def test_a_bad_entry_elsewhere_does_not_refuse_a_clean_history() -> None:
    """One unparseable date sends the whole batch to the one-by-one rules; the clean one still scores."""
    clean = [{"date": (D0 + timedelta(days=i)).isoformat(), "views": 100 + i} for i in range(10)]
    instances = [
        ScoreInstance(domain_code="ok", daily_views=clean),
        ScoreInstance(domain_code="bad", daily_views=[*clean, {"date": "2024-13-01", "views": 1}]),
    ]
    windows, problems = history_windows(instances, CHURN, whole_batch_from=1)
    assert problems[0] is None
    assert problems[1] is not None and problems[1].code == "invalid_date"
    assert windows is not None and windows.domains.tolist() == ["ok"]
    assert windows.observed.tolist() == [109]
    assert windows.days.tolist() == [D0 + timedelta(days=9)]


def test_byte_level_dates_equal_the_calendar() -> None:
    """Every day of 1900-2199 reads as numpy's day number; every impossible 29th-31st is refused."""
    first, last = np.datetime64("1900-01-01"), np.datetime64("2199-12-31")
    every_day = np.arange(first, last + 1)
    texts = [str(d) for d in every_day]
    parsed = _parse_all(texts, [0] * len(texts))
    assert parsed is not None
    assert parsed[0].tolist() == every_day.astype("int64").tolist()
    real = set(texts)
    for year in range(1900, 2200):
        for month in range(1, 13):
            for day in (29, 30, 31, 32):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                if text not in real:
                    assert _parse_all([text], [0]) is None, text
