"""A fake dumps site for ingestion tests: hourly projectviews files with known contents, served over
local HTTP with listings like dumps.wikimedia.org's, failures injected on demand."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wikichurn.core import layout

PREFIX = "/other/pageviews"
START, END = date(2024, 7, 31), date(2024, 8, 2)  # crosses a month boundary


def content_for(name: str) -> bytes:
    """A tiny projectviews file; sizes differ between hours."""
    when = layout.parse_file_time(name)
    assert when is not None
    lines = [f"en - {1000 + when.hour * 37 + when.day} 0", "en.m - 2000 0", f"de.m.s - {when.hour} 0"]
    return ("\n".join(lines[: 1 + when.hour % 3]) + "\n").encode()


def hourly_names(first: date, last: date, hours: range = range(24)) -> list[str]:
    names = []
    day = first
    while day <= last:
        names += [layout.file_name(datetime(day.year, day.month, day.day, h, tzinfo=UTC)) for h in hours]
        day += timedelta(days=1)
    return names


def listing_html(folder: str, entries: list[tuple[str, str]]) -> str:
    rows = [
        f'<a href="{href}">{href[:50]}</a>{" " * max(1, 51 - len(href))}03-Aug-2024 07:12 {size:>19}'
        for href, size in entries
    ]
    return (
        f"<html>\r\n<head><title>Index of {PREFIX}/{folder}/</title></head>\r\n<body>\r\n"
        f'<h1>Index of {PREFIX}/{folder}/</h1><hr><pre><a href="../">../</a>\r\n'
        + "\r\n".join(rows)
        + "\r\n</pre><hr></body>\r\n</html>\r\n"
    )


@dataclass
class FakeDumps:
    """The state and behaviour of the test dumps site.

    ``files`` maps ``YYYY/YYYY-MM/name`` to bytes. ``actions[path]`` is a queue of misbehaviours
    consumed one per request (``path`` is a file path or ``folder + "/"``); ``always[path]`` one that
    never ends. Misbehaviours: ``"503"``, ``"429"``, ``"500"``, ``"403"``, ``"timeout"`` (answer
    after ``sleep_s``), ``"truncate"`` (Content-Length larger than the body, then close),
    ``"chunked"`` (the body sent chunked, no Content-Length).
    """

    files: dict[str, bytes] = field(default_factory=dict)
    actions: dict[str, list[str]] = field(default_factory=dict)
    always: dict[str, str] = field(default_factory=dict)
    listed_size: dict[str, int] = field(default_factory=dict)
    listings: dict[str, str] = field(default_factory=dict)
    decoys: bool = True
    sleep_s: float = 1.0
    delay_s: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    inflight: int = 0
    max_inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_days(self, first: date, last: date, hours: range = range(24)) -> list[str]:
        names = hourly_names(first, last, hours)
        for name in names:
            self.files[layout.key_for(name)] = content_for(name)
        return names

    def folder_listing(self, folder: str) -> str | None:
        if folder in self.listings:
            return self.listings[folder]
        entries = []
        for path, data in sorted(self.files.items()):
            head, _, name = path.rpartition("/")
            if head != folder:
                continue
            if self.decoys:
                entries.append((name.replace("projectviews", "pageviews") + ".gz", "54281734"))
            entries.append((name, str(self.listed_size.get(path, len(data)))))
        return listing_html(folder, entries) if entries else None

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.path.split("?", 1)[0]
        path = raw[len(PREFIX) + 1 :] if raw.startswith(PREFIX + "/") else "\0"
        with self.lock:
            self.requests[path] += 1
            queue = self.actions.get(path)
            action = queue.pop(0) if queue else self.always.get(path)
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            self._respond(handler, path, action)
        finally:
            with self.lock:
                self.inflight -= 1

    def _respond(self, handler: BaseHTTPRequestHandler, path: str, action: str | None) -> None:
        if action in ("503", "429", "500", "403"):
            return self._send(handler, int(action), b"nope")
        if action == "timeout":
            time.sleep(self.sleep_s)
        if path.endswith("/"):
            html = self.folder_listing(path[:-1])
            if html is None:
                return self._send(handler, 404, b"Not Found")
            return self._send(handler, 200, html.encode(), "text/html")
        if path not in self.files:
            return self._send(handler, 404, b"Not Found")
        if self.delay_s:
            time.sleep(self.delay_s)
        data = self.files[path]
        if action == "truncate":
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data) + 100))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(data)
            handler.close_connection = True
            return None
        if action == "chunked":
            handler.send_response(200)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for start in range(0, len(data), 1000):
                piece = data[start : start + 1000]
                handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            handler.wfile.write(b"0\r\n\r\n")
            return None
        return self._send(handler, 200, data)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "text/plain") -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def file_requests(self) -> int:
        return sum(n for path, n in self.requests.items() if not path.endswith("/"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle + delayed ACKs cost ~40 ms each.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.dumps.respond(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping for a "timeout" must not hold up the teardown

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that gave up (timeouts) make broken pipes: expected here


@contextlib.contextmanager
def serve_dumps(dumps: FakeDumps) -> Iterator[str]:
    """Serve ``dumps`` on 127.0.0.1 (free port); yields the base URL ``http://.../other/pageviews``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.dumps = dumps  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PREFIX}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
