"""Start the dashboard: ``streamlit run`` of :mod:`wikichurn.dashboard.app` in a child process.

The child gets the lake and the registry through the environment (``WIKICHURN_LAKE_URI``,
``MLFLOW_TRACKING_URI``), like every other wikichurn process. With ``mlflow_root`` a local tracking
server on that folder (``wikichurn mlflow-server``'s) runs for as long as the dashboard does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501


def streamlit_command(host: str, port: int) -> list[str]:
    """``streamlit run`` of the app: headless, no telemetry, no file watcher (an installed package)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
    ]


def dashboard_environment(
    lake_uri: str | None = None, tracking_uri: str | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child's environment: ``base`` (default: this process's) plus the lake and registry given."""
    env = dict(os.environ if base is None else base)
    if lake_uri:
        env["WIKICHURN_LAKE_URI"] = lake_uri if "://" in lake_uri else str(Path(lake_uri).expanduser().resolve())
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


@contextlib.contextmanager
def _registry(mlflow_root: Path | None) -> Iterator[str | None]:
    if mlflow_root is None:
        yield None
        return
    from wikichurn.training.server import tracking_server

    with tracking_server(mlflow_root) as server:
        yield server.url


def run_dashboard(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    lake_uri: str | None = None,
    tracking_uri: str | None = None,
    mlflow_root: Path | None = None,
) -> int:
    """Serve the dashboard until interrupted; returns Streamlit's exit code.

    Args:
        host: address to bind (loopback by default).
        port: port to listen on.
        lake_uri: the lake to show (default: the settings' ``lake_uri``).
        tracking_uri: the MLflow registry (default: ``MLFLOW_TRACKING_URI``).
        mlflow_root: start a local tracking server on this folder (e.g. ``data/demo/mlflow``) instead.
    """

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (docker stop, kill) stops it like Ctrl-C

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _registry(mlflow_root) as local_uri:
            env = dashboard_environment(lake_uri, local_uri or tracking_uri)
            process = subprocess.Popen(streamlit_command(host, port), env=env)
            try:
                return process.wait()
            except KeyboardInterrupt:
                process.terminate()
                try:
                    return process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
