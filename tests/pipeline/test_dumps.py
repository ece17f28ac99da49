"""The dumps site as a source: listing parsing, the HTTP source (mocked transport), the folder source."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from wikichurn.core import layout
from wikichurn.core.settings import IngestSettings
from wikichurn.pipeline.ingest.dumps import (
    DumpsError,
    FolderDumpsSource,
    HttpDumpsSource,
    RemoteFile,
    open_source,
    parse_listing,
)

NAME = "projectviews-20240101-000000"


def nginx_listing(folder: str, rows: list[str]) -> str:
    """An autoindex page the way dumps.wikimedia.org writes them."""
    return (
        f"<html>\r\n<head><title>Index of /other/pageviews/{folder}/</title></head>\r\n<body>\r\n"
        f'<h1>Index of /other/pageviews/{folder}/</h1><hr><pre><a href="../">../</a>\r\n'
        + "\r\n".join(rows)
        + "\r\n</pre><hr></body>\r\n</html>\r\n"
    )


def row(href: str, size: str = "88873", text: str | None = None) -> str:
    text = href if text is None else text
    return f'<a href="{href}">{text}</a>{" " * max(1, 51 - len(text))}03-Aug-2024 07:12 {size:>19}'


REAL = nginx_listing(
    "2024/2024-08",
    [
        row("pageviews-20240803-050000.gz", "54281734"),
        row("pageviews-20240803-060000.gz", "54873211"),
        row("projectviews-20240803-050000", "88702"),
        row("projectviews-20240803-060000", "88873"),
        row("projectviews-20240803-070000", "-"),
        # Some old files end in non-zero seconds.
        row("projectviews-20150501-010001", "40012"),
    ],
)

APACHE_TABLE = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html><head><title>Index of /2024/2024-08</title></head><body><h1>Index of /2024/2024-08</h1>
<table><tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th>
<th><a href="?C=S;O=A">Size</a></th></tr>
<tr><td><a href="/2024/">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td></tr>
<tr><td><a href="projectviews-20240803-060000">projectviews-20240803-060000</a></td>
<td align="right">2024-08-03 07:12  </td><td align="right"> 88K</td></tr>
<tr><td><a href="projectviews-20240803-070000">projectviews-20240803-070000</a></td>
<td align="right">2024-08-03 08:12  </td><td align="right">90112</td></tr>
</table><address>Apache/2.4.41 (Ubuntu) Server at localhost Port 8080</address></body></html>
"""

