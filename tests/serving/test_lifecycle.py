"""Start-up without a model, background retries, /admin/reload, and the periodic alias check."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.utils.serving import (
    CHURN,
    SNAPSHOT_DOMAINS,
    Registry,
    free_port,
    history_payload,
    mlflow_pointed_at,
    serving_settings,
    write_snapshot,
)
from wikichurn.serving.main import create_app
from wikichurn.serving.registry import ModelRef, RegistryModelLoader
from wikichurn.training.model import ChurnScorer


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


class GatedLoader(RegistryModelLoader):
    """The registry loader, held back until ``gate`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def resolve(self) -> ModelRef:
        assert self.gate.wait(30)
        return super().resolve()


def test_503_until_the_model_loads(registry: Registry, snapshot: Path, tmp_path: Path) -> None:
    settings = serving_settings(snapshot, tmp_path, startup_timeout_s=0)
    loader = GatedLoader(settings.model_name, settings.model_alias, tmp_path)
    with TestClient(create_app(settings, loader, churn=CHURN)) as client:
        assert client.get("/health").json() == {"status": "ok", "model_loaded": False}
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "loading"
        assert "models:/wikichurn@production" in ready.json()["detail"]
        for response in (client.post("/score", json={"instances": [{"domain_code": "de"}]}), client.get("/model")):
            assert response.status_code == 503
            assert response.json()["detail"].startswith("no model loaded yet")
        loader.gate.set()
        _wait_for(lambda: client.get("/ready").status_code == 200)
        assert client.post("/score", json={"instances": [{"domain_code": "de"}]}).status_code == 200


def test_unreachable_registry_then_recovery(
    registry: Registry, snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = serving_settings(snapshot, tmp_path, startup_timeout_s=1, retry_min_s=0.2, retry_max_s=0.2)
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with mlflow_pointed_at(nowhere), TestClient(create_app(settings, churn=CHURN)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable" and body["attempts"] >= 1
        assert "cannot resolve models:/wikichurn@production" in body["detail"]
        score = client.post("/score", json={"instances": [{"domain_code": "de"}]})
        assert score.status_code == 503 and "cannot resolve" in score.json()["detail"]
        assert client.post("/admin/reload").status_code == 503
        # The registry comes back (MLflow points at it again): the background retry loads the model.
        with mlflow_pointed_at(registry.uri):
            _wait_for(lambda: client.get("/ready").status_code == 200)
        assert client.get("/model").json()["version"] == "1"


def test_unknown_model_is_503_with_reason(registry: Registry, snapshot: Path, tmp_path: Path) -> None:
    settings = serving_settings(snapshot, tmp_path, model_name="no-such-model", startup_timeout_s=0.5, retry_min_s=5)
    with TestClient(create_app(settings, churn=CHURN)) as client:
        detail = client.get("/ready").json()["detail"]
        assert "cannot resolve models:/no-such-model@production" in detail


def _expected_scores(registry: Registry, name: str, version: str, rows: list[dict]) -> list[float]:
    from wikichurn.training.model import load_scorer

    scorer: ChurnScorer = load_scorer(f"models:/{name}/{version}", registry.root / f"check-{name}-{version}")
    return [float(s) for s in scorer.predict_proba(rows)]


def test_reload_swaps_versions_without_failing_in_flight_requests(
    registry: Registry, snapshot: Path, tmp_path: Path, histories: dict[str, dict[date, int]]
) -> None:
    name = "wikichurn-reload"
    assert registry.register(name, seed=11, threshold=0.3) == "1"
    domain = list(histories)[0]
    settings = serving_settings(snapshot, tmp_path / "cache", model_name=name)
    seen: list[tuple[float, float, int, str | None, float | None]] = []  # start, end, status, version, score
    stop = threading.Event()

    def hammer(client: TestClient) -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = client.post("/score", json={"instances": [{"domain_code": domain}]})
            result = response.json()["results"][0] if response.status_code == 200 else {}
            seen.append(
                (started, time.monotonic(), response.status_code, result.get("model_version"), result.get("risk_score"))
            )

    with TestClient(create_app(settings, churn=CHURN)) as client:
        assert client.get("/model").json()["version"] == "1"
        # Nothing moved: a reload keeps the loaded model.
        same = client.post("/admin/reload").json()
        assert same["changed"] is False and same["model_version"] == "1"
        workers = [threading.Thread(target=hammer, args=(client,)) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            assert registry.register(name, seed=12, threshold=0.45) == "2"
            reload_started = time.monotonic()
            reloaded = client.post("/admin/reload")
            reload_ended = time.monotonic()
            _wait_for(lambda: sum(start > reload_ended for start, *_ in seen) > 20)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["changed"] is True
        assert reloaded.json()["previous_version"] == "1" and reloaded.json()["model_version"] == "2"
        info = client.get("/model").json()
        assert info["version"] == "2" and info["threshold"] == 0.45
        after = client.post("/score", json={"instances": [{"domain_code": domain}]}).json()["results"][0]
        assert after["model_version"] == "2" and after["threshold"] == 0.45

    # Every concurrent request succeeded, on exactly one of the two models, with that model's score;
    # some of them ran while the new version was being downloaded and loaded.
    assert seen and all(status == 200 for _, _, status, _, _ in seen)
    assert {version for *_, version, _ in seen} == {"1", "2"}
    assert sum(reload_started < end < reload_ended for _, end, *_ in seen) >= 1
    assert all(version == "2" for start, _, _, version, _ in seen if start > reload_ended)
    snapshot_row = next(iter(_snapshot_rows(snapshot, domain)))
    expected = {v: _expected_scores(registry, name, v, [snapshot_row])[0] for v in ("1", "2")}
    assert all(score == expected[version] for *_, version, score in seen)


def test_failed_reload_keeps_serving(registry: Registry, snapshot: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with TestClient(create_app(serving_settings(snapshot, tmp_path), churn=CHURN)) as client:
        with mlflow_pointed_at(f"http://127.0.0.1:{free_port()}"):
            failed = client.post("/admin/reload")
        assert failed.status_code == 503
        assert "reload failed" in failed.json()["detail"] and "still serving version 1" in failed.json()["detail"]
        assert client.post("/score", json={"instances": [{"domain_code": "de"}]}).status_code == 200
        assert client.get("/ready").status_code == 200


def test_periodic_alias_check_and_snapshot_refresh(
    registry: Registry, tmp_path: Path, histories: dict[str, dict[date, int]]
) -> None:
    name = "wikichurn-watch"
    registry.register(name, seed=21)
    snapshot = tmp_path / "snap" / "features_snapshot.parquet"
    snapshot.parent.mkdir()
    codes = list(histories)
    write_snapshot(snapshot, {c: histories[c] for c in codes[:3]})
    settings = serving_settings(snapshot, tmp_path / "cache", model_name=name, reload_interval_s=0.2)
    with TestClient(create_app(settings, churn=CHURN)) as client:
        assert client.get("/model").json()["version"] == "1"
        unknown = client.post("/score", json={"instances": [{"domain_code": codes[5]}]}).json()["results"][0]
        assert unknown["error"]["code"] == "unknown_domain"
        registry.register(name, seed=22)  # moves the alias to version 2
        _wait_for(lambda: client.get("/model").json()["version"] == "2")
        # A new export of the snapshot is picked up too.
        write_snapshot(snapshot, {c: histories[c] for c in codes[:SNAPSHOT_DOMAINS]})
        _wait_for(lambda: client.get("/model").json()["snapshot"]["domains"] == SNAPSHOT_DOMAINS)
        known = client.post("/score", json={"instances": [{"domain_code": codes[5]}]}).json()["results"][0]
        assert known["model_version"] == "2" and "risk_score" in known
        # Moving the alias back is a promotion like any other.
        registry.set_alias(name, "1")
        _wait_for(lambda: client.get("/model").json()["version"] == "1")


def test_missing_snapshot_still_serves_histories(
    registry: Registry, tmp_path: Path, histories: dict[str, dict[date, int]]
) -> None:
    settings = serving_settings(tmp_path / "absent.parquet", tmp_path / "cache")
    with TestClient(create_app(settings, churn=CHURN)) as client:
        assert client.get("/ready").status_code == 200
        info = client.get("/model").json()
        assert info["snapshot"] is None and "absent.parquet" in info["snapshot_error"]
        code = list(histories)[0]
        results = client.post(
            "/score",
            json={
                "instances": [
                    {"domain_code": code},
                    {"domain_code": code, "daily_views": history_payload(histories[code])},
                ]
            },
        ).json()["results"]
        assert results[0]["error"]["code"] == "snapshot_unavailable"
        assert "absent.parquet" in results[0]["error"]["message"]
        assert 0 < results[1]["risk_score"] < 1


def _snapshot_rows(snapshot: Path, domain: str) -> list[dict]:
    import pandas as pd

    frame = pd.read_parquet(snapshot)
    return frame[frame["domain_code"] == domain].drop(columns=["event_date"]).to_dict(orient="records")


def test_the_heap_is_frozen_once_the_first_model_is_loaded(registry: Registry, snapshot: Path, tmp_path: Path) -> None:
    """``run()``'s app freezes the start-up heap (no full cycle-collector passes over it); others do not."""
    settings = serving_settings(snapshot, tmp_path)
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(settings, churn=CHURN)) as client:
            assert client.get("/ready").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(settings, churn=CHURN, freeze_heap=True)) as client:
            assert client.get("/ready").status_code == 200
            assert gc.get_freeze_count() > 10_000  # the imports and the model, not a handful
            assert client.post("/score", json={"instances": [{"domain_code": "de"}]}).status_code == 200
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
