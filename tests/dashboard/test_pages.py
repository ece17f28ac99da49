"""Every dashboard page with Streamlit's AppTest, on the small real lake and on an empty one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from deltalake import DeltaTable
from streamlit.testing.v1 import AppTest

import wikichurn.dashboard
from tests.fixtures.scored_lake import ScoredLake
from wikichurn.core.settings import Settings
from wikichurn.core.tables import GOLD_SCORES
from wikichurn.dashboard import data

APP = Path(wikichurn.dashboard.__file__).with_name("app.py")
PAGES = ("at_risk", "engagement", "data_quality", "model")

pytestmark = pytest.mark.slow


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    if page != "at_risk":
        at.switch_page(f"views/{page}.py")
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


# Dataframes are not widgets (no key in AppTest): tests find them by their order on the page,
# At risk: ranked table, reasons; Data quality: runs, missing hours; Model: versions, metrics.


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.info] + [m.value for m in at.success]
    parts += [m.value for m in at.warning] + [m.value for m in at.error] + [t.value for t in at.title]
    parts += [f"{m.label}: {m.value}" for m in at.metric] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


@pytest.fixture
def on_lake(scored_lake: ScoredLake, monkeypatch: pytest.MonkeyPatch) -> ScoredLake:
    monkeypatch.setenv("WIKICHURN_LAKE_URI", scored_lake.settings.lake_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scored_lake.server.url)
    st.cache_data.clear()
    return scored_lake


@pytest.fixture
def on_empty_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WIKICHURN_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    st.cache_data.clear()
    return tmp_path


def top_at_risk(lake: ScoredLake) -> pd.Series:
    scores = DeltaTable(f"{lake.settings.lake_uri}/{GOLD_SCORES}").to_pandas()
    scores = scores[scores["model_version"] == lake.trained.promotion.version]
    day = scores[scores["event_date"] == scores["event_date"].max()]
    return day.sort_values(["risk_score", "domain_code"], ascending=[False, True]).iloc[0]


def test_at_risk_ranks_the_table_of_scores(on_lake: ScoredLake) -> None:
    at = open_page("at_risk")
    top = top_at_risk(on_lake)
    assert f"`{top['domain_code']}` — risk **{top['risk_score']:.3f}**" in text_of(at)
    table = at.dataframe[0].value
    assert table.iloc[0]["domain_code"] == top["domain_code"]
    assert table["risk_score"].is_monotonic_decreasing
    assert at.selectbox(key="domain").value == top["domain_code"]
    assert len(at.dataframe[1].value) == 3
    assert len(at.get("vega_lite_chart")) == 3  # ranking, 90-day views, risk history


def test_filters_change_the_at_risk_table(on_lake: ScoredLake) -> None:
    at = open_page("at_risk")
    everything = at.dataframe[0].value
    at.multiselect(key="access").set_value(["mobile"]).run()
    mobile = at.dataframe[0].value
    assert 0 < len(mobile) < len(everything)
    assert set(mobile["access"]) == {"mobile"}
    at.multiselect(key="access").set_value([]).run()
    median = int(everything["count_views"].median())
    at.number_input(key="min_views").set_value(median).run()
    big = at.dataframe[0].value
    assert 0 < len(big) < len(everything) and (big["count_views"] >= median).all()
    at.number_input(key="min_views").set_value(10**12).run()
    assert "No domain passes these filters." in text_of(at)


def test_engagement_shows_the_eda_kpis(on_lake: ScoredLake) -> None:
    at = open_page("engagement")
    kpis = DeltaTable(f"{on_lake.settings.lake_uri}/{data.GOLD_KPIS_DAILY}").to_pandas()
    last = kpis[~kpis["incomplete"]].sort_values("event_date").iloc[-1]
    text = text_of(at)
    assert (
        f"DAU in views ({last['event_date']}): {data.compact_count(int(last['total_views']))}" in text
        and "Source: gold_kpis_daily" in "\n".join(c.value for c in at.caption)
    )
    assert len(at.get("vega_lite_chart")) >= 6
    assert len(at.dataframe[0].value) == 10


def test_engagement_computed_from_gold_matches_the_eda_table(on_lake: ScoredLake) -> None:
    class WithoutKpis(data.LakeReader):
        def read(self, table: str, columns: list[str] | None = None, filters: object = None) -> pd.DataFrame | None:
            return None if table.startswith("gold_kpis_") else super().read(table, columns, filters)

    computed, source = data.engagement_daily(WithoutKpis(on_lake.settings))
    stored, _ = data.engagement_daily(data.LakeReader(on_lake.settings))
    assert source.startswith("computed from gold_daily_projectviews")
    merged = stored.merge(computed, on="event_date", suffixes=("", "_sql"))
    assert len(merged) == len(computed) > 0
    for column in ("total_views", "active_domains", "hhi", "diversity", "dayofweek"):
        pd.testing.assert_series_equal(merged[column], merged[f"{column}_sql"], check_names=False, check_dtype=False)


def test_data_quality_shows_runs_and_conservation(on_lake: ScoredLake) -> None:
    at = open_page("data_quality")
    runs = at.dataframe[0].value
    reports = DeltaTable(f"{on_lake.settings.lake_uri}/{data.SILVER_DQ_REPORTS}").to_pandas()
    assert len(runs) == len(reports) and runs["conserved"].all()
    assert "Conservation holds" in text_of(at)
    assert len(at.get("vega_lite_chart")) >= 1  # the completeness calendar


def test_model_page_shows_versions_metrics_and_figures(on_lake: ScoredLake) -> None:
    at = open_page("model")
    version = on_lake.trained.promotion.version
    versions = at.dataframe[0].value
    assert "@production" in versions.loc[versions["version"] == version, "aliases"].iloc[0]
    metrics = at.dataframe[1].value.set_index("metric")
    assert metrics.loc["pr_auc", "test"] == pytest.approx(on_lake.trained.evaluation.test["tuned"]["pr_auc"])
    assert len(at.get("image")) >= 4  # ROC, PR, calibration, SHAP
    assert len(at.get("vega_lite_chart")) == 1  # flagged per day


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_what_to_run_on_an_empty_lake(on_empty_lake: Path, page: str) -> None:
    at = open_page(page)
    info = "\n".join(i.value for i in at.info)
    assert "run `wikichurn" in info.lower(), info


def test_reader_sees_no_tables_in_an_empty_lake(tmp_path: Path) -> None:
    reader = data.LakeReader(Settings(lake_uri=str(tmp_path)))
    assert reader.read(data.GOLD_DAILY) is None and reader.version(GOLD_SCORES) is None


def test_model_page_shows_the_latest_backtest_beside_test(on_lake: ScoredLake) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(on_lake.server.url)
    experiment = client.get_run(on_lake.trained.train.run_id).info.experiment_id
    run = client.create_run(experiment, run_name="backtest", tags={"wikichurn.role": "backtest"})
    client.log_metric(run.info.run_id, "mean_tuned_pr_auc", 0.4321)
    client.log_metric(run.info.run_id, "mean_tuned_roc_auc", 0.8765)
    client.set_terminated(run.info.run_id, "FINISHED")
    metrics = open_page("model").dataframe[1].value.set_index("metric")
    assert metrics.loc["pr_auc", "backtest"] == pytest.approx(0.4321)
    assert metrics.loc["roc_auc", "backtest"] == pytest.approx(0.8765)
    assert pd.isna(metrics.loc["brier", "backtest"])
