"""Walk-forward folds (a property test: no training label window reaches a validation date),
the rounds rule, and the refits' rows: each booster sees exactly the rows its metadata claims."""

from __future__ import annotations

from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wikichurn.training.config import CVSettings, load_training_settings
from wikichurn.training.folds import RowRange, scaled_rounds, walk_forward_folds
from wikichurn.training.model import as_categorical
from wikichurn.training.procedure import Plan, refit
from wikichurn.training.tuning import CVFit, fit_rounds

HORIZON = 7


@st.composite
def calendars(draw: st.DrawFn) -> tuple[list[date], int, CVSettings]:
    """A labelled calendar with holes (outage days), a gap >= the horizon and a CV setting."""
    n = draw(st.integers(20, 160))
    start = date(2024, 1, 1) + timedelta(days=draw(st.integers(0, 400)))
    keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    days = [start + timedelta(days=i) for i, k in enumerate(keep) if k or i in (0, n - 1)]
    gap = draw(st.integers(HORIZON, 14))
    cv = CVSettings(folds=draw(st.integers(1, 6)), min_train_fraction=draw(st.floats(0.1, 0.8)))
    return days, gap, cv


@settings(max_examples=200, deadline=None)
@given(calendars())
def test_no_training_label_window_reaches_a_validation_date(case: tuple[list[date], int, CVSettings]) -> None:
    days, gap, cv = case
    try:
        folds = walk_forward_folds(days, cv, gap)
    except ValueError:
        # Refused only when no date has any date more than a gap before it.
        assert all(sum(d < x - timedelta(days=gap) for d in days) == 0 for x in days)
        return
    dates = pd.Series(pd.to_datetime(days))
    assert 1 <= len(folds) <= cv.folds
    covered = []
    for fold in folds:
        train = dates[fold.train_mask(dates)]
        validation = dates[fold.validation_mask(dates)]
        assert len(train) and len(validation)
        # Every training row's label looks at days t+1..t+HORIZON: none of them is a validation date.
        windows = {d + pd.Timedelta(days=k) for d in train for k in range(1, HORIZON + 1)}
        assert not windows & set(validation)
        assert train.max() < validation.min()  # walk forward: train strictly before validation
        covered.extend(validation)
    # Validation blocks are disjoint, ordered, and tile the dates after the first block start.
    assert covered == sorted(covered) and len(covered) == len(set(covered))
    assert covered == list(dates[dates >= folds[0].validation_start])
    # At least min_train_fraction of the dates train the first fold, unless the calendar is too short.
    need = int(np.ceil(cv.min_train_fraction * len(days)))
    first_train = int(folds[0].train_mask(dates).sum())
    pivot = days[max(0, len(days) - cv.folds)]
    cap = sum(d < pivot - timedelta(days=gap) for d in days)  # what a short calendar allows
    assert first_train >= min(need, cap)


def test_folds_refuse_too_short_a_calendar() -> None:
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(8)]
    with pytest.raises(ValueError, match="cannot hold a walk-forward fold"):
        walk_forward_folds(days, CVSettings(folds=3, min_train_fraction=0.5), 7)


def test_scaled_rounds() -> None:
    # Fold train sizes 100 and 200 with best iterations 50 and 80 -> 1.0 and 0.8 rounds per 2 rows... median.
    assert scaled_rounds([50, 80], [100, 200], 400, 1.0, 1000) == round(np.median([200, 160]))
    assert scaled_rounds([50, 80], [100, 200], 400, 0.0, 1000) == 65
    assert scaled_rounds([50, 80], [100, 200], 10**6, 1.0, 300) == 300
    with pytest.raises(ValueError):
        scaled_rounds([], [], 10, 1.0, 10)


def labelled_frame(days: int = 60, domains: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        for k in range(domains):
            signal = rng.normal()
            rows.append(
                {
                    "event_date": pd.Timestamp(2024, 1, 1) + pd.Timedelta(days=d),
                    "domain_code": f"c{k}",
                    "signal": signal,
                    "noise": rng.normal(),
                    "churn": int(signal + 0.5 * rng.normal() > 1.0),
                }
            )
    return pd.DataFrame(rows)


def test_refits_see_exactly_the_rows_they_claim() -> None:
    frame = labelled_frame()
    cfg = load_training_settings(cv={"folds": 3, "min_train_fraction": 0.4})
    plan = Plan.build(frame, cfg, HORIZON)
    features = ["signal", "noise", "domain_code"]
    params = {"objective": "binary", "verbosity": -1, "seed": 1, "deterministic": True, "num_leaves": 7}
    fit = CVFit(params, [0.5, 0.6, 0.7], [12, 15, 20], [100, 150, 200], np.zeros(1), 0.0)
    refits = refit(plan, fit, features, cfg)

    # The registered booster: every labelled row, up to the latest label.
    assert refits.final_rows == RowRange.of(frame)
    assert refits.final_rows.end == "2024-02-29" and refits.final_rows.rows == len(frame)
    # The holdout booster: the development rows only, all before the test set and its gap.
    test_start = plan.split.test["event_date"].min()
    assert pd.Timestamp(refits.holdout_rows.end) + pd.Timedelta(days=cfg.split.gap_days) < test_start
    assert refits.holdout_rows.rows == int((frame["event_date"] <= refits.holdout_rows.end).sum())

    # Re-fitting on exactly the claimed rows reproduces each booster tree for tree; one row less does not.
    for booster, rows, cats, rounds in (
        (refits.final, refits.final_rows, refits.final_categories, refits.final_rounds),
        (refits.holdout, refits.holdout_rows, refits.holdout_categories, refits.holdout_rounds),
    ):
        claimed = frame.loc[frame["event_date"].between(rows.start, rows.end)]
        assert len(claimed) == rows.rows and int(claimed["churn"].sum()) == rows.positives
        assert booster.current_iteration() == rounds
        again = fit_rounds(claimed, features, cats, params, rounds)
        x = as_categorical(frame[features], cats)
        assert np.array_equal(booster.predict(x), again.predict(x))
        fewer = fit_rounds(claimed.iloc[1:], features, cats, params, rounds)
        assert not np.array_equal(booster.predict(x), fewer.predict(x))
    assert isinstance(refits.final, lgb.Booster)
    assert refits.final_rounds == fit.rounds_for(len(frame), cfg) > refits.holdout_rounds
