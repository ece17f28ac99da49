"""The service under a real uvicorn server (one worker) on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.utils.serving import Registry, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(registry: Registry, snapshot: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = registry.subprocess_env()
    env.update(
        WIKICHURN_SERVING__SNAPSHOT_PATH=str(snapshot),
        WIKICHURN_SERVING__MODEL_CACHE_DIR=str(tmp_path / "cache"),
        WIKICHURN_SERVING__PORT=str(port),
    )
    process = subprocess.Popen(
        [sys.executable, "-c", "from wikichurn.serving.main import run; run()"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
        if process.stdout:
            process.stdout.close()
    assert process.returncode == 0


def test_uvicorn_server_scores_like_the_app(server: str, client: TestClient, registry: Registry) -> None:
    domains = list(registry.histories)[:5]
    body = {"instances": [{"domain_code": d} for d in domains], "explain": True}
    with httpx.Client(base_url=server, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.get("/model").json()["version"] == "1"
        remote = http.post("/score", json=body)
        assert remote.status_code == 200
        assert remote.json() == client.post("/score", json=body).json()
        assert http.post("/score", json={"instances": "x"}).status_code == 422

        def one(domain: str) -> int:
            return http.post("/score", json={"instances": [{"domain_code": domain}]}).status_code

        # Keep-alive requests from several threads, with a reload in the middle.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, domains * 40))
            assert http.post("/admin/reload").status_code == 200
            statuses += list(pool.map(one, domains * 40))
        assert set(statuses) == {200}
