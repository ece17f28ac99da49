"""The scoring API against a real registered model: scores, both request forms, explanations, errors."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.utils.serving import AS_OF, MODEL_NAME, SNAPSHOT_DOMAINS, Registry, history_payload
from wikichurn.core.churn import FEATURE_COLUMNS
from wikichurn.training.model import ChurnScorer, model_input_example


def _snapshot_domains(histories: dict[str, dict[date, int]]) -> list[str]:
    return list(histories)[:SNAPSHOT_DOMAINS]


def _score(client: TestClient, instances: list[dict], **params: object) -> list[dict]:
    response = client.post("/score", json={"instances": instances}, params=params)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def test_health_ready_and_model_info(client: TestClient, registry: Registry) -> None:
    assert client.get("/health").json() == {"status": "ok", "model_loaded": True}
    assert client.get("/ready").json() == {"status": "ready", "model_version": "1", "snapshot_as_of": str(AS_OF)}
    info = client.get("/model").json()
    meta = registry.versions[(MODEL_NAME, "1")]
    assert info["name"] == MODEL_NAME and info["version"] == "1" and info["alias"] == "production"
    assert info["run_id"] == meta["run_id"]
    assert info["threshold"] == 0.3
    assert info["test_metrics"] == {"pr_auc": 0.42, "roc_auc": 0.81}
    assert info["features"] == list(FEATURE_COLUMNS)
    assert info["snapshot_as_of"] == str(AS_OF)
    assert info["snapshot"]["domains"] == SNAPSHOT_DOMAINS


def test_snapshot_scores_equal_mlflow_pyfunc(client: TestClient, registry: Registry, snapshot: Path) -> None:
    import mlflow.pyfunc

    frame = pd.read_parquet(snapshot)
    meta = registry.versions[(MODEL_NAME, "1")]
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@production").predict(
        model_input_example(frame, meta, rows=len(frame))
    )
    results = _score(client, [{"domain_code": code} for code in frame["domain_code"]])
    assert [r["domain_code"] for r in results] == list(frame["domain_code"])
    got = np.array([r["risk_score"] for r in results])
    assert np.max(np.abs(got - expected["risk_score"].to_numpy())) <= 1e-12
    assert [r["churn"] for r in results] == [bool(c) for c in expected["churn"]]
    assert {r["as_of"] for r in results} == {str(AS_OF)}
    assert {r["model_version"] for r in results} == {"1"}
    assert {r["threshold"] for r in results} == {0.3}
    assert 0 < got.min() and got.max() < 1 and len(set(got)) > 1


def test_history_form_equals_snapshot_form(client: TestClient, histories: dict[str, dict[date, int]]) -> None:
    domains = _snapshot_domains(histories)
    from_snapshot = _score(client, [{"domain_code": code} for code in domains])
    shuffled = []
    for code in domains:
        payload = history_payload(histories[code])
        random.Random(code).shuffle(payload)  # dates may come in any order
        shuffled.append({"domain_code": code, "daily_views": payload})
    from_history = _score(client, shuffled)
    for a, b in zip(from_snapshot, from_history, strict=True):
        assert b["risk_score"] == a["risk_score"]
        assert b["as_of"] == a["as_of"] == str(AS_OF)
        assert b["churn"] == a["churn"]


def test_responses_have_the_documented_shape_and_a_server_timing(
    client: TestClient, histories: dict[str, dict[date, int]]
) -> None:
    """The route encodes results itself (orjson): they must still be exactly a ScoreResponse."""
    from wikichurn.serving.schemas import ScoreResponse

    code = _snapshot_domains(histories)[0]
    body = {
        "instances": [
            {"domain_code": code},
            {"domain_code": code, "daily_views": history_payload(histories[code])},
            {"domain_code": "nowhere"},
        ]
    }
    for explain in (False, True):
        response = client.post("/score", json={**body, "explain": explain})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert float(response.headers["server-timing"].removeprefix("score;dur=")) > 0
        parsed = ScoreResponse.model_validate_json(response.content)
        assert parsed.model_dump(mode="json", exclude_unset=True) == response.json()
        first, second = response.json()["results"][:2]
        assert ("explanation" in first) is explain and first["risk_score"] == second["risk_score"]
        if explain:
            assert first["explanation"] == second["explanation"]


def test_mixed_batch_keeps_request_order(client: TestClient, histories: dict[str, dict[date, int]]) -> None:
    code = _snapshot_domains(histories)[0]
    outside = list(histories)[-1]  # known to the model, not in the snapshot
    instances = [
        {"domain_code": outside, "daily_views": history_payload(histories[outside])},
        {"domain_code": code},
        {"domain_code": "nowhere"},
        {"domain_code": code, "daily_views": history_payload(histories[code])},
    ]
    results = _score(client, instances)
    assert [r["domain_code"] for r in results] == [outside, code, "nowhere", code]
    assert results[2]["error"]["code"] == "unknown_domain"
    assert results[1]["risk_score"] == results[3]["risk_score"]
    assert "error" not in results[0]


def test_missing_dates_count_as_zero_views(client: TestClient, histories: dict[str, dict[date, int]]) -> None:
    code = _snapshot_domains(histories)[1]
    history = dict(histories[code])
    gap = sorted(history)[-20:-17]
    with_zeros = {day: (0 if day in gap else views) for day, views in history.items()}
    without = {day: views for day, views in history.items() if day not in gap}
    # Zero days before the first day with views are not part of the domain's life (as in the lake).
    leading = {min(history) - timedelta(days=k): 0 for k in range(1, 4)}
    results = _score(
        client,
        [
            {"domain_code": code, "daily_views": history_payload(with_zeros)},
            {"domain_code": code, "daily_views": history_payload(without)},
            {"domain_code": code, "daily_views": history_payload({**leading, **without})},
        ],
    )
    assert results[0]["risk_score"] == results[1]["risk_score"] == results[2]["risk_score"]


@pytest.mark.parametrize("how", ["body", "query"])
def test_explanation_sums_to_logit_of_score(
    client: TestClient, histories: dict[str, dict[date, int]], how: str
) -> None:
    domains = _snapshot_domains(histories)
    instances = [{"domain_code": code} for code in domains]
    if how == "body":
        response = client.post("/score", json={"instances": instances, "explain": True})
    else:
        response = client.post("/score?explain=true", json={"instances": instances})
    results = response.json()["results"]
    for result in results:
        explanation = result["explanation"]
        contributions = explanation["contributions"]
        assert len(contributions) == 5
        magnitudes = [abs(c["contribution"]) for c in contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        total = explanation["base_value"] + sum(c["contribution"] for c in contributions) + explanation["other"]
        assert total == pytest.approx(_logit(result["risk_score"]), abs=1e-9)


def test_explanation_matches_scorer_contributions(
    client: TestClient, registry: Registry, snapshot: Path, tmp_path: Path
) -> None:
    from wikichurn.training.model import load_scorer

    scorer: ChurnScorer = load_scorer(f"models:/{MODEL_NAME}/1", tmp_path / "m")
    frame = pd.read_parquet(snapshot)
    reference = scorer.contributions(frame)
    results = _score(client, [{"domain_code": code} for code in frame["domain_code"]], explain="true")
    for i, result in enumerate(results):
        explanation = result["explanation"]
        assert explanation["base_value"] == pytest.approx(reference["expected_value"].iloc[i], abs=1e-12)
        for item in explanation["contributions"]:
            assert item["contribution"] == pytest.approx(reference[item["feature"]].iloc[i], abs=1e-12)
            raw = frame[item["feature"]].iloc[i]
            assert item["value"] == (raw if isinstance(raw, str) else pytest.approx(float(raw)))


def test_no_explanation_unless_asked(client: TestClient, histories: dict[str, dict[date, int]]) -> None:
    result = _score(client, [{"domain_code": _snapshot_domains(histories)[0]}])[0]
    assert set(result) == {"domain_code", "as_of", "risk_score", "churn", "threshold", "model_version"}


def _days(n: int, views: int = 100, start: date = date(2024, 5, 1)) -> list[dict]:
    return [{"date": (start + timedelta(days=i)).isoformat(), "views": views} for i in range(n)]


def test_per_item_errors_do_not_fail_the_batch(client: TestClient, histories: dict[str, dict[date, int]]) -> None:
    good = _snapshot_domains(histories)[0]
    long_span = [{"date": "2001-01-01", "views": 5}, {"date": "2024-01-01", "views": 5}]
    cases = [
        ({"domain_code": "zz.unknown"}, "unknown_domain"),
        ({"domain_code": "xx", "daily_views": _days(3)}, "history_too_short"),
        ({"domain_code": "xx", "daily_views": []}, "history_too_short"),
        ({"domain_code": "xx", "daily_views": [*_days(3, 0), *_days(3, 9, date(2024, 5, 4))]}, "history_too_short"),
        ({"domain_code": "xx", "daily_views": [*_days(5), {"date": "2024-13-01", "views": 1}]}, "invalid_date"),
        ({"domain_code": "xx", "daily_views": [*_days(5), {"date": "yesterday", "views": 1}]}, "invalid_date"),
        ({"domain_code": "xx", "daily_views": [*_days(5), {"date": "20240601", "views": 1}]}, "invalid_date"),
        ({"domain_code": "xx", "daily_views": [*_days(5), {"date": "1800-01-01", "views": 1}]}, "invalid_date"),
        ({"domain_code": "xx", "daily_views": [*_days(5), {"date": "2024-06-01", "views": -3}]}, "invalid_views"),
        ({"domain_code": "xx", "daily_views": [*_days(5), {"date": "2024-06-01", "views": 10**13}]}, "invalid_views"),
        ({"domain_code": "xx", "daily_views": [*_days(5), {"date": "2024-05-02", "views": 7}]}, "duplicate_date"),
        ({"domain_code": "xx", "daily_views": _days(10, 0)}, "no_views"),
        ({"domain_code": "xx", "daily_views": long_span}, "history_too_long"),
    ]
    instances = [{"domain_code": good}]
    for instance, _code in cases:
        instances += [instance, {"domain_code": good}]
    results = _score(client, instances)
    assert len(results) == len(instances)
    for k, (instance, code) in enumerate(cases):
        assert results[2 * k + 1] == {"domain_code": instance["domain_code"], "error": results[2 * k + 1]["error"]}
        assert results[2 * k + 1]["error"]["code"] == code, results[2 * k + 1]
        assert results[2 * k + 1]["error"]["message"]
    assert len({r["risk_score"] for r in results[::2]}) == 1  # every good instance scored the same


def test_short_but_sufficient_history_scores(client: TestClient) -> None:
    # window_days + 1 = 4 days from the first day with views is enough, whatever the domain.
    result = _score(client, [{"domain_code": "xx.new", "daily_views": _days(4)}])[0]
    assert result["as_of"] == "2024-05-04" and 0 < result["risk_score"] < 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"instances": "de"},
        {"instances": [{}]},
        {"instances": [{"domain_code": ""}]},
        {"instances": [{"domain_code": "de", "colour": "red"}]},
        {"instances": [{"domain_code": "de"}], "explain": "maybe"},
        {"instances": [{"domain_code": "de", "daily_views": [{"date": "2024-01-01"}]}]},
        {"instances": [{"domain_code": "de", "daily_views": [{"date": "2024-01-01", "views": "many"}]}]},
        {"instances": [{"domain_code": "de", "daily_views": [{"date": "2024-01-01", "views": 1.5}]}]},
        {"instances": [{"domain_code": "de", "daily_views": {"2024-01-01": 3}}]},
        [{"domain_code": "de"}],
    ],
)
def test_malformed_bodies_are_422(client: TestClient, body: object) -> None:
    response = client.post("/score", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_non_json_body_is_422(client: TestClient) -> None:
    response = client.post("/score", content=b"instances=de", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_batch_limit_is_413(client: TestClient, histories: dict[str, dict[date, int]]) -> None:
    code = _snapshot_domains(histories)[0]
    assert len(_score(client, [{"domain_code": code}] * 50)) == 50
    response = client.post("/score", json={"instances": [{"domain_code": code}] * 51})
    assert response.status_code == 413
    assert "at most 50" in response.json()["detail"]


def test_history_batch_limit_is_413(client: TestClient) -> None:
    instance = {"domain_code": "xx", "daily_views": _days(5)}
    assert len(_score(client, [instance] * 20)) == 20
    response = client.post("/score", json={"instances": [instance] * 21})
    assert response.status_code == 413
    assert "at most 20" in response.json()["detail"]


def test_empty_batch(client: TestClient) -> None:
    assert _score(client, []) == []


def test_unexpected_error_is_500_json_with_request_id(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("wikichurn.serving.routes.score_instances", broken)
    plain = TestClient(client.app, raise_server_exceptions=False)  # same started app, no second lifespan
    response = plain.post("/score", json={"instances": [{"domain_code": "de"}]}, headers={"X-Request-ID": "abc123"})
    assert response.status_code == 500
    assert response.json() == {
        "detail": "internal error; quote the request_id when reporting it",
        "request_id": "abc123",
    }
    assert response.headers["X-Request-ID"] == "abc123"
    assert "boom" not in response.text
    generated = plain.post("/score", json={"instances": [{"domain_code": "de"}]}).json()["request_id"]
    assert len(generated) == 32
    monkeypatch.undo()
    assert client.get("/health").status_code == 200  # the app is still serving


def test_oversized_body_is_413_before_parsing(snapshot: Path, tmp_path: Path) -> None:
    from tests.utils.serving import CHURN, serving_settings
    from wikichurn.serving.main import create_app

    app = create_app(serving_settings(snapshot, tmp_path, max_body_bytes=4096), churn=CHURN)
    body = {"instances": [{"domain_code": "de", "daily_views": _days(200)}]}
    response = TestClient(app).post("/score", json=body)  # no lifespan: refused before any model is needed
    assert response.status_code == 413
