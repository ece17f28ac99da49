"""Labels on hand-built series, leakage (truncation) and the label-only column contract."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from wikichurn.core.churn import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    LABEL_ONLY_COLUMNS,
    SEED_FEATURES,
    feature_columns,
    label_columns,
    parse_domain_code,
    seed_features,
)
from wikichurn.core.columnar import History, compute_columns, domain_frame, last_day_windows
from wikichurn.core.settings import ChurnSettings
from wikichurn.pipeline.lakehouse.features import build_churn_features, domain_metadata
from wikichurn.pipeline.lakehouse.schemas import GOLD_DAILY_SCHEMA

D0 = date(2024, 3, 1)
STRICT = ChurnSettings()


def series(values: list[int]) -> dict[date, int]:
    return {D0 + timedelta(days=i): v for i, v in enumerate(values)}


def labels(values: list[int], churn: ChurnSettings = STRICT, **kwargs: object) -> pd.DataFrame:
    frame = domain_frame(series(values), churn, domain_code="xx", **kwargs)  # type: ignore[arg-type]
    return frame.set_index(pd.RangeIndex(len(frame)))


def test_clean_collapse_is_churn_for_the_days_that_see_it() -> None:
    frame = labels([100] * 12 + [10] * 10)
    # day 12 collapses: days 5..11 have it within their 7-day horizon, day 4 does not
    assert frame.loc[4, "churn"] == 0 and frame.loc[4, "label_available"]
    assert all(frame.loc[t, "churn"] == 1 and frame.loc[t, "label_available"] for t in range(5, 12))
    assert frame.loc[11, "threshold"] == pytest.approx(30.0)
    assert frame.loc[11, "min_views_future"] == 10


def test_collapse_on_day_eight_does_not_count() -> None:
    frame = labels([100] * 12 + [0] * 8)
    t = 12 - 8  # the collapse starts on day t+8
    assert frame.loc[t, "label_available"] and frame.loc[t, "churn"] == 0
    assert frame.loc[t + 1, "churn"] == 1


def test_drop_to_exactly_thirty_percent_is_churn_and_above_is_not() -> None:
    assert labels([100] * 5 + [30] * 10).loc[4, "churn"] == 1
    assert labels([100] * 5 + [31] * 10).loc[4, "churn"] == 0


def test_missing_day_inside_horizon_or_window_makes_the_label_unavailable() -> None:
    values = [100] * 20
    hours = {D0 + timedelta(days=i): 24 for i in range(20)}
    hours[D0 + timedelta(days=12)] = 20  # four hourly files missing
    strict = labels(values, day_hours=hours)
    unavailable = {t for t in range(20) if not strict.loc[t, "label_available"]}
    # t=5..11 see day 12 in their horizon, t=13..15 in their 3-day window; 0..2 lack a past, 13.. lack a future
    assert unavailable == {0, 1, 2, *range(5, 12), 12 + 1, 12 + 2, 12 + 3, *range(13, 20)}
    lenient = labels(values, ChurnSettings(incomplete_policy="ignore"), day_hours=hours)
    assert lenient.loc[8, "label_available"]


def test_rescale_policy_scales_partial_days_and_keeps_their_labels() -> None:
    values = [100] * 20
    hours = {D0 + timedelta(days=i): 24 for i in range(20)}
    hours[D0 + timedelta(days=12)] = 20  # 20 of 24 files: 100 observed views mean 120 over the day
    hours[D0 + timedelta(days=5)] = 10  # too sparse to rescale: still a gap
    frame = labels(values, ChurnSettings(incomplete_policy="rescale", min_hours_rescale=18), day_hours=hours)
    assert frame.loc[12, "count_views"] == 100  # observed, as in gold
    assert frame.loc[13, "views_lag_1"] == pytest.approx(120.0)
    assert frame.loc[11, "views_plus_1"] == pytest.approx(120.0)
    assert frame.loc[9, "label_available"]  # day 12 in its horizon is fine now
    assert not frame.loc[3, "label_available"]  # day 5 is still a gap
    assert frame["churn"].fillna(0).eq(0).all()  # a partial day is not a drop


def test_domain_that_disappears_churns_then_has_no_label() -> None:
    frame = labels([50] * 10 + [0] * 10)
    assert frame.loc[9, "churn"] == 1 and frame.loc[9, "label_available"]
    assert not frame.loc[14, "label_available"]  # a dead domain cannot collapse again


def test_first_days_of_a_domain_have_no_label() -> None:
    frame = labels([0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5])
    assert frame.loc[0, "event_date"] == D0 + timedelta(days=2)  # calendar starts at first views
    assert [bool(frame.loc[t, "label_available"]) for t in range(4)] == [False, False, False, True]


def test_features_never_read_past_as_of() -> None:
    values = [100] * 15 + [1] * 5
    as_of = D0 + timedelta(days=14)
    full = domain_frame(series(values), STRICT, domain_code="xx").set_index("event_date").loc[as_of]
    truncated = domain_frame(series(values[:15]), STRICT, domain_code="xx").set_index("event_date").loc[as_of]
    features = [c for c in FEATURE_COLUMNS if c != "event_date"]
    pd.testing.assert_series_equal(full[features], truncated[features])
    assert full["count_views"] == 100


@pytest.mark.parametrize("days", [4, 5, 29, 30, 90])
def test_last_day_rows_equal_the_last_row_of_the_frame(days: int) -> None:
    """The serving path (only the days the features read) gives the table's last row."""
    values = [(7 * i) % 23 * 10 for i in range(days)]
    values[0] = 5
    frame = domain_frame(series(values), STRICT, domain_code="de.m.s")
    got = compute_columns(last_day_windows([History("de.m.s", D0, np.array(values))], STRICT), STRICT, FEATURE_COLUMNS)
    last = frame.iloc[-1]
    for name in FEATURE_COLUMNS:
        want, value = last[name], got[name][0]
        if isinstance(want, str):
            assert value == want, name
        else:
            assert np.isclose(float(value), float(want), rtol=1e-12, equal_nan=True), name
    assert got["event_date"][0] == np.datetime64(frame["event_date"].iloc[-1])


