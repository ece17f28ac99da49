"""The Wikimedia dumps site (or a mirror of it, or a local copy) as a source of projectviews files.

A source answers two questions: which projectviews files a month folder (``YYYY/YYYY-MM``) holds,
with their sizes when known, and what the bytes of one of them are. Two implementations:

- :class:`HttpDumpsSource` reads the site's Apache directory listings over HTTP(S), with timeouts,
  retries with exponential backoff on transient failures, a size cap and truncation checks;
- :class:`FolderDumpsSource` reads a local folder laid out like the site.

Only names matching :data:`wikichurn.core.layout.PROJECTVIEWS_NAME` as a whole ever leave this module,
so nothing a listing says (``../``, ``%2e``, absolute URLs, ``pageviews-*.gz``) can name a file
outside a month folder or a key outside the destination.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlparse

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from wikichurn.core import layout

if TYPE_CHECKING:
    from wikichurn.core.settings import IngestSettings

log = logging.getLogger(__name__)

USER_AGENT = "wikichurn/0.1 (projectviews ingestion; https://github.com/wikichurn)"
# A month listing of the real site is ~150 KB (744 hours x 2 files); anything far larger is not one.
MAX_LISTING_BYTES = 20_000_000
# Longest wait between two attempts, whatever the backoff or a Retry-After header says.
MAX_WAIT_S = 60.0
# A download attempt may take at most this many times the (per-read) timeout in total, so a server
# dripping one byte per read cannot hold a worker forever.
TOTAL_TIMEOUT_FACTOR = 4

_FOLDER = re.compile(r"\d{4}/\d{4}-\d{2}", re.ASCII)
_SIZE = re.compile(r"\d+", re.ASCII)
# Tags that end a listing entry: the size is never read from a footer such as "... Port 443".
_ROW_END = frozenset({"tr", "pre", "hr", "table", "body", "address", "html", "p", "div"})


class DumpsError(Exception):
    """A listing or a file could not be fetched, or what came back is not acceptable.

    ``retryable`` is True for transient failures (timeouts, connection errors, 5xx, 429, truncated
    bodies); the HTTP source retries those and re-raises the last one when attempts run out.
    """

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class RemoteFile:
    """One projectviews file of a month folder; ``size`` in bytes, None when the listing has none."""

    name: str
    size: int | None


def is_projectviews_name(name: str) -> bool:
    """True when ``name`` as a whole is a projectviews file name (no path, no trailing newline)."""
    return layout.PROJECTVIEWS_NAME.fullmatch(name) is not None


def _check_folder(folder: str) -> str:
    if not _FOLDER.fullmatch(folder):
        raise ValueError(f"not a month folder (YYYY/YYYY-MM): {folder!r}")
    return folder


class _ListingParser(HTMLParser):
    """Collects ``(href, text after the link)`` pairs from an autoindex page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, list[str]]] = []
        self._trailing: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _ROW_END:
            self._trailing = None
        if tag != "a":
            return
        href = next((value for key, value in attrs if key == "href"), None)
        if href is None:
            self._trailing = None
            return
        self._trailing = []
        self.links.append((href, self._trailing))

    def handle_endtag(self, tag: str) -> None:
        if tag in _ROW_END:
            self._trailing = None
        elif tag == "a" and self._trailing is not None:
            # Text until the next link is this entry's date and size (also in table layouts).
            self._trailing.clear()

    def handle_data(self, data: str) -> None:
        if self._trailing is not None:
            self._trailing.append(data)


def parse_listing(html: str) -> list[RemoteFile]:
    """The projectviews files of an Apache/nginx autoindex page, sorted by name.

    Only links whose whole ``href`` is a projectviews file name are kept; the size is the exact byte
    count printed after the link (``-`` for folders, human-readable sizes such as ``88K`` and
    missing sizes give None). A name listed twice is kept once, with its first size.
    """
    parser = _ListingParser()
    parser.feed(html)
    parser.close()
    found: dict[str, RemoteFile] = {}
    for href, trailing in parser.links:
        if not is_projectviews_name(href) or href in found:
            continue
        tokens = "".join(trailing).split()
        size = int(tokens[-1]) if tokens and _SIZE.fullmatch(tokens[-1]) else None
        found[href] = RemoteFile(href, size)
    return sorted(found.values(), key=lambda f: f.name)


class DumpsSource(Protocol):
    """Where projectviews files come from."""

    def list_month(self, folder: str) -> list[RemoteFile]:
        """The projectviews files of ``folder`` (``YYYY/YYYY-MM``); a missing month is empty."""
        ...

    def fetch(self, folder: str, file: RemoteFile) -> bytes:
        """The whole content of ``file`` from ``folder``; :class:`DumpsError` otherwise."""
        ...


def _wait(backoff_s: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff, or the server's Retry-After when it gave one (capped)."""

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_WAIT_S)
        return min(backoff_s * 2 ** (state.attempt_number - 1), MAX_WAIT_S)

    return wait


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if _SIZE.fullmatch(value.strip()) else None


