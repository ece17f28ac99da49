"""Hostile clients against the real server: huge and deeply nested JSON, wrong content types,
slowloris-style bodies, and schemathesis' stateful mode. Every answer is a 4xx, never a 5xx,
and the process stays up and keeps serving other clients.

The server is ``wikichurn serve`` (uvicorn, one worker) started by the test on 127.0.0.1 with a
real model in a sqlite MLflow registry.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.helpers import start_wikichurn
from tests.utils.serving import (
    CHURN,
    MODEL_NAME,
    Registry,
    feature_frame,
    free_port,
    mlflow_pointed_at,
    serving_settings,
    synthetic_histories,
    write_snapshot,
)

pytestmark = pytest.mark.slow

BODY_TIMEOUT_S = 1.5
MAX_BODY = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def registry_and_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    root = tmp_path_factory.mktemp("hostile")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    histories = synthetic_histories()
    snapshot = root / "features_snapshot.parquet"
    write_snapshot(snapshot, {code: histories[code] for code in list(histories)[:12]})
    with mlflow_pointed_at(uri):
        import mlflow

        mlflow.create_experiment("serving-tests", artifact_location=(root / "artifacts").as_uri())
        registry = Registry(uri=uri, root=root, frame=feature_frame(histories), histories=histories)
        registry.register(MODEL_NAME, seed=1)
        yield registry, snapshot


@pytest.fixture(scope="module")
def api(registry_and_snapshot: tuple[Registry, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    registry, snapshot = registry_and_snapshot
    port = free_port()
    env = registry.subprocess_env()
    env.update(
        WIKICHURN_SERVING__SNAPSHOT_PATH=str(snapshot),
        WIKICHURN_SERVING__MODEL_CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
        WIKICHURN_SERVING__BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        WIKICHURN_SERVING__MAX_BODY_BYTES=str(MAX_BODY),
    )
    proc = start_wikichurn("serve", "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the API did not become ready"
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def nested(depth: int) -> str:
    return '{"instances": [{"domain_code": ' + '{"a": ' * depth + "1" + "}" * depth + "}]}"


JSON = {"content-type": "application/json"}
VIEWS = b'{"instances": [{"domain_code": "en", "daily_views": [{"date": "2024-01-01", "views": '
HOSTILE: list[tuple[str, dict[str, str], bytes]] = [
    ("over max_body_bytes", JSON, b'{"instances": [' + b'{"domain_code": "en"},' * 150_000 + b"]}"),
    ("a 1 MB domain code", JSON, b'{"instances": [{"domain_code": "' + b"x" * 1_000_000 + b'"}]}'),
    ("arrays nested 100k deep", JSON, b"[" * 100_000 + b"]" * 100_000),
    ("objects nested 50k deep", JSON, nested(50_000).encode()),
    ("text/plain", {"content-type": "text/plain"}, b'{"instances": [{"domain_code": "en"}]}'),
    ("xml", {"content-type": "application/xml"}, b"<instances><domain_code>en</domain_code></instances>"),
    ("form", {"content-type": "application/x-www-form-urlencoded"}, b"instances=en"),
    ("multipart", {"content-type": "multipart/form-data; boundary=x"}, b"--x\r\n\r\nen\r\n--x--\r\n"),
    ("no content type", {}, b'{"instances": [{"domain_code": "en"}]}'),
    ("invalid utf-8", JSON, b'{"instances": [{"domain_code": "\xff\xfe"}]}'),
    ("NUL bytes", JSON, b'{"instances": [{"domain_code": "e\x00n"}]}'),
    ("empty body", JSON, b""),
    ("null", JSON, b"null"),
    ("truncated", JSON, b'{"instances": [{"domain_c'),
    ("huge exponent", JSON, VIEWS + b"1e999999}]}]}"),
    ("huge integer", JSON, VIEWS + b"9" * 5000 + b"}]}]}"),
    ("NaN", JSON, VIEWS + b"NaN}]}]}"),
    ("a million instances", JSON, b'{"instances": [' + b"{}," * 600_000 + b"{}]}"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "headers", "body"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_body_gets_a_4xx(api: str, name: str, headers: dict[str, str], body: bytes) -> None:
    answer = httpx.post(f"{api}/score", content=body, headers=headers, timeout=60)
    assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:300])
    assert answer.text  # a message, not an empty answer
    assert httpx.get(f"{api}/health", timeout=5).status_code == 200  # still alive


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("PUT", "/score", {}),
        ("DELETE", "/model", {}),
        ("GET", "/nowhere/" + "a" * 5000, {}),
        ("POST", "/score?explain=" + "x" * 5000, JSON),
    ],
    ids=["PUT /score", "DELETE /model", "long unknown path", "bad query"],
)
def test_hostile_request_line_or_headers_get_a_4xx(api: str, method: str, path: str, headers: dict[str, str]) -> None:
    answer = httpx.request(method, f"{api}{path}", headers=headers, content=b'{"instances": []}', timeout=10)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert httpx.get(f"{api}/health", timeout=5).status_code == 200


def raw_connection(api: str) -> socket.socket:
    host, port = api.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_slow_body_is_cut_off_with_408_while_others_are_served(api: str) -> None:
    body = b'{"instances": [{"domain_code": "en"}]}'
    slow = [raw_connection(api) for _ in range(20)]
    began = time.monotonic()
    for conn in slow:
        conn.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
    # While 20 bodies trickle (one byte every half second), other clients are answered at once.
    for _ in range(3):
        time.sleep(0.5)
        for conn in slow:
            try:
                conn.sendall(body[5:6])
            except OSError:
                pass
        fast = httpx.post(f"{api}/score", json={"instances": [{"domain_code": "en"}]}, timeout=5)
        assert fast.status_code == 200
    # Then they stall: each one is answered 408 within the body timeout.
    answers = []
    for conn in slow:
        conn.settimeout(BODY_TIMEOUT_S + 10)
        answers.append(conn.recv(4096))
        conn.close()
    waited = time.monotonic() - began
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
    assert waited < 1.5 + BODY_TIMEOUT_S + 10
    assert httpx.get(f"{api}/health", timeout=5).status_code == 200


# -- schemathesis, stateful ----------------------------------------------------------------------


def add_links(spec: dict[str, Any]) -> None:
    """OpenAPI links between operations, so schemathesis can chain calls: score a domain a response
    named, reload then ask /model, check /ready then score."""
    ids = {(m.upper(), p): op["operationId"] for p, item in spec["paths"].items() for m, op in item.items()}
    rescore = {
        "operationId": ids[("POST", "/score")],
        "requestBody": {"instances": [{"domain_code": "$response.body#/results/0/domain_code"}]},
    }
    links = {
        ("POST", "/score"): {"Rescore": rescore},
        ("POST", "/admin/reload"): {"Model": {"operationId": ids[("GET", "/model")]}},
        ("GET", "/model"): {"Reload": {"operationId": ids[("POST", "/admin/reload")]}},
        ("GET", "/ready"): {"Score": {**rescore, "requestBody": {"instances": [{"domain_code": "en"}]}}},
        ("GET", "/health"): {"Ready": {"operationId": ids[("GET", "/ready")]}},
    }  # fmt: skip
    for (method, path), found in links.items():
        spec["paths"][path][method.lower()]["responses"]["200"]["links"] = found


def test_stateful_fuzz_finds_no_server_error(
    registry_and_snapshot: tuple[Registry, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    import schemathesis
    from hypothesis import HealthCheck
    from hypothesis import settings as hsettings
    from hypothesis.stateful import run_state_machine_as_test
    from schemathesis.checks import not_a_server_error
    from schemathesis.python.asgi import shutdown_lifespans

    from wikichurn.serving.main import create_app

    registry, snapshot = registry_and_snapshot
    with mlflow_pointed_at(registry.uri):
        app = create_app(serving_settings(snapshot, tmp_path_factory.mktemp("sm-cache"), max_batch=20), churn=CHURN)
        add_links(app.openapi())  # FastAPI serves this cached dict as /openapi.json
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        machine: Any = schema.as_state_machine()

        class Checked(machine):  # type: ignore[misc, valid-type]
            def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
                case.validate_response(response, checks=[not_a_server_error])

        try:
            run_state_machine_as_test(
                Checked,
                settings=hsettings(
                    max_examples=25, stateful_step_count=6, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )  # fmt: skip
        finally:
            shutdown_lifespans()