def test_label_columns_follow_the_horizon_and_names_the_window() -> None:
    assert label_columns(14)[-4:] == ("views_plus_14", "min_views_future", "churn", "label_available")
    assert "avg_views_past_5d" in feature_columns(ChurnSettings(window_days=5))
    assert "log_avg_views_past_5d" in feature_columns(ChurnSettings(window_days=5))
    assert "avg_views_past_5d" in seed_features(ChurnSettings(window_days=5))


def test_spark_features_of_day_t_ignore_everything_after_t(spark: SparkSession) -> None:
    rows = []
    for code, level in (("en", 1000), ("de.m", 40), ("fr.d", 3)):
        for i in range(40):
            views = level * (1 + (i % 7)) if i < 30 else level // 10
            rows.append((code, views, 24, D0 + timedelta(days=i)))
    t = D0 + timedelta(days=25)

    def build(gold_rows: list[tuple]) -> pd.DataFrame:
        gold = spark.createDataFrame(gold_rows, GOLD_DAILY_SCHEMA)
        dates = sorted({r[3] for r in gold_rows})
        day_hours = spark.createDataFrame([(d, 24) for d in dates], "event_date date, day_hours int")
        meta = domain_metadata(spark, ["en", "de.m", "fr.d"])
        frame = build_churn_features(gold, day_hours, meta, STRICT).toPandas()
        return frame[frame["event_date"] == t].set_index("domain_code").sort_index()

    full = build(rows)
    cut = build([r for r in rows if r[3] <= t])
    features = [c for c in FEATURE_COLUMNS if c != "domain_code"]
    pd.testing.assert_frame_equal(full[features], cut[features])
    assert full["label_available"].all() and not cut["label_available"].any()


def test_label_only_columns_never_reach_a_feature_list() -> None:
    assert set(LABEL_ONLY_COLUMNS) == set(label_columns(7))
    for features in (FEATURE_COLUMNS, SEED_FEATURES, CATEGORICAL_FEATURES):
        assert not set(features) & set(LABEL_ONLY_COLUMNS)
        assert not any(name.startswith(("views_plus_", "min_views_future")) for name in features)
    assert set(SEED_FEATURES) <= set(FEATURE_COLUMNS) and set(CATEGORICAL_FEATURES) <= set(FEATURE_COLUMNS)


@pytest.mark.parametrize(
    ("code", "language", "family", "access"),
    [
        ("en", "en", "wikipedia", "desktop"),
        ("en.m", "en", "wikipedia", "mobile"),
        ("de.m.s", "de", "wikisource", "mobile"),
        ("fr.d", "fr", "wiktionary", "desktop"),
        ("ja.zero", "ja", "wikipedia", "zero"),
        ("it.voy", "it", "wikivoyage", "desktop"),
        ("www.wd", "www", "wikidata", "desktop"),
        ("commons.m", "commons", "wikimedia", "desktop"),
        ("commons.m.m", "commons", "wikimedia", "mobile"),
        ("en.m.m", "en", "wikimedia", "mobile"),
        ("xx.unknown", "xx", "other", "desktop"),
    ],
)
def test_domain_codes_parse(code: str, language: str, family: str, access: str) -> None:
    info = parse_domain_code(code)
    assert (info.language, info.project_family, info.access) == (language, family, access)