HOSTILE_HREFS = [
    "../../etc/passwd",
    f"{NAME}/../x",
    f"../{NAME}",
    f"%2e%2e/{NAME}",
    "%2e%2e%2fetc%2fpasswd",
    "projectviews%2D20240101-000000",
    f"http://evil/{NAME}",
    f"https://evil.example/2024/2024-01/{NAME}",
    f"//evil/{NAME}",
    f"/other/pageviews/2024/2024-01/{NAME}",
    f"./{NAME}",
    f"{NAME}/",
    f"{NAME}.gz",
    f"{NAME}?x=1",
    f"{NAME}#frag",
    f"{NAME}&#10;",  # newline after unescaping: `$` alone would accept it, fullmatch does not
    f" {NAME}",
    f"{NAME}\\..\\x",
    "projectviews-２０２４0101-000000",  # non-ASCII digits
    "PROJECTVIEWS-20240101-000000",
    "projectviews-2024011-000000",
    "pageviews-20240101-000000.gz",
    "pageviews-20240101-000000",
    "javascript:alert(1)",
    "",
]


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        pytest.param(
            REAL,
            [
                RemoteFile("projectviews-20150501-010001", 40012),
                RemoteFile("projectviews-20240803-050000", 88702),
                RemoteFile("projectviews-20240803-060000", 88873),
                RemoteFile("projectviews-20240803-070000", None),
            ],
            id="real-looking-nginx",
        ),
        pytest.param(
            APACHE_TABLE,
            [RemoteFile("projectviews-20240803-060000", None), RemoteFile("projectviews-20240803-070000", 90112)],
            id="apache-table-human-sizes",
        ),
        pytest.param(nginx_listing("2024/2024-01", []), [], id="empty-month"),
        pytest.param("", [], id="empty-page"),
        pytest.param("not html at all <<<>>> &&&", [], id="garbage"),
        pytest.param(
            nginx_listing("2024/2024-01", [row(h) for h in HOSTILE_HREFS]),
            [],
            id="hostile-hrefs",
        ),
        pytest.param(
            nginx_listing("2024/2024-01", [row("../../etc/passwd", text=NAME)]),
            [],
            id="innocent-text-hostile-href",
        ),
        pytest.param(
            nginx_listing("2024/2024-01", [row(NAME, text="../../etc/passwd")]),
            [RemoteFile(NAME, 88873)],
            id="href-counts-not-text",
        ),
        pytest.param(
            # Matches the name pattern; layout rejects month 13 later (ingest skips it with a warning).
            nginx_listing("2024/2024-13", [row("projectviews-20241301-000000", "10")]),
            [RemoteFile("projectviews-20241301-000000", 10)],
            id="month-13-passes-the-pattern",
        ),
        pytest.param(
            nginx_listing("2024/2024-01", [row(NAME, "100"), row(NAME, "200")]),
            [RemoteFile(NAME, 100)],
            id="duplicates-once",
        ),
        pytest.param(
            f'<PRE><A HREF="{NAME}">x</A> 01-Jan-2024 01:00 123\n<a name="x">anchor</a> 456</PRE>',
            [RemoteFile(NAME, 123)],
            id="uppercase-tags-and-anchor-without-href",
        ),
        pytest.param(
            f"<pre><a href={NAME}>x</a> 01-Jan-2024 01:00 77\n<a href='projectviews-20240101-010000'>y",
            [RemoteFile(NAME, 77), RemoteFile("projectviews-20240101-010000", None)],
            id="unquoted-single-quoted-unclosed",
        ),
        pytest.param(
            f'<pre><a href="{NAME}">x</a></pre><address>Server at dumps Port 443</address>',
            [RemoteFile(NAME, None)],
            id="footer-digits-are-not-a-size",
        ),
        pytest.param(
            f'<pre><a href="{NAME}">x</a>   01-Jan-2024 01:00   12a4\n</pre>',
            [RemoteFile(NAME, None)],
            id="non-numeric-size",
        ),
    ],
)
def test_parse_listing(html: str, expected: list[RemoteFile]) -> None:
    assert parse_listing(html) == expected


def test_parse_listing_month_13_is_rejected_by_layout() -> None:
    [file] = parse_listing(nginx_listing("2024/2024-13", [row("projectviews-20241301-000000")]))
    assert layout.parse_file_time(file.name) is None
    with pytest.raises(ValueError):
        layout.key_for(file.name)


def test_every_parsed_name_makes_a_safe_key() -> None:
    html = nginx_listing("2024/2024-01", [row(h) for h in HOSTILE_HREFS] + [row(NAME)])
    for file in parse_listing(html):
        key = layout.key_for(file.name)
        assert key == f"2024/2024-01/{NAME}"


# ---------------------------------------------------------------- HTTP source, mocked transport

BASE = "https://dumps.example/other/pageviews"
FOLDER = "2024/2024-01"
URL = f"{BASE}/{FOLDER}/{NAME}"

Handler = Callable[[httpx.Request], httpx.Response]


