"""The real-data backtest end to end on a small real subset (slow): replay -> local HTTP mirror ->
ingest -> pipeline on Sail -> training at two monthly cut-offs -> scores of the next months,
logged as a parent run with one child per window."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from pyspark.sql import SparkSession

from wikichurn.sim.replay import replay
from wikichurn.training.backtest import known_at, lake_from_mirror, monthly_windows, run_backtest
from wikichurn.training.server import TrackingServer

from .conftest import training_settings

REAL = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "real"
# Small, noisy wikis: their collapses give both classes in every fold of this short period.
WIKIS = ["abwiktionary", "bhwiki", "biwiki", "biwiktionary", "be_x_oldwiki"]


@pytest.mark.slow
def test_backtest_on_a_small_real_subset(spark: SparkSession, mlflow_server: TrackingServer, tmp_path: Path) -> None:
    summary = replay(REAL, tmp_path / "mirror", start=date(2014, 10, 1), end=date(2015, 2, 28), wikis=WIKIS)
    settings, data = lake_from_mirror(tmp_path / "mirror", tmp_path, summary.start, summary.end, spark)
    frame = data.frame
    assert set(frame["domain_code"]) <= set(summary.codes) and len(frame) > 1000

    windows = monthly_windows(frame, 2)
    assert [w.name for w in windows] == ["2015-01", "2015-02"]
    known = known_at(frame, windows[0].cutoff, 7)
    # Only labels whose 7-day window ended before the cut-off are known.
    assert known["event_date"].max() < windows[0].cutoff - pd.Timedelta(days=7)

    cfg = training_settings(mlflow_server, experiment_name="backtest", tuning={"trials": 2})
    result = run_backtest(data, cfg, settings, windows=2, name="ci-backtest")
    assert [r["window"] for r in result.rows] == ["2015-01", "2015-02"]
    for row in result.rows:
        assert row["window_positives"] > 0 and row["train_rows"] < len(frame)
        for scorer in ("tuned", "seed", "heuristic"):
            assert 0 < row[f"{scorer}_pr_auc"] <= 1 and 0 < row[f"{scorer}_roc_auc"] <= 1
    assert result.rows[1]["train_rows"] > result.rows[0]["train_rows"]  # the later cut-off knows more

    client = MlflowClient(mlflow_server.url)
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED" and "mean_tuned_pr_auc" in parent.data.metrics
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.run_id}'"
    )
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["window-2015-01", "window-2015-02"]
    for child in children:
        assert {"window_tuned_pr_auc", "window_seed_pr_auc", "window_heuristic_pr_auc"} <= set(child.data.metrics)
        # Each window's registered model saw only rows known at its cut-off.
        cutoff = child.data.tags["wikichurn.window"].split("..")[0]
        assert child.data.tags["wikichurn.trained_rows"].split("..")[1] < cutoff
