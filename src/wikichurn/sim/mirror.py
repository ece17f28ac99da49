"""A local HTTP mirror of the dumps site's ``/other/pageviews`` tree, for the simulator's output.

The base URL stands for ``https://dumps.wikimedia.org/other/pageviews``: a month listing is at
``{base}/2024/2024-08/`` and a file at ``{base}/2024/2024-08/projectviews-20240801-000000``.
Directories answer with their ``index.html`` (the simulator writes one per folder); a directory
without one gets a listing generated on the fly in the same (nginx autoindex) format.

Safety: a request path is decoded once, any ``..`` segment is refused outright, and the resolved
file (symlinks followed) must lie inside the root, so nothing outside the root is ever served.
The server binds only to the host it is given (127.0.0.1 by default).
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

log = logging.getLogger(__name__)

# The path the base URL stands for on the real site; listings are titled with it.
SITE_PREFIX = "/other/pageviews"
# nginx autoindex: names are padded to (and truncated at) 50 characters.
NAME_WIDTH = 50
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class ListingEntry:
    """One row of a directory listing. ``size`` is None for directories."""

    name: str
    modified: datetime
    size: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.size is None


def listing_date(when: datetime) -> str:
    """``03-Aug-2024 07:12``, locale-independent, as the dumps site shows it."""
    return f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} {when.hour:02d}:{when.minute:02d}"


def render_listing(path: str, entries: Iterable[ListingEntry]) -> str:
    """An nginx-autoindex-style page, as served by dumps.wikimedia.org.

    ``path`` is the URL path of the folder (e.g. ``/other/pageviews/2024/2024-08/``). Directories come
    first, then files, each group sorted by name; directories show ``-`` instead of a size.
    """
    ordered = sorted(entries, key=lambda e: (not e.is_dir, e.name))
    title = html.escape(path, quote=False)
    rows = [
        "<html>",
        f"<head><title>Index of {title}</title></head>",
        "<body>",
        f'<h1>Index of {title}</h1><hr><pre><a href="../">../</a>',
    ]
    for entry in ordered:
        shown = entry.name + ("/" if entry.is_dir else "")
        href = quote(shown)
        if len(shown) > NAME_WIDTH:
            shown = shown[: NAME_WIDTH - 3] + "..>"
        pad = " " * (NAME_WIDTH - len(shown))
        size = "-" if entry.size is None else str(entry.size)
        rows.append(
            f'<a href="{href}">{html.escape(shown, quote=False)}</a>{pad} {listing_date(entry.modified)} {size:>19}'
        )
    rows.append("</pre><hr></body>")
    rows.append("</html>")
    return "\n".join(rows) + "\n"


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _folder_listing(folder: Path, url_path: str) -> str:
    entries = []
    with os.scandir(folder) as scan:
        for item in scan:
            if item.name.startswith("."):
                continue
            stat = item.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, UTC)
            entries.append(ListingEntry(item.name, modified, None if item.is_dir() else stat.st_size))
    return render_listing(SITE_PREFIX + url_path, entries)


class MirrorRequestHandler(SimpleHTTPRequestHandler):
    """GET/HEAD over a folder, confined to it; listings in the dumps site's format."""

    protocol_version = "HTTP/1.1"  # keep-alive: ingestion fetches many small files
    # Headers and body go out in separate writes: without this, Nagle plus the client's delayed
    # ACK hold every response ~40 ms on keep-alive connections.
    disable_nagle_algorithm = True
    server_version = "wikichurn-mirror/0.1"
    timeout = 30  # idle keep-alive connections do not hold a thread forever
    root: Path  # set on the subclass built by serve_mirror

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _resolve(self, url_path: str) -> Path | None:
        """The real path a URL path names inside the root, or None (never outside it)."""
        decoded = unquote(url_path, errors="strict") if "%" in url_path else url_path
        parts = [p for p in decoded.split("/") if p not in ("", ".")]
        if any(p == ".." or "\\" in p or "\x00" in p for p in parts):
            return None
        try:
            real = self.root.joinpath(*parts).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        return real if _within(real, self.root) else None

    def _send_bytes(self, body: bytes, content_type: str) -> BytesIO:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return BytesIO(body)

    def send_head(self):
        url_path = urlsplit(self.path).path or "/"
        try:
            target = self._resolve(url_path)
        except UnicodeDecodeError:
            target = None
        if target is None or not target.exists():
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
            return None
        if target.is_dir():
            if not url_path.endswith("/"):
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", quote(url_path) + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            index = self._resolve(url_path + "index.html")
            if index is None or not index.is_file():
                page = _folder_listing(target, url_path)
                return self._send_bytes(page.encode("utf-8"), "text/html; charset=utf-8")
            target = index
        if not target.is_file():
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
            return None
        try:
            handle = open(target, "rb")  # noqa: SIM115 - closed by do_GET/do_HEAD
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
            return None
        try:
            stat = os.fstat(handle.fileno())
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", self._content_type(target.name))
            self.send_header("Content-Length", str(stat.st_size))
            self.send_header("Last-Modified", self.date_time_string(int(stat.st_mtime)))
            self.end_headers()
            return handle
        except Exception:
            handle.close()
            raise

    @staticmethod
    def _content_type(name: str) -> str:
        if name.endswith(".gz"):
            return "application/gzip"
        if name.endswith(".html"):
            return "text/html; charset=utf-8"
        if name.endswith(".json"):
            return "application/json"
        if name.startswith(("projectviews-", "projectcounts-")):
            return "text/plain; charset=utf-8"
        return "application/octet-stream"


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _MirrorServer6(_MirrorServer):
    address_family = socket.AF_INET6


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextlib.contextmanager
def serve_mirror(root: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``root`` over HTTP in a background thread; yields the base URL (``http://host:port``).

    ``port=0`` picks a free port. The server is shut down and its socket closed on exit.
    """
    real_root = Path(root).resolve()
    if not real_root.is_dir():
        raise NotADirectoryError(f"mirror root is not a folder: {root}")
    handler = type("BoundMirrorRequestHandler", (MirrorRequestHandler,), {"root": real_root})
    server_cls = _MirrorServer6 if ":" in host else _MirrorServer
    server = server_cls((host, port), handler)
    bound_port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="wikichurn-mirror", daemon=True
    )
    thread.start()
    url = _base_url(host, bound_port)
    log.debug("mirror of %s serving at %s", real_root, url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_mirror(root: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``root`` until Ctrl-C or SIGTERM (blocking), logging the base URL."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        with serve_mirror(root, host=host, port=port) as url:
            log.info("serving %s at %s (month listings at %s/YYYY/YYYY-MM/); Ctrl-C stops", root, url, url)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                log.info("stopping the mirror")
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
