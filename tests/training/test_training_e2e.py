"""End to end on simulated data: pipeline -> train (3 trials) -> evaluate -> register, on a real
MLflow tracking server; then the registered model, loaded back three ways, scores identically."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient
from pyspark.sql import SparkSession
from sklearn.metrics import average_precision_score

from wikichurn.core.churn import FEATURE_COLUMNS, LABEL_ONLY_COLUMNS, SEED_FEATURES
from wikichurn.core.settings import Settings
from wikichurn.training.data import load_feature_data
from wikichurn.training.main import MainResult
from wikichurn.training.model import ChurnScorer, as_categorical, download_model, read_meta
from wikichurn.training.server import TrackingServer
from wikichurn.training.tracking import (
    BUNDLE_DIR,
    HOLDOUT_DIR,
    ROLE_HEURISTIC,
    ROLE_SEED,
    ROLE_TUNED,
    TAG_MODEL_URI,
    TAG_ROLE,
    TAG_TRAINING_ID,
    download_run_artifacts,
)
from wikichurn.training.tuning import fit_rounds

from .conftest import E2E_EXPERIMENT, E2E_MODEL

FIGURES = {
    "roc_curve.png",
    "pr_curve.png",
    "confusion_matrix.png",
    "score_histogram.png",
    "calibration.png",
    "shap_importance.png",
    "shap_beeswarm.png",
    "gain_importance.png",
}


@pytest.fixture(scope="module")
def client(trained: MainResult, mlflow_server: TrackingServer) -> MlflowClient:
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    return MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture(scope="module")
def test_rows(trained: MainResult, client: MlflowClient, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("test_rows")
    return pd.read_parquet(download_run_artifacts(trained.train.run_id, "data/test.parquet", folder))


def test_runs_roles_and_nested_trials(trained: MainResult, client: MlflowClient) -> None:
    experiment = client.get_experiment_by_name(E2E_EXPERIMENT)
    training_id = trained.train.run_id
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{TAG_TRAINING_ID}` = '{training_id}'", max_results=100
    )
    roles = sorted(r.data.tags[TAG_ROLE] for r in runs)
    assert roles == sorted([ROLE_TUNED, ROLE_SEED, ROLE_HEURISTIC, "trial", "trial", "trial"])
    trials = [r for r in runs if r.data.tags[TAG_ROLE] == "trial"]
    assert all(r.data.tags["mlflow.parentRunId"] == training_id for r in trials)
    assert all("val_pr_auc" in r.data.metrics and "lgbm.learning_rate" in r.data.params for r in trials)
    assert {r.info.status for r in runs} == {"FINISHED"}
    # One tag filter finds each role for the UI comparison.
    tuned = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{TAG_ROLE}` = '{ROLE_TUNED}'", max_results=10
    )
    assert [r.info.run_id for r in tuned] == [training_id]


def test_split_is_logged_and_gapped(trained: MainResult, client: MlflowClient) -> None:
    run = client.get_run(trained.train.run_id)
    params, metrics = run.data.params, run.data.metrics
    dates = {
        name: (params[f"split.{name}.start"], params[f"split.{name}.end"]) for name in ("train", "validation", "test")
    }
    assert dates["train"][1] < dates["validation"][0] < dates["validation"][1] < dates["test"][0]
    gap = (pd.Timestamp(dates["validation"][0]) - pd.Timestamp(dates["train"][1])).days
    assert gap > 7 and int(params["split.gap_days"]) >= 7
    for name in ("train", "validation", "test"):
        assert metrics[f"split_{name}_rows"] > 0
        assert 0 < metrics[f"split_{name}_positive_rate"] < 1
    # Baselines share the exact split.
    for rid in trained.train.baseline_run_ids.values():
        other = client.get_run(rid).data.params
        assert all(other[f"split.{n}.start"] == dates[n][0] for n in dates)


def test_metrics_of_every_role(trained: MainResult, client: MlflowClient) -> None:
    tuned = client.get_run(trained.train.run_id).data.metrics
    for key in ("test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier", "test_threshold"):
        assert key in tuned
    for key in ("tn", "fp", "fn", "tp", "precision_churn", "recall_churn", "f1_churn", "f1_no_churn"):
        assert f"test_{key}" in tuned and f"val_{key}" in tuned
    assert tuned["test_tn"] + tuned["test_fp"] + tuned["test_fn"] + tuned["test_tp"] == tuned["split_test_rows"]
    for role, rid in trained.train.baseline_run_ids.items():
        metrics = client.get_run(rid).data.metrics
        assert {"val_pr_auc", "test_pr_auc", "test_roc_auc", "test_threshold"} <= set(metrics)
        assert tuned[f"{role}_test_pr_auc"] == pytest.approx(metrics["test_pr_auc"])
    assert trained.evaluation.test[ROLE_TUNED]["pr_auc"] == pytest.approx(tuned["test_pr_auc"])


def test_artifacts(trained: MainResult, client: MlflowClient, tmp_path: Path) -> None:
    run_id = trained.train.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"bundle", "data", "figures", "explain", "tuning", "model_card.md", "model_meta.json"} <= top
    figures = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
    assert figures == FIGURES
    png = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="figures/roc_curve.png", dst_path=str(tmp_path)
        )
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    card = mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
    for section in ("## Data window", "## Features", "## Test metrics vs baselines", "## Known limits"):
        assert section in card
    assert "seed-feature LightGBM" in card and "heuristic" in card
    bundle = {Path(a.path).name for a in client.list_artifacts(run_id, BUNDLE_DIR)}
    assert bundle == {"booster.txt", "model_meta.json"}


def test_model_meta_format(trained: MainResult, tmp_path: Path) -> None:
    meta = read_meta(download_model(trained.evaluation.model_uri, tmp_path))
    assert meta["format_version"] == 1 and meta["kind"] == "lightgbm"
    assert meta["features"] == list(FEATURE_COLUMNS)
    assert not set(meta["features"]) & set(LABEL_ONLY_COLUMNS)  # the leak check, on the shipped model
    assert set(meta["categories"]) == {"domain_code", "language", "project_family", "access"}
    assert meta["categories"]["access"] == sorted(meta["categories"]["access"])
    assert 0 < meta["threshold"] < 1
    assert meta["metrics"]["test"]["pr_auc"] == pytest.approx(trained.evaluation.test[ROLE_TUNED]["pr_auc"])
    assert set(meta["baselines"]) == {ROLE_SEED, ROLE_HEURISTIC}
    assert meta["lineage"]["feature_table"] == "gold_churn_features"
    assert meta["run_id"] == trained.train.run_id


def test_registered_version_alias_and_lineage(trained: MainResult, client: MlflowClient, churn_lake: Settings) -> None:
    promotion = trained.promotion
    # The tuned model beats the seed-feature baseline on this (deterministic) data, and the
    # registry had no production version: it is promoted.
    assert promotion.promoted and promotion.alias == "production", promotion.reason
    assert promotion.candidate_score > promotion.baseline_score
    version = client.get_model_version_by_alias(E2E_MODEL, "production")
    assert version.version == promotion.version
    assert version.run_id == trained.train.run_id
    tags = version.tags
    table_version = DeltaTable(f"{churn_lake.lake_uri}/gold_churn_features").version()
    assert tags["wikichurn.feature_table_version"] == str(table_version)
    assert tags["wikichurn.run_id"] == trained.train.run_id
    assert tags["wikichurn.promotion"] == "production"
    split = trained.train.split
    assert tags["wikichurn.split.test"] == f"{split['test']['start']}..{split['test']['end']}"
    assert "wikichurn.git_commit" in tags
    assert client.get_run(trained.train.run_id).data.tags[TAG_MODEL_URI] == trained.evaluation.model_uri


def test_pyfunc_round_trip_matches_booster_and_scorer(
    trained: MainResult, test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    uri = f"models:/{E2E_MODEL}@production"
    pyfunc = mlflow.pyfunc.load_model(uri)
    features = test_rows[list(FEATURE_COLUMNS)]
    served = pyfunc.predict(features)
    assert list(served.columns) == ["risk_score", "churn"]

    folder = download_model(uri, tmp_path / "model")
    scorer = ChurnScorer.from_dir(folder)
    direct = scorer.predict(features).reset_index(drop=True)
    assert np.array_equal(served["risk_score"].to_numpy(), direct["risk_score"].to_numpy())
    assert np.array_equal(served["churn"].to_numpy(), direct["churn"].to_numpy())

    booster = lgb.Booster(model_file=str(next(folder.rglob("booster.txt"))))
    raw = booster.predict(as_categorical(features, scorer.categories))
    assert np.array_equal(raw, direct["risk_score"].to_numpy())
    assert np.array_equal(scorer.predict_proba(scorer.encode(features)), raw)  # the numpy fast path
    assert (served["churn"] == (served["risk_score"] >= scorer.threshold).astype(int)).all()
    assert served["risk_score"].between(0, 1).all()
    # The registered model was refit on every labelled row (test rows included), so the logged
    # test metric comes from the holdout model: re-computed from it, it is the logged one.
    holdout = ChurnScorer.from_dir(download_run_artifacts(trained.train.run_id, HOLDOUT_DIR, tmp_path / "holdout"))
    assert average_precision_score(test_rows["churn"], holdout.predict_proba(test_rows)) == pytest.approx(
        trained.evaluation.test[ROLE_TUNED]["pr_auc"]
    )
    assert not np.array_equal(holdout.predict_proba(test_rows), raw)


def test_registered_model_refit_on_every_labelled_row(
    trained: MainResult, churn_lake: Settings, spark: SparkSession, client: MlflowClient, tmp_path: Path
) -> None:
    data = load_feature_data(churn_lake, "gold_churn_features", spark)
    meta = read_meta(download_model(trained.evaluation.model_uri, tmp_path / "model"))
    claimed = meta["trained_rows"]
    frame = data.frame
    assert claimed["rows"] == len(frame) and claimed["positives"] == int(frame["churn"].sum())
    assert claimed["start"] == str(frame["event_date"].min().date())
    assert claimed["end"] == str(frame["event_date"].max().date())  # the latest label
    assert claimed["end"] >= trained.train.split["test"]["end"]
    # Refit on exactly those rows with the recorded parameters and rounds: the same trees.
    scorer = ChurnScorer.from_dir(download_model(trained.evaluation.model_uri, tmp_path / "again"))
    params = {**meta["params"], "verbosity": -1}
    again = fit_rounds(frame, meta["features"], meta["categories"], params, meta["best_iteration"])
    x = as_categorical(frame[meta["features"]], scorer.categories)
    assert np.allclose(again.predict(x), scorer.booster.predict(x), rtol=0, atol=1e-12)
    # The holdout model saw only rows before the test set and its gap; tags say so.
    holdout = meta["holdout"]["rows"]
    assert holdout["end"] < trained.train.split["test"]["start"]
    tags = client.get_run(trained.train.run_id).data.tags
    assert tags["wikichurn.trained_rows"] == f"{claimed['start']}..{claimed['end']}"
    assert "walk-forward" in tags["wikichurn.metrics_protocol"]
    version = client.get_model_version_by_alias(E2E_MODEL, "production")
    assert version.tags["wikichurn.trained_rows_count"] == str(claimed["rows"])


def test_pyfunc_signature_and_extra_columns(trained: MainResult, test_rows: pd.DataFrame) -> None:
    model = mlflow.pyfunc.load_model(trained.evaluation.model_uri)
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == list(FEATURE_COLUMNS)
    outputs = model.metadata.get_output_schema().input_names()
    assert outputs == ["risk_score", "churn"]
    # Key and label columns next to the features are ignored, not used.
    with_extras = test_rows.head(10)
    assert np.array_equal(
        model.predict(with_extras)["risk_score"].to_numpy(),
        model.predict(with_extras[list(FEATURE_COLUMNS)])["risk_score"].to_numpy(),
    )


def test_seed_baseline_uses_only_seed_features(trained: MainResult, tmp_path: Path) -> None:
    rid = trained.train.baseline_run_ids[ROLE_SEED]
    meta = json.loads((download_run_artifacts(rid, BUNDLE_DIR, tmp_path) / "model_meta.json").read_text())
    assert meta["features"] == list(SEED_FEATURES)
