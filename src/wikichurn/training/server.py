"""A local MLflow tracking server: sqlite backend, local artifact folder, loopback only.

``tracking_server(root)`` starts one for the duration of a ``with`` block (tests, the demo);
``run_tracking_server(root)`` runs one in the foreground (``wikichurn mlflow-server``, or
``python -m wikichurn.training.server --port 5000``).

Settings that matter on a small machine: ``--workers 1``, and
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (the job runner alone takes ~1.3 GB);
``MLFLOW_DISABLE_TELEMETRY=true`` keeps it offline. Artifacts are proxied by the server
(``mlflow-artifacts:/``, stored under ``<root>/artifacts``), so clients need no access to the folder.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("data/mlflow")
DEFAULT_PORT = 5000


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the server process: offline, no job runner."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    return env


def server_command(root: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> list[str]:
    """``mlflow server`` with a sqlite store and artifacts under ``root``."""
    root = root.resolve()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


@dataclass
class TrackingServer:
    """A running server."""

    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if process.poll() is not None:
        return
    # The server runs in its own process group (uvicorn has a worker child): stop the group.
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


@contextmanager
def tracking_server(
    root: str | Path = DEFAULT_ROOT,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = 120.0,
) -> Iterator[TrackingServer]:
    """Start a local tracking server, wait until it answers ``/health``, stop it on exit.

    Args:
        root: folder for ``mlflow.db``, ``artifacts/`` and ``server.log`` (created if needed).
        host: address to bind (loopback by default).
        port: port to listen on; 0 picks a free one.
        timeout_s: how long to wait for the server to become healthy.

    Yields:
        The server; ``server.url`` is the tracking URI (``http://127.0.0.1:<port>``).
    """
    root = Path(root).resolve()
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    log_path = root / "server.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            server_command(root, host, port),
            env=server_environment(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = TrackingServer(url=url, root=root, process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not healthy after {timeout_s:.0f} s; see {log_path}")
            time.sleep(0.25)
        log.info("mlflow tracking server at %s (store %s)", url, root)
        yield server
    finally:
        _stop(process)


def run_tracking_server(root: str | Path = DEFAULT_ROOT, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
    """Run a tracking server in the foreground until it exits or Ctrl-C; return its exit code."""
    root = Path(root).resolve()
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    log.info("mlflow tracking server on http://%s:%s (store %s); Ctrl-C stops it", host, port, root)
    process = subprocess.Popen(server_command(root, host, port), env=server_environment(), start_new_session=True)

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the server too
    except ValueError:  # not the main thread: only Ctrl-C / the caller can stop it
        previous = None
    try:
        return process.wait()
    except KeyboardInterrupt:
        _stop(process)
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(
    root: Annotated[Path, typer.Option(help="folder for mlflow.db and artifacts/")] = DEFAULT_ROOT,
    host: Annotated[str, typer.Option(help="address to bind (default: loopback)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = DEFAULT_PORT,
) -> None:
    """Run a local MLflow tracking server (sqlite + local artifacts) until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    raise typer.Exit(run_tracking_server(root, host=host, port=port))


if __name__ == "__main__":
    typer.run(main)