def make_source(handler: Handler, **overrides: object) -> tuple[HttpDumpsSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = IngestSettings(**{"retries": 3, "backoff_s": 0.0, "timeout_s": 5.0, **overrides})
    client = httpx.Client(
        transport=httpx.MockTransport(record),
        headers={"Accept-Encoding": "identity", "User-Agent": "test"},
    )
    return HttpDumpsSource(BASE + "/", settings, client=client), seen


def sequence(*responses: httpx.Response | Exception) -> Handler:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        # A fresh response per request: one response object can be read only once.
        return httpx.Response(item.status_code, headers=item.headers, content=item.content)

    return handler


def test_list_month_parses_and_builds_the_url() -> None:
    source, seen = make_source(sequence(httpx.Response(200, text=REAL)))
    files = source.list_month("2024/2024-08")
    assert [f.name for f in files][1:] == [
        "projectviews-20240803-050000",
        "projectviews-20240803-060000",
        "projectviews-20240803-070000",
    ]
    assert str(seen[0].url) == f"{BASE}/2024/2024-08/"


def test_missing_month_is_empty() -> None:
    source, seen = make_source(sequence(httpx.Response(404, text="Not Found")))
    assert source.list_month(FOLDER) == []
    assert len(seen) == 1


@pytest.mark.parametrize("folder", ["2024/2024-1", "../2024-01", "2024/2024-01/..", "2024-01", "2024/2024-01/"])
def test_bad_folder_rejected(folder: str) -> None:
    source, seen = make_source(sequence(httpx.Response(200, text="")))
    with pytest.raises(ValueError):
        source.list_month(folder)
    assert seen == []


def test_fetch_returns_bytes() -> None:
    source, seen = make_source(sequence(httpx.Response(200, content=b"en - 1 0\n")))
    assert source.fetch(FOLDER, RemoteFile(NAME, 9)) == b"en - 1 0\n"
    assert str(seen[0].url) == URL


@pytest.mark.parametrize(
    "transient",
    [
        httpx.Response(503),
        httpx.Response(500),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    ],
    ids=["503", "500", "429", "connect", "timeout", "closed-early"],
)
def test_transient_failures_are_retried(transient: httpx.Response | Exception) -> None:
    source, seen = make_source(sequence(transient, transient, httpx.Response(200, content=b"abc")))
    assert source.fetch(FOLDER, RemoteFile(NAME, 3)) == b"abc"
    assert len(seen) == 3


def test_retries_run_out() -> None:
    source, seen = make_source(sequence(httpx.Response(503)), retries=2)
    with pytest.raises(DumpsError, match="503") as info:
        source.fetch(FOLDER, RemoteFile(NAME, 3))
    assert info.value.retryable
    assert len(seen) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 410, 451])
def test_other_4xx_not_retried(status: int) -> None:
    source, seen = make_source(sequence(httpx.Response(status)))
    with pytest.raises(DumpsError, match=str(status)) as info:
        source.fetch(FOLDER, RemoteFile(NAME, 3))
    assert not info.value.retryable
    assert len(seen) == 1


def test_listing_5xx_retried_then_fails() -> None:
    source, seen = make_source(sequence(httpx.Response(502)), retries=1)
    with pytest.raises(DumpsError):
        source.list_month(FOLDER)
    assert len(seen) == 2


def test_file_404_is_an_error() -> None:
    source, seen = make_source(sequence(httpx.Response(404)))
    with pytest.raises(DumpsError, match="404"):
        source.fetch(FOLDER, RemoteFile(NAME, 3))
    assert len(seen) == 1


def test_content_length_mismatch_rejected_and_retried() -> None:
    short = httpx.Response(200, headers={"Content-Length": "100"}, content=b"abc")
    source, seen = make_source(sequence(short), retries=2)
    with pytest.raises(DumpsError, match="truncated"):
        source.fetch(FOLDER, RemoteFile(NAME, None))
    assert len(seen) == 3


def test_content_length_mismatch_then_good() -> None:
    short = httpx.Response(200, headers={"Content-Length": "100"}, content=b"abc")
    source, seen = make_source(sequence(short, httpx.Response(200, content=b"abc")))
    assert source.fetch(FOLDER, RemoteFile(NAME, 3)) == b"abc"
    assert len(seen) == 2


def test_size_differs_from_listing_rejected() -> None:
    source, seen = make_source(sequence(httpx.Response(200, content=b"abc")), retries=1)
    with pytest.raises(DumpsError, match="listing says 10"):
        source.fetch(FOLDER, RemoteFile(NAME, 10))
    assert len(seen) == 2


def test_declared_oversize_rejected_without_retry() -> None:
    source, seen = make_source(sequence(httpx.Response(200, content=b"x" * 101)), max_file_bytes=100)
    with pytest.raises(DumpsError, match="cap"):
        source.fetch(FOLDER, RemoteFile(NAME, None))
    assert len(seen) == 1


