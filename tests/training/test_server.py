"""The tracking server's command line and environment (the running server is covered by every
test that uses the ``mlflow_server`` fixture)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from wikichurn.training.server import TrackingServer, server_command, server_environment


def test_server_command_is_local_sqlite_single_worker(tmp_path: Path) -> None:
    command = server_command(tmp_path, port=5123)
    joined = " ".join(command)
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}" in command
    assert "--artifacts-destination" in command and str(tmp_path.resolve() / "artifacts") in command
    assert "--host 127.0.0.1" in joined and "--port 5123" in joined and "--workers 1" in joined


def test_server_environment_is_offline_without_job_runner() -> None:
    env = server_environment({"PATH": "/bin"})
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["PATH"] == "/bin"


def test_running_server_answers_health(mlflow_server: TrackingServer) -> None:
    assert mlflow_server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{mlflow_server.url}/health", timeout=5) as response:
        assert response.status == 200
    assert mlflow_server.process.poll() is None
    assert (mlflow_server.root / "mlflow.db").is_file()
