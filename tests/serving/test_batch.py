"""Batch scoring on a real lake and a real registry: the table equals ``POST /score``, runs are incremental."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from fastapi.testclient import TestClient
from pyspark.sql import SparkSession

from tests.fixtures.scored_lake import LAKE_MODEL, ScoredLake
from tests.utils.contract import assert_matches_contract
from tests.utils.serving import api_score_rows, mlflow_pointed_at
from wikichurn.core.churn import KEY_COLUMNS, feature_columns
from wikichurn.core.settings import Settings
from wikichurn.core.tables import GOLD_FEATURES, GOLD_SCORES, SCORE_COLUMNS, SCORES_SCHEMA, TOP_REASONS, reason_columns
from wikichurn.pipeline.lakehouse.features import export_snapshot
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.serving.batch import (
    format_value,
    load_production_model,
    run_scoring,
    score_features,
    score_if_production,
)
from wikichurn.serving.config import ServingSettings
from wikichurn.serving.main import create_app

pytestmark = pytest.mark.slow


def _scores(settings: Settings) -> pd.DataFrame:
    return DeltaTable(f"{settings.lake_uri}/{GOLD_SCORES}").to_pandas()


def test_first_run_scores_every_complete_day_once(scored_lake: ScoredLake) -> None:
    scores = _scores(scored_lake.settings)
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert_matches_contract(f"{scored_lake.settings.lake_uri}/{GOLD_SCORES}", SCORES_SCHEMA)
    features = DeltaTable(f"{scored_lake.settings.lake_uri}/{GOLD_FEATURES}").to_pandas()
    complete = features[features["day_hours_available"] >= 24]
    assert len(scores) == len(complete) == scored_lake.scoring.rows > 0
    assert not scores.duplicated(["domain_code", "event_date", "model_version"]).any()
    assert set(scores["model_version"]) == {scored_lake.trained.promotion.version}
    assert set(scores["model_name"]) == {LAKE_MODEL}
    assert (scores["churn"] == (scores["risk_score"] >= scores["threshold"])).all()
    assert scores[reason_columns(1)[0]].notna().all()


def test_table_equals_the_api_for_the_same_domain_and_day(
    scored_lake: ScoredLake, spark: SparkSession, tmp_path: Path
) -> None:
    settings = scored_lake.settings
    snapshot = export_snapshot(spark, settings, tmp_path / "snapshot.parquet")
    serving = ServingSettings(
        model_name=LAKE_MODEL, snapshot_path=str(snapshot.path), model_cache_dir=str(tmp_path / "models")
    )
    scores = _scores(settings)
    day = scores[scores["event_date"] == pd.Timestamp(snapshot.as_of).date()].set_index("domain_code")
    assert len(day) == snapshot.domains > 0
    # The app loads the model through MLflow's process-wide URI: point it at this lake's registry.
    with mlflow_pointed_at(scored_lake.server.url), TestClient(create_app(serving, churn=settings.churn)) as client:
        body = {"instances": [{"domain_code": d} for d in day.index], "explain": True}
        results = client.post("/score", json=body).json()["results"]
    for result in results:
        row = day.loc[result["domain_code"]]
        assert row["risk_score"] == result["risk_score"]  # exactly: same rows, same code, same booster
        assert bool(row["churn"]) == result["churn"]
        assert row["threshold"] == result["threshold"]
        assert row["model_version"] == result["model_version"]
        for k, item in enumerate(result["explanation"]["contributions"][:TOP_REASONS], start=1):
            feature, value, contribution = reason_columns(k)
            assert (row[feature], row[value], row[contribution]) == (
                item["feature"],
                format_value(item["value"]),
                item["contribution"],
            )


def test_second_run_writes_nothing(scored_lake: ScoredLake, spark: SparkSession) -> None:
    path = f"{scored_lake.settings.lake_uri}/{GOLD_SCORES}"
    before = DeltaTable(path).version()
    again = run_scoring(spark, scored_lake.settings)
    assert again.rows == 0 and again.days == []
    assert DeltaTable(path).version() == before
    # The pipeline's hook is the same job: nothing new either.
    hooked = score_if_production(spark, scored_lake.settings)
    assert hooked is not None and hooked.rows == 0


def test_only_unscored_days_are_scored(scored_lake: ScoredLake, spark: SparkSession) -> None:
    settings = scored_lake.settings
    before = _scores(settings).sort_values(["domain_code", "event_date"]).reset_index(drop=True)
    last = max(before["event_date"])
    Lake(spark, settings).delete_where(GOLD_SCORES, f"event_date = DATE'{last.isoformat()}'")
    result = run_scoring(spark, settings)
    assert result.days == [last]
    assert result.rows == int((before["event_date"] == last).sum())
    after = _scores(settings).sort_values(["domain_code", "event_date"]).reset_index(drop=True)
    same = [c for c in SCORE_COLUMNS if c != "scored_at"]
    pd.testing.assert_frame_equal(after[same], before[same])


def test_a_backfill_over_the_message_limit_is_written_in_commits_of_whole_days(
    scored_lake: ScoredLake, spark: SparkSession
) -> None:
    """Scores over ``max_write_bytes`` go in several commits, each of whole days, with the same rows."""
    settings = scored_lake.settings
    before = _scores(settings).sort_values(["domain_code", "event_date"]).reset_index(drop=True)
    last3 = sorted(set(before["event_date"]))[-3:]
    lake = Lake(spark, settings)
    lake.delete_where(GOLD_SCORES, f"event_date >= DATE'{last3[0].isoformat()}'")
    path = f"{settings.lake_uri}/{GOLD_SCORES}"
    version = DeltaTable(path).version()
    result = run_scoring(spark, settings, max_write_bytes=1)  # every day is over the limit: a commit each
    assert result.days == last3
    assert DeltaTable(path).version() == version + 3
    after = _scores(settings).sort_values(["domain_code", "event_date"]).reset_index(drop=True)
    same = [c for c in SCORE_COLUMNS if c != "scored_at"]
    pd.testing.assert_frame_equal(after[same], before[same])
    written = DeltaTable(path).history(3)
    assert all(entry["operation"] == "MERGE" for entry in written)


def _complete_features(settings: Settings, model_features: list[str]) -> pa.Table:
    """The rows ``run_scoring`` scores, read with the independent ``deltalake`` reader."""
    table = DeltaTable(f"{settings.lake_uri}/{GOLD_FEATURES}").to_pyarrow_table()
    complete = table.filter(pc.greater_equal(table.column("day_hours_available"), settings.churn.min_hours_complete))
    return complete.select([*KEY_COLUMNS, *(c for c in model_features if c not in KEY_COLUMNS)])


def test_every_row_equals_score_instances_on_its_day(scored_lake: ScoredLake, tmp_path: Path) -> None:
    # Every day of the table, not only the snapshot's: each row against the API's scorer on that
    # day's rows, served from a snapshot file as the service serves it.
    settings = scored_lake.settings
    model = load_production_model(settings)
    expected = api_score_rows(model, _complete_features(settings, list(feature_columns(model.churn))), tmp_path)
    rows = DeltaTable(f"{settings.lake_uri}/{GOLD_SCORES}").to_pyarrow_table().to_pylist()
    assert len(rows) == len(expected) > 1000
    for row in rows:
        row["scored_at"] = None  # the run's stamp
        assert row == expected[(row["domain_code"], row["event_date"])]


def test_booster_calls_per_chunk_never_per_row(scored_lake: ScoredLake, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_production_model(scored_lake.settings)
    features = _complete_features(scored_lake.settings, model.scorer.features)
    calls: list[dict[str, Any]] = []
    predict = model.scorer.booster.predict

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return predict(*args, **kwargs)

    monkeypatch.setattr(model.scorer.booster, "predict", counting)
    scores = score_features(model, features, chunk_rows=500)
    assert scores.num_rows == features.num_rows > 1000
    chunks = -(-features.num_rows // 500)
    # Per chunk: one call for the scores, one for the contributions.
    assert len(calls) == 2 * chunks
    assert sum(1 for kwargs in calls if kwargs.get("pred_contrib")) == chunks


def test_no_tracking_uri_skips_scoring(spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert score_if_production(spark, Settings(lake_uri=str(tmp_path / "lake"))) is None


def test_score_command_without_a_model_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from wikichurn.cli.app import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WIKICHURN_LAKE_URI", str(tmp_path / "lake"))
    result = CliRunner().invoke(app, ["score"])
    assert result.exit_code == 1
    assert "no production model yet: run `wikichurn train`" in result.output


def test_an_unreachable_registry_skips_scoring_at_once(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A pipeline run whose MLflow server is down must not sit in MLflow's HTTP retries for minutes.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening: refused
        monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
        with caplog.at_level("WARNING", logger="wikichurn.serving.batch"):
            assert score_if_production(spark, Settings(lake_uri=str(tmp_path / "lake"))) is None
    assert f"the MLflow server at {dead} does not answer" in caplog.text
