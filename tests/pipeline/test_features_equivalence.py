"""One feature spec, two compilations: the Spark job's table equals the numpy frame, column by column."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from tests.utils.features import assert_same_features
from wikichurn.core.churn import FEATURE_COLUMNS, KEY_COLUMNS, label_columns
from wikichurn.core.columnar import domain_frame
from wikichurn.core.featurespec import table_columns
from wikichurn.core.settings import ChurnSettings
from wikichurn.pipeline.lakehouse.features import build_churn_features, domain_metadata
from wikichurn.pipeline.lakehouse.schemas import GOLD_DAILY_SCHEMA

START = date(2024, 1, 1)
CODES = ["en", "en.m", "de.m.s", "commons.m", "fr.d", "zh-min-nan", "ja.zero.q", "xx.voy", "meta.m.m", "a.b.c.d"]


def random_lake(seed: int, days: int = 70, codes: list[str] = CODES) -> tuple[list[tuple], dict[date, int]]:
    """Gold rows for a few domains with zeros, gaps, late starts, collapses and deaths."""
    rng = np.random.default_rng(seed)
    rows = []
    for code in codes:
        level = float(rng.choice([3, 40, 5_000, 2_000_000]))
        first = int(rng.integers(0, 20))
        last = int(rng.integers(days - 15, days + 1))  # some domains stop before the lake ends
        for t in range(first, last):
            views = int(rng.poisson(level * rng.lognormal(0, 0.3)))
            if rng.random() < 0.08:
                views = 0  # absent that day
            if rng.random() < 0.05:
                views = int(views * 0.1)  # a collapse
            if views > 0:
                rows.append((code, views, int(rng.integers(1, 25)), START + timedelta(days=t)))
    hours = {START + timedelta(days=t): 24 for t in range(days)}
    for t in rng.choice(days, size=6, replace=False):
        day = START + timedelta(days=int(t))
        if rng.random() < 0.5:
            del hours[day]  # no file at all that day
        else:
            hours[day] = int(rng.integers(10, 24))
    hours.setdefault(START + timedelta(days=days - 1), 24)  # the lake's last day has files
    return rows, hours


@pytest.mark.parametrize(
    ("seed", "policy"), [(1, "strict"), (2, "strict"), (3, "ignore"), (4, "rescale"), (5, "rescale")]
)
def test_spark_features_equal_numpy_features(spark: SparkSession, seed: int, policy: str) -> None:
    churn = ChurnSettings(incomplete_policy=policy)
    rows, hours = random_lake(seed)
    gold = spark.createDataFrame(rows, GOLD_DAILY_SCHEMA)
    day_hours = spark.createDataFrame(list(hours.items()), "event_date date, day_hours int")
    got = build_churn_features(gold, day_hours, domain_metadata(spark, CODES), churn).toPandas()

    end = max(hours)
    expected = []
    for code in CODES:
        views = {d: v for c, v, _h, d in rows if c == code}
        expected.append(domain_frame(views, churn, domain_code=code, end_date=end, day_hours=hours))
    want = pd.concat(expected, ignore_index=True)

    columns = [*KEY_COLUMNS, *(c for c in FEATURE_COLUMNS if c not in KEY_COLUMNS), *label_columns(7)]
    assert list(got.columns) == columns
    assert len(got) == len(want) > 500
    assert got["label_available"].sum() > 100 and got["churn"].sum() > 5  # a test with teeth
    assert_same_features(got, want, columns)


def _both(spark: SparkSession, rows: list[tuple], hours: dict[date, int], churn: ChurnSettings, codes: list[str]):
    gold = spark.createDataFrame(rows, GOLD_DAILY_SCHEMA)
    day_hours = spark.createDataFrame(list(hours.items()), "event_date date, day_hours int")
    got = build_churn_features(gold, day_hours, domain_metadata(spark, codes), churn).toPandas()
    end = max(hours)
    frames = [
        domain_frame(
            {d: v for c, v, _h, d in rows if c == code}, churn, domain_code=code, end_date=end, day_hours=hours
        )
        for code in codes
    ]
    return got, pd.concat([f for f in frames if len(f)], ignore_index=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    window=st.integers(1, 9),
    horizon=st.integers(1, 12),
    factor=st.sampled_from([0.1, 0.3, 0.5, 0.9]),
    policy=st.sampled_from(["strict", "rescale", "ignore"]),
    days=st.integers(21, 60),  # random_lake needs a few weeks
)
def test_both_compilations_agree_for_any_churn_definition(
    spark: SparkSession, seed: int, window: int, horizon: int, factor: float, policy: str, days: int
) -> None:
    """Any window, horizon, factor and policy: same column names (they follow the settings), same values."""
    churn = ChurnSettings(window_days=window, horizon_days=horizon, factor=factor, incomplete_policy=policy)
    codes = CODES[:4]
    rows, hours = random_lake(seed, days=days, codes=codes)
    if not rows:
        return
    got, want = _both(spark, rows, hours, churn, codes)
    columns = list(table_columns(churn))
    assert list(got.columns) == columns and f"avg_views_past_{window}d" in columns
    assert f"views_plus_{horizon}" in columns and f"views_plus_{horizon + 1}" not in columns
    assert_same_features(got, want, columns)
