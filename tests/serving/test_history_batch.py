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
from wikichurn.serving.scoring import ItemProblem, history_windows

CHURN = ChurnSettings()
D0 = date(2024, 3, 1)
MAX_DAYS = 60


def _said(problem: ItemProblem | None) -> tuple[str, str] | None:
    return None if problem is None else (problem.code, problem.message)


@st.composite
def entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A history: mostly clean, sometimes with an odd entry of each kind the rules refuse."""
    span = draw(st.integers(0, 75))
    offsets = draw(st.lists(st.integers(0, max(span - 1, 0)), max_size=span, unique=True)) if span else []
    views = st.one_of(st.integers(0, 3), st.integers(0, 10**6))
    out: list[dict[str, Any]] = [{"date": (D0 + timedelta(days=o)).isoformat(), "views": draw(views)} for o in offsets]
    odd = draw(st.sampled_from(["none"] * 6 + ["duplicate", "bad_date", "impossible_date", "negative", "huge", "old"]))
    if odd == "duplicate" and out:
        out.append(dict(out[0]))
    elif odd == "bad_date":
        out.append({"date": "yesterday", "views": 1})
    elif odd == "impossible_date":
        out.append({"date": "2024-02-30", "views": 1})
    elif odd == "negative":
        out.append({"date": "2030-01-01", "views": -1})
    elif odd == "huge":
        out.append({"date": "2030-01-01", "views": 10**13})
    elif odd == "old":
        out.append({"date": "1900-01-01", "views": 1})
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
