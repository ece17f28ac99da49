"""Reading the feature snapshot, encoding it for the model, and what the service does with a bad or mismatched one."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.utils.serving import AS_OF, CHURN, Registry, feature_frame, serving_settings, train_model, write_snapshot
from wikichurn.core.churn import FEATURE_COLUMNS, KEY_COLUMNS
from wikichurn.serving.main import create_app
from wikichurn.serving.registry import ModelRef, build_loaded_model
from wikichurn.serving.schemas import ScoreInstance
from wikichurn.serving.scoring import ServingState, score_instances
from wikichurn.serving.snapshot import load_snapshot
from wikichurn.training.model import ChurnScorer


def test_load_snapshot_rows_and_as_of(tmp_path: Path, histories: dict[str, dict[date, int]]) -> None:
    path = tmp_path / "snap.parquet"
    frame = write_snapshot(path, dict(list(histories.items())[:4]))
    snapshot = load_snapshot(path)
    assert snapshot.as_of == AS_OF and len(snapshot) == 4
    row = snapshot.rows[frame["domain_code"].iloc[0]]
    assert row.as_of == AS_OF
    assert set(row.features) == set(KEY_COLUMNS[:1]) | set(FEATURE_COLUMNS)
    assert all(not (isinstance(v, float) and v != v) for v in row.features.values())  # NaN became None


def test_rows_win_over_a_stale_sidecar(tmp_path: Path, histories: dict[str, dict[date, int]]) -> None:
    path = tmp_path / "snap.parquet"
    write_snapshot(path, dict(list(histories.items())[:2]))
    path.with_name(path.name + ".json").write_text(json.dumps({"as_of": "2020-01-01"}))
    assert load_snapshot(path).as_of == AS_OF


def test_duplicate_domains_are_refused(tmp_path: Path, histories: dict[str, dict[date, int]]) -> None:
    path = tmp_path / "snap.parquet"
    frame = write_snapshot(path, dict(list(histories.items())[:2]))
    pd.concat([frame, frame.head(1)]).to_parquet(path, index=False)
    with pytest.raises(ValueError, match="more than once"):
        load_snapshot(path)


def test_snapshot_without_a_model_feature_is_not_served(
    registry: Registry, tmp_path: Path, histories: dict[str, dict[date, int]]
) -> None:
    path = tmp_path / "snap.parquet"
    frame = write_snapshot(path, dict(list(histories.items())[:2]))
    frame.drop(columns=["trend_slope_7d"]).to_parquet(path, index=False)
    with TestClient(create_app(serving_settings(path, tmp_path / "cache"), churn=CHURN)) as client:
        info = client.get("/model").json()
        assert info["snapshot"] is None and "trend_slope_7d" in info["snapshot_error"]
        result = client.post("/score", json={"instances": [{"domain_code": frame["domain_code"].iloc[0]}]}).json()
        assert result["results"][0]["error"]["code"] == "snapshot_unavailable"


def test_unreadable_new_snapshot_keeps_the_previous_one(
    registry: Registry, tmp_path: Path, histories: dict[str, dict[date, int]]
) -> None:
    path = tmp_path / "snap.parquet"
    frame = write_snapshot(path, dict(list(histories.items())[:3]))
    code = frame["domain_code"].iloc[0]
    with TestClient(create_app(serving_settings(path, tmp_path / "cache"), churn=CHURN)) as client:
        before = client.post("/score", json={"instances": [{"domain_code": code}]}).json()["results"][0]
        path.write_bytes(b"not parquet")
        reloaded = client.post("/admin/reload").json()
        assert reloaded["snapshot_domains"] == 3 and "cannot read the feature snapshot" in reloaded["snapshot_error"]
        after = client.post("/score", json={"instances": [{"domain_code": code}]}).json()["results"][0]
        assert after == before
        # A good export again: the error goes away.
        write_snapshot(path, dict(list(histories.items())[:5]))
        again = client.post("/admin/reload").json()
        assert again["snapshot_domains"] == 5 and again["snapshot_error"] is None
        assert again["snapshot_as_of"] == str(AS_OF)


def test_snapshot_rows_are_encoded_once_and_score_as_encoded_per_request(
    tmp_path: Path, histories: dict[str, dict[date, int]]
) -> None:
    frame = feature_frame(histories)
    booster, meta = train_model(frame, seed=2, rounds=30)
    model = build_loaded_model(ModelRef("m", "production", "1"), ChurnScorer(booster, meta), CHURN)
    path = tmp_path / "snap.parquet"
    write_snapshot(path, histories)
    snapshot = load_snapshot(path)
    state = ServingState(model=model, snapshot=snapshot)
    assert state.encoded is not None and not state.encoded.matrix.flags.writeable
    codes = list(snapshot.rows)
    # Repeated and shuffled domains, an unknown one in the middle: each gets its own row's score.
    asked = [codes[3], codes[0], "xx.unknown", codes[3], *codes[::-1]]
    results = score_instances(state, [ScoreInstance(domain_code=c) for c in asked])
    assert results[2]["error"]["code"] == "unknown_domain"
    known = [c for c in asked if c != "xx.unknown"]
    per_request = model.scorer.predict_proba(model.scorer.encode_records([snapshot.rows[c].features for c in known]))
    assert [r["risk_score"] for r in results if "error" not in r] == per_request.tolist()
    assert [r["domain_code"] for r in results] == asked
    # A snapshot without a feature of the model is not encoded (the service does not serve it).
    frame_path = tmp_path / "partial.parquet"
    write_snapshot(frame_path, dict(list(histories.items())[:2]))
    pd.read_parquet(frame_path).drop(columns=["trend_slope_7d"]).to_parquet(frame_path, index=False)
    assert ServingState(model=model, snapshot=load_snapshot(frame_path)).encoded is None