class HttpDumpsSource:
    """The dumps site (or a mirror) over HTTP(S): ``<base_url>/YYYY/YYYY-MM/<name>``."""

    def __init__(self, base_url: str, settings: IngestSettings, client: httpx.Client | None = None) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self._own_client = client is None
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(settings.timeout_s),
            follow_redirects=True,
            # Exact bytes: sizes are compared with the listing and with Content-Length.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=max(settings.concurrency, 1) + 2),
        )

    def close(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._own_client:
            self.client.close()

    def __enter__(self) -> HttpDumpsSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=_wait(self.settings.backoff_s),
            retry=retry_if_exception(lambda err: isinstance(err, DumpsError) and err.retryable),
            before_sleep=lambda state: log.info(
                "retrying %s (attempt %d failed: %s)",
                state.args[0] if state.args else "request",
                state.attempt_number,
                state.outcome.exception() if state.outcome else "?",
            ),
            reraise=True,
        )

    def _get(self, url: str, limit: int, expected_size: int | None) -> bytes | None:
        """One attempt: the body of ``url``, None on 404; DumpsError on anything unacceptable."""
        deadline = time.monotonic() + self.settings.timeout_s * TOTAL_TIMEOUT_FACTOR
        try:
            with self.client.stream("GET", url) as response:
                status = response.status_code
                if status == 404:
                    return None
                if status == 429 or status >= 500:
                    raise DumpsError(f"HTTP {status} for {url}", retryable=True, retry_after=_retry_after(response))
                if status != 200:
                    raise DumpsError(f"HTTP {status} for {url}")
                declared = response.headers.get("content-length")
                declared_size = int(declared) if declared and _SIZE.fullmatch(declared) else None
                if declared_size is not None and declared_size > limit:
                    raise DumpsError(f"{url} is {declared_size} bytes, over the {limit} byte cap")
                encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
                chunks: list[bytes] = []
                received = 0
                # Identity encoding was asked for, so these are the raw bytes; should a server
                # compress anyway, the cap applies to the decoded bytes (no decompression bomb).
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > limit:
                        raise DumpsError(f"{url} exceeds the {limit} byte cap; stopped reading")
                    if time.monotonic() > deadline:
                        raise DumpsError(f"{url} took too long to download", retryable=True)
                    chunks.append(chunk)
        except httpx.TimeoutException as err:
            raise DumpsError(f"timeout fetching {url}: {err!r}", retryable=True) from err
        except (httpx.NetworkError, httpx.RemoteProtocolError) as err:
            # RemoteProtocolError covers a connection closed before Content-Length bytes arrived.
            raise DumpsError(f"connection error fetching {url}: {err!r}", retryable=True) from err
        except httpx.HTTPError as err:
            raise DumpsError(f"error fetching {url}: {err!r}") from err
        body = b"".join(chunks)
        if declared_size is not None and not encoded and len(body) != declared_size:
            raise DumpsError(f"truncated body for {url}: {len(body)} of {declared_size} bytes", retryable=True)
        if expected_size is not None and len(body) != expected_size:
            raise DumpsError(
                f"size mismatch for {url}: got {len(body)} bytes, the listing says {expected_size}",
                retryable=True,
            )
        return body

    def list_month(self, folder: str) -> list[RemoteFile]:
        url = f"{self.base_url}/{_check_folder(folder)}/"
        body = self._retrying()(self._get, url, MAX_LISTING_BYTES, None)
        if body is None:
            return []
        return parse_listing(body.decode("utf-8", errors="replace"))

    def fetch(self, folder: str, file: RemoteFile) -> bytes:
        if not is_projectviews_name(file.name):
            raise DumpsError(f"refusing to fetch a non-projectviews name: {file.name!r}")
        url = f"{self.base_url}/{_check_folder(folder)}/{file.name}"
        body = self._retrying()(self._get, url, self.settings.max_file_bytes, file.size)
        if body is None:
            raise DumpsError(f"HTTP 404 for {url}")
        return body


class FolderDumpsSource:
    """A local folder laid out like the dumps site (``<root>/YYYY/YYYY-MM/<name>``)."""

    def __init__(self, root: str | Path, settings: IngestSettings | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DumpsError(f"source folder does not exist: {self.root}")
        self.max_file_bytes = settings.max_file_bytes if settings else None

    def list_month(self, folder: str) -> list[RemoteFile]:
        month = self.root / _check_folder(folder)
        if not month.is_dir():
            return []
        found = []
        for entry in month.iterdir():
            # Regular files only: a symlink could point anywhere; index.html and decoys do not match.
            if is_projectviews_name(entry.name) and entry.is_file() and not entry.is_symlink():
                found.append(RemoteFile(entry.name, entry.stat().st_size))
        return sorted(found, key=lambda f: f.name)

    def fetch(self, folder: str, file: RemoteFile) -> bytes:
        if not is_projectviews_name(file.name):
            raise DumpsError(f"refusing to read a non-projectviews name: {file.name!r}")
        path = self.root / _check_folder(folder) / file.name
        try:
            size = path.stat().st_size
            if self.max_file_bytes is not None and size > self.max_file_bytes:
                raise DumpsError(f"{path} is {size} bytes, over the {self.max_file_bytes} byte cap")
            data = path.read_bytes()
        except OSError as err:
            raise DumpsError(f"cannot read {path}: {err}") from err
        if file.size is not None and len(data) != file.size:
            raise DumpsError(f"size mismatch for {path}: {len(data)} bytes, listed as {file.size}")
        return data

    def close(self) -> None:
        """Nothing to release (symmetry with :class:`HttpDumpsSource`)."""


def open_source(url_or_dir: str, settings: IngestSettings) -> DumpsSource:
    """The source behind ``url_or_dir``: an http(s) URL, a ``file://`` URL or a folder."""
    parsed = urlparse(url_or_dir)
    if parsed.scheme in ("http", "https"):
        return HttpDumpsSource(url_or_dir, settings)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URLs must be local: {url_or_dir!r}")
        return FolderDumpsSource(unquote(parsed.path), settings)
    if "://" in url_or_dir:
        raise ValueError(f"unsupported source {url_or_dir!r}: use an http(s) URL or a folder")
    return FolderDumpsSource(url_or_dir, settings)
