"""The time split: order, gaps at least the label horizon, fractions, cut dates, holes."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from wikichurn.training.config import SplitSettings
from wikichurn.training.data import prepare_frame, split_by_time


def frame_for(dates: list[date], domains: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"domain_code": f"d{i}", "event_date": d, "count_views": 1, "churn": float(rng.random() < 0.2)}
        for d in dates
        for i in range(domains)
    ]
    return prepare_frame(pd.DataFrame(rows))


def days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=k) for k in range(n)]


def assert_time_ordered(split, gap: int) -> None:
    sets = split.sets()
    for name, part in sets.items():
        assert not part.empty, name
    pairs = (("train", "validation"), ("validation", "test"))
    for earlier, later in pairs:
        last = sets[earlier]["event_date"].max()
        first = sets[later]["event_date"].min()
        # No label of `earlier` (day t sees t+1 .. t+gap) reaches a day of `later`.
        assert (first - last).days > gap
        assert not set(sets[earlier]["event_date"]) & set(sets[later]["event_date"])


def test_fraction_split_is_ordered_with_gaps_and_close_to_fractions() -> None:
    frame = frame_for(days(date(2024, 1, 1), 100))
    split = split_by_time(frame, SplitSettings(), horizon_days=7)

    assert_time_ordered(split, 7)
    kept = {name: len(part) for name, part in split.sets().items()}
    total = sum(kept.values())
    assert kept["train"] / total == pytest.approx(0.6, abs=0.03)
    assert kept["validation"] / total == pytest.approx(0.2, abs=0.03)
    assert kept["test"] / total == pytest.approx(0.2, abs=0.03)
    assert split.dropped_rows == len(frame) - total == 2 * 7 * 5  # exactly two gaps of 7 dates
    assert split.train["event_date"].is_monotonic_increasing


def test_split_never_shuffles_the_last_dates_into_train() -> None:
    frame = frame_for(days(date(2024, 1, 1), 60))
    split = split_by_time(frame, SplitSettings(), horizon_days=7)
    assert split.test["event_date"].max() == frame["event_date"].max()
    assert split.train["event_date"].min() == frame["event_date"].min()


def test_cut_dates_split() -> None:
    frame = frame_for(days(date(2024, 1, 1), 60))
    config = SplitSettings(train_end=date(2024, 1, 31), validation_end=date(2024, 2, 14), gap_days=7)
    split = split_by_time(frame, config, horizon_days=7)

    info = split.info()
    assert (info["train"].start, info["train"].end) == (date(2024, 1, 1), date(2024, 1, 31))
    assert (info["validation"].start, info["validation"].end) == (date(2024, 2, 8), date(2024, 2, 14))
    assert (info["test"].start, info["test"].end) == (date(2024, 2, 22), date(2024, 2, 29))
    assert_time_ordered(split, 7)


def test_longer_gap_is_respected() -> None:
    frame = frame_for(days(date(2024, 1, 1), 90))
    split = split_by_time(frame, SplitSettings(gap_days=10), horizon_days=7)
    assert_time_ordered(split, 10)


def test_gap_shorter_than_horizon_is_refused() -> None:
    frame = frame_for(days(date(2024, 1, 1), 60))
    with pytest.raises(ValueError, match="shorter than the label horizon"):
        split_by_time(frame, SplitSettings(gap_days=3), horizon_days=7)


def test_calendar_holes_are_handled() -> None:
    # Labels missing for two weeks in the middle (an outage): the cuts move around the hole.
    dates = days(date(2024, 1, 1), 30) + days(date(2024, 2, 15), 30)
    split = split_by_time(frame_for(dates), SplitSettings(), horizon_days=7)
    assert_time_ordered(split, 7)


def test_too_few_dates_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot hold three sets"):
        split_by_time(frame_for(days(date(2024, 1, 1), 15)), SplitSettings(), horizon_days=7)


def test_fractions_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        SplitSettings(train_fraction=0.7, validation_fraction=0.2, test_fraction=0.2)


def test_split_summary_has_dates_rows_and_positive_rates() -> None:
    frame = frame_for(days(date(2024, 1, 1), 60))
    split = split_by_time(frame, SplitSettings(), horizon_days=7)
    flat = split.flat()
    for name in ("train", "validation", "test"):
        part = split.sets()[name]
        assert flat[f"split.{name}.rows"] == len(part)
        assert flat[f"split.{name}.positive_rate"] == pytest.approx(part["churn"].mean())
        assert flat[f"split.{name}.start"] == part["event_date"].min().date().isoformat()
