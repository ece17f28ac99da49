"""The HTTP mirror: listings, files, 404s, and no way out of the root."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from wikichurn.sim.mirror import serve_mirror
from wikichurn.sim.simulate import load_manifest

SECRET = "top-secret-outside-the-root"


def _raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (httpx would normalise dot segments)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A tiny served root with a secret beside it and a symlink pointing out of it."""
    (tmp_path / "secret.txt").write_text(SECRET)
    root = tmp_path / "root"
    (root / "2024" / "2024-01").mkdir(parents=True)
    (root / "2024" / "2024-01" / "projectviews-20240101-000000").write_text("en - 5 0\n")
    (root / "escape").symlink_to(tmp_path)
    (root / "2024" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with serve_mirror(root) as url:
        yield root, url


def test_month_listing_and_file(small_mirror: Path, mirror_url: str) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", mirror_url)
    with httpx.Client(base_url=mirror_url, timeout=5) as client:
        listing = client.get("/2024/2024-01/")
        assert listing.status_code == 200
        assert listing.headers["content-type"].startswith("text/html")
        assert "<title>Index of /other/pageviews/2024/2024-01/</title>" in listing.text
        name = next(p.name for p in sorted((small_mirror / "2024" / "2024-01").glob("projectviews-*")))
        row = re.search(rf'<a href="{name}">{name}</a> +\S+ \S+ +(\d+)', listing.text)
        assert row is not None
        response = client.get(f"/2024/2024-01/{name}")
        assert response.status_code == 200
        assert response.content == (small_mirror / "2024" / "2024-01" / name).read_bytes()
        assert int(row.group(1)) == len(response.content) == int(response.headers["content-length"])
        assert response.headers["content-type"].startswith("text/plain")
        # a folder without the trailing slash redirects to it; the root and year listings exist
        moved = client.get("/2024/2024-01")
        assert moved.status_code == 301 and moved.headers["location"] == "/2024/2024-01/"
        assert "2024-01/" in client.get("/2024/").text
        assert '<a href="2024/">2024/</a>' in client.get("/").text
        head = client.head(f"/2024/2024-01/{name}")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(response.content)
        decoy = next((small_mirror / "2024" / "2024-01").glob("pageviews-*.gz"))
        gz = client.get(f"/2024/2024-01/{decoy.name}")
        assert gz.status_code == 200 and gz.content == decoy.read_bytes()


def test_missing_things_are_404(small_mirror: Path, mirror_url: str) -> None:
    missing = load_manifest(small_mirror)["counts"]["missing_hours"]
    with httpx.Client(base_url=mirror_url, timeout=5) as client:
        assert client.get("/2024/2024-01/projectviews-20240131-000000").status_code == 404  # after the end
        assert client.get("/2024/2024-02/").status_code == 404
        assert client.get("/2023/").status_code == 404
        for name in missing:
            assert client.get(f"/2024/2024-01/{name}").status_code == 404
        assert client.post("/2024/2024-01/").status_code == 501


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/2024/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/etc/passwd",
        "/2024/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/%252e%252e/secret.txt",
        "/2024/..\\..\\secret.txt",
        "//../secret.txt",
        "/escape/secret.txt",
        "/escape/",
        "/2024/leak.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/%00/secret.txt",
    ],
)
def test_traversal_never_escapes_the_root(jail: tuple[Path, str], path: str) -> None:
    _, url = jail
    status, body = _raw_get(url, path)
    assert status in (400, 404), (path, status)
    assert SECRET.encode() not in body


def test_inside_paths_still_work_in_the_jail(jail: tuple[Path, str]) -> None:
    root, url = jail
    status, body = _raw_get(url, "/2024/./2024-01/projectviews-20240101-000000")
    assert (status, body) == (200, b"en - 5 0\n")
    # a folder without index.html gets a listing generated on the fly, in the same format
    status, body = _raw_get(url, "/2024/2024-01/")
    assert status == 200
    page = body.decode()
    assert "<title>Index of /other/pageviews/2024/2024-01/</title>" in page
    assert re.search(r'<a href="projectviews-20240101-000000">projectviews-20240101-000000</a> +\S+ \S+ +9\n', page)
    assert os.path.islink(root / "escape")


def test_binds_the_given_host_only_and_stops_cleanly(small_mirror: Path) -> None:
    with serve_mirror(small_mirror, host="127.0.0.1", port=0) as url:
        port = urlsplit(url).port
        assert httpx.get(f"{url}/", timeout=5).status_code == 200
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    with pytest.raises(NotADirectoryError):
        with serve_mirror(small_mirror / "nope"):
            pass


def test_run_mirror_serves_until_interrupted(jail: tuple[Path, str]) -> None:
    root, _ = jail
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"from wikichurn.sim.mirror import run_mirror; run_mirror({str(root)!r}, port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        status = None
        deadline = time.monotonic() + 10
        while status is None and time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/2024/2024-01/", timeout=1).status_code
            except httpx.TransportError:
                time.sleep(0.05)
        assert status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