def test_streamed_oversize_stops_reading() -> None:
    pulled = []

    def endless() -> Iterator[bytes]:
        for i in range(10_000):
            pulled.append(i)
            yield b"x" * 1000

    source, seen = make_source(lambda request: httpx.Response(200, content=endless()), max_file_bytes=5000)
    with pytest.raises(DumpsError, match="cap"):
        source.fetch(FOLDER, RemoteFile(NAME, None))
    assert len(seen) == 1
    assert len(pulled) <= 10  # stopped right after the cap, did not read the whole body


def test_fetch_refuses_non_projectviews_names() -> None:
    source, seen = make_source(sequence(httpx.Response(200, content=b"root:x:0:0")))
    with pytest.raises(DumpsError):
        source.fetch(FOLDER, RemoteFile("../../etc/passwd", None))
    assert seen == []


def test_default_client_headers_and_close() -> None:
    source = HttpDumpsSource(BASE, IngestSettings(timeout_s=3))
    try:
        assert source.client.headers["accept-encoding"] == "identity"
        assert "wikichurn" in source.client.headers["user-agent"]
        assert source.client.timeout.read == 3
    finally:
        source.close()
    assert source.client.is_closed


@pytest.mark.parametrize("url", ["ftp://x/y", "http://", "not a url"])
def test_http_source_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        HttpDumpsSource(url, IngestSettings())


# ---------------------------------------------------------------- folder source and open_source


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    month = tmp_path / "site" / "2024" / "2024-01"
    month.mkdir(parents=True)
    (month / NAME).write_bytes(b"en - 1 0\n")
    (month / "projectviews-20240101-010000").write_bytes(b"en - 22 0\nde - 3 0\n")
    (month / "pageviews-20240101-000000.gz").write_bytes(b"\x1f\x8b")
    (month / "index.html").write_text(nginx_listing(FOLDER, [row("projectviews-20240101-050000")]))
    (month / "projectviews-20240101-020000.tmp").write_bytes(b"x")
    (month / "projectviews-20240101-030000").mkdir()  # a folder with a file's name
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not take me")
    os.symlink(secret, month / "projectviews-20240101-040000")
    return tmp_path / "site"


def test_folder_source_lists_only_projectviews_files(mirror: Path) -> None:
    source = FolderDumpsSource(mirror)
    assert source.list_month(FOLDER) == [
        RemoteFile(NAME, 9),
        RemoteFile("projectviews-20240101-010000", 19),
    ]
    assert source.list_month("2024/2024-02") == []
    assert source.fetch(FOLDER, RemoteFile(NAME, 9)) == b"en - 1 0\n"


def test_folder_source_checks(mirror: Path) -> None:
    source = FolderDumpsSource(mirror, IngestSettings(max_file_bytes=10))
    with pytest.raises(DumpsError, match="mismatch"):
        source.fetch(FOLDER, RemoteFile(NAME, 99))
    with pytest.raises(DumpsError, match="cap"):
        source.fetch(FOLDER, RemoteFile("projectviews-20240101-010000", 19))
    with pytest.raises(DumpsError):
        source.fetch(FOLDER, RemoteFile("../../secret", None))
    with pytest.raises(DumpsError, match="cannot read"):
        source.fetch(FOLDER, RemoteFile("projectviews-20240101-230000", None))
    with pytest.raises(ValueError):
        source.list_month("../..")


def test_open_source(mirror: Path) -> None:
    settings = IngestSettings()
    http = open_source("http://127.0.0.1:9/other/pageviews", settings)
    assert isinstance(http, HttpDumpsSource)
    http.close()
    assert isinstance(open_source("https://dumps.wikimedia.org/other/pageviews/", settings), HttpDumpsSource)
    for spec in (str(mirror), mirror.as_uri(), f"file://{mirror}"):
        source = open_source(spec, settings)
        assert isinstance(source, FolderDumpsSource)
        assert source.root == mirror.resolve()
    with pytest.raises(ValueError):
        open_source("ftp://dumps/other", settings)
    with pytest.raises(ValueError):
        open_source("file://otherhost/x", settings)
    with pytest.raises(DumpsError):
        open_source(str(mirror / "missing"), settings)
