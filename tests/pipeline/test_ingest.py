"""Ingestion against a small dumps site served by the test itself on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.utils.dumps import END, START, FakeDumps, content_for, hourly_names, listing_html, serve_dumps
from wikichurn.core import layout
from wikichurn.core.settings import IngestSettings, Settings
from wikichurn.pipeline.ingest.land import IngestSummary, ingest, lambda_handler


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment must not intercept loopback test traffic.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def dumps() -> FakeDumps:
    site = FakeDumps()
    site.add_days(START - timedelta(days=2), END + timedelta(days=1))
    return site


@pytest.fixture
def base_url(dumps: FakeDumps) -> Iterator[str]:
    with serve_dumps(dumps) as url:
        yield url


def make_settings(raw: Path | str, **ingest: object) -> Settings:
    options = {"retries": 3, "backoff_s": 0.0, "timeout_s": 5.0, "concurrency": 4, **ingest}
    return Settings(raw_uri=str(raw), ingest=IngestSettings(**options))


def landed(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (temporary files included) by relative POSIX path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def expected_files(dumps: FakeDumps, first: date, last: date) -> dict[str, bytes]:
    return {layout.key_for(n): dumps.files[layout.key_for(n)] for n in hourly_names(first, last)}


def test_ingest_lands_the_range(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    summary = ingest(base_url, str(raw), START, END, make_settings(raw))
    expected = expected_files(dumps, START, END)
    assert len(expected) == 72
    assert landed(raw) == expected
    assert (summary.listed, summary.downloaded, summary.skipped, summary.failed) == (72, 72, 0, 0)
    assert summary.bytes_downloaded == sum(len(b) for b in expected.values())
    assert summary.failures == []
    # Only the two month listings and the 72 files were requested: no decoy, no other day.
    assert dumps.requests["2024/2024-07/"] == dumps.requests["2024/2024-08/"] == 1
    assert dumps.file_requests() == 72
    assert not any(p.endswith(".gz") for p in dumps.requests)


def test_rerun_downloads_nothing(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    settings = make_settings(raw)
    ingest(base_url, str(raw), START, END, settings)
    before = landed(raw)
    file_requests = dumps.file_requests()
    again = ingest(base_url, str(raw), START, END, settings)
    assert (again.listed, again.downloaded, again.skipped, again.failed) == (72, 0, 72, 0)
    assert again.bytes_downloaded == 0
    assert dumps.file_requests() == file_requests
    assert landed(raw) == before


def test_incremental_extends_the_range(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    settings = make_settings(raw)
    first = ingest(base_url, str(raw), START, START + timedelta(days=1), settings)
    assert first.downloaded == 48
    second = ingest(base_url, str(raw), START, END, settings)
    assert (second.listed, second.downloaded, second.skipped) == (72, 24, 48)
    assert landed(raw) == expected_files(dumps, START, END)


def test_changed_upstream_is_downloaded_again(
    dumps: FakeDumps, base_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = tmp_path / "raw"
    settings = make_settings(raw)
    ingest(base_url, str(raw), START, START, settings)
    key = layout.key_for("projectviews-20240731-050000")
    dumps.files[key] = b"en - 99999 0\nfr - 1 0\nde - 2 0\n"
    with caplog.at_level(logging.INFO, logger="wikichurn.pipeline.ingest.land"):
        again = ingest(base_url, str(raw), START, START, settings)
    assert (again.downloaded, again.skipped) == (1, 23)
    assert (raw / key).read_bytes() == dumps.files[key]
    assert any("changed upstream" in r.getMessage() for r in caplog.records)


def test_listing_without_sizes_present_means_skip(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    settings = make_settings(raw)
    ingest(base_url, str(raw), START, START, settings)
    entries = [(n, "-") for n in hourly_names(START, START)]
    dumps.listings["2024/2024-07"] = listing_html("2024/2024-07", entries)
    again = ingest(base_url, str(raw), START, START, settings)
    assert (again.listed, again.downloaded, again.skipped) == (24, 0, 24)


@pytest.mark.parametrize("misbehaviour", ["503", "429", "timeout"])
def test_flaky_file_is_retried(misbehaviour: str, dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    key = layout.key_for("projectviews-20240801-030000")
    count = 1 if misbehaviour == "timeout" else 2
    dumps.actions[key] = [misbehaviour] * count
    dumps.sleep_s = 1.0
    settings = make_settings(raw, retries=3, timeout_s=0.3 if misbehaviour == "timeout" else 5.0)
    summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), settings)
    assert (summary.downloaded, summary.failed) == (24, 0), summary.failures
    assert dumps.requests[key] == count + 1
    assert (raw / key).read_bytes() == dumps.files[key]


def test_flaky_listing_is_retried(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    dumps.actions["2024/2024-08/"] = ["503", "500"]
    summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), make_settings(raw))
    assert (summary.downloaded, summary.failed) == (24, 0)
    assert dumps.requests["2024/2024-08/"] == 3


def test_failing_listing_counts_as_failure(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    dumps.always["2024/2024-08/"] = "503"
    summary = ingest(base_url, str(raw), START, END, make_settings(raw, retries=1))
    assert (summary.downloaded, summary.failed) == (24, 1)  # July landed, August's listing failed
    assert summary.failures[0][0] == "2024/2024-08"


def test_permanent_failure_does_not_stop_the_others(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bad = layout.key_for("projectviews-20240801-070000")
    forbidden = layout.key_for("projectviews-20240801-080000")
    dumps.always[bad] = "500"
    dumps.always[forbidden] = "403"
    summary = ingest(base_url, str(raw), START, END, make_settings(raw, retries=2))
    assert (summary.listed, summary.downloaded, summary.failed) == (72, 70, 2)
    assert [name for name, _ in summary.failures] == [bad.rsplit("/")[-1], forbidden.rsplit("/")[-1]]
    assert dumps.requests[bad] == 3  # retried
    assert dumps.requests[forbidden] == 1  # a 403 is not retried
    expected = expected_files(dumps, START, END)
    del expected[bad], expected[forbidden]
    assert landed(raw) == expected
    assert "FAILED projectviews-20240801-070000" in summary.describe()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Settings from the environment only: no YAML, no stray WIKICHURN_/AWS_ variables."""
    for var in list(os.environ):
        if var.startswith(("WIKICHURN_", "AWS_")) or var == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(var)
    conf = tmp_path / "conf"
    conf.mkdir()
    monkeypatch.setenv("WIKICHURN_CONF_DIR", str(conf))
    monkeypatch.setenv("WIKICHURN_INGEST__RETRIES", "1")
    monkeypatch.setenv("WIKICHURN_INGEST__BACKOFF_S", "0")
    monkeypatch.setenv("WIKICHURN_INGEST__TIMEOUT_S", "5")
    yield


def test_cli_exits_non_zero_on_failure(
    dumps: FakeDumps, base_url: str, tmp_path: Path, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wikichurn.cli.app import app

    raw = tmp_path / "raw"
    monkeypatch.setenv("WIKICHURN_SOURCE_URL", base_url)
    monkeypatch.setenv("WIKICHURN_RAW_URI", str(raw))
    bad = layout.key_for("projectviews-20240801-070000")
    dumps.always[bad] = "503"
    runner = CliRunner()
    args = ["ingest", "--start", "2024-08-01", "--end", "2024-08-02"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "1 failed" in output and "FAILED projectviews-20240801-070000: HTTP 503" in output
    assert len(landed(raw)) == 47
    assert dumps.requests[bad] == 2  # WIKICHURN_INGEST__RETRIES=1 reached the source

    # Fixed upstream: the rerun takes only the missing file and succeeds (explicit --source/--dest).
    del dumps.always[bad]
    result = runner.invoke(app, [*args, "--source", base_url, "--dest", str(raw)])
    assert result.exit_code == 0, result.output
    assert "1 downloaded" in " ".join(result.output.split())
    assert len(landed(raw)) == 48


def test_truncated_body_is_rejected(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    key = layout.key_for("projectviews-20240801-100000")
    dumps.always[key] = "truncate"
    summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), make_settings(raw, retries=2))
    assert (summary.downloaded, summary.failed) == (23, 1)
    assert dumps.requests[key] == 3  # a truncated body is retried
    files = landed(raw)  # temporary files would show here too
    assert key not in files and len(files) == 23
    assert all(layout.PROJECTVIEWS_NAME.fullmatch(p.rsplit("/")[-1]) for p in files)


def test_body_shorter_than_listing_is_rejected(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    key = layout.key_for("projectviews-20240801-110000")
    dumps.listed_size[key] = len(dumps.files[key]) + 10
    summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), make_settings(raw, retries=1))
    assert (summary.downloaded, summary.failed) == (23, 1)
    assert "listing says" in summary.failures[0][1]
    assert key not in landed(raw) and len(landed(raw)) == 23


@pytest.mark.parametrize("misbehaviour", [None, "chunked"], ids=["content-length", "chunked"])
def test_oversized_file_is_rejected(misbehaviour: str | None, dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    key = layout.key_for("projectviews-20240801-120000")
    dumps.files[key] = b"en - 1 0\n" * 1000  # 9,000 bytes
    if misbehaviour:
        dumps.always[key] = misbehaviour
    summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), make_settings(raw, max_file_bytes=4000))
    assert (summary.downloaded, summary.failed) == (23, 1)
    assert "cap" in summary.failures[0][1]
    assert dumps.requests[key] == 1  # too big is final, not retried
    assert key not in landed(raw)


def test_chunked_file_within_cap_lands(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    key = layout.key_for("projectviews-20240801-120000")
    dumps.files[key] = b"en - 1 0\n" * 300
    dumps.always[key] = "chunked"
    summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), make_settings(raw))
    assert summary.failed == 0
    assert (raw / key).read_bytes() == dumps.files[key]


HOSTILE = [
    "../../etc/passwd",
    "../../../../../../tmp/projectviews-20240801-000000",
    "projectviews-20240801-000000/../../../../escape",
    "%2e%2e/%2e%2e/projectviews-20240801-010000",
    "..%2f..%2fprojectviews-20240801-020000",
    "http://evil.example/projectviews-20240801-030000",
    "//evil.example/projectviews-20240801-040000",
    "/etc/projectviews-20240801-050000",
    "projectviews-20240801-060000.gz",
    "projectviews-20240801-070000?x=../../y",
    "pageviews-20240801-080000.gz",
]


def test_hostile_listing_lands_nothing_outside_dest(
    dumps: FakeDumps, base_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    work = tmp_path / "work"
    raw = work / "deep" / "raw"
    work.mkdir()
    good = "projectviews-20240801-090000"
    bad_month = "projectviews-20241301-000000"  # matches the pattern, not a real date
    entries = [(href, "9") for href in HOSTILE] + [(bad_month, "9"), (good, str(len(content_for(good))))]
    dumps.listings["2024/2024-08"] = listing_html("2024/2024-08", entries)
    with caplog.at_level(logging.WARNING, logger="wikichurn.pipeline.ingest.land"):
        summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), make_settings(raw))
    assert (summary.listed, summary.downloaded, summary.failed) == (1, 1, 0)
    # Walk everything the test owns: the one good file, at its key, nothing else anywhere.
    everything = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if not p.is_dir())
    assert everything == [f"work/deep/raw/2024/2024-08/{good}"]
    for path in raw.rglob("*"):
        assert path.resolve().is_relative_to(raw.resolve())
    # Only the listing and the good file were requested; hostile names never became URLs.
    assert set(dumps.requests) == {"2024/2024-08/", f"2024/2024-08/{good}"}
    # The month-13 name was skipped with a warning (and the month-13 folder never listed).
    assert any(bad_month in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_bad_month_name_is_skipped_not_fatal(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    names = hourly_names(date(2024, 8, 1), date(2024, 8, 1))
    entries = [(n, str(len(content_for(n)))) for n in names] + [("projectviews-20240832-000000", "3")]
    dumps.listings["2024/2024-08"] = listing_html("2024/2024-08", entries)
    summary = ingest(base_url, str(raw), date(2024, 8, 1), date(2024, 8, 1), make_settings(raw))
    assert (summary.listed, summary.downloaded, summary.failed) == (24, 24, 0)


def test_concurrency_is_bounded(dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    dumps.delay_s = 0.02
    summary = ingest(base_url, str(raw), START, START, make_settings(raw, concurrency=2))
    assert summary.downloaded == 24
    assert 1 <= dumps.max_inflight <= 2


def test_missing_month_and_end_before_start(base_url: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    summary = ingest(base_url, str(raw), date(2023, 1, 1), date(2023, 1, 2), make_settings(raw))
    assert (summary.listed, summary.downloaded, summary.failed) == (0, 0, 0)
    with pytest.raises(ValueError):
        ingest(base_url, str(raw), END, START, make_settings(raw))


def test_folder_source(dumps: FakeDumps, tmp_path: Path) -> None:
    site = tmp_path / "site"
    for path, data in dumps.files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(data)
    for folder in ("2024/2024-07", "2024/2024-08"):
        (site / folder / "index.html").write_text(dumps.folder_listing(folder) or "")
        (site / folder / "pageviews-20240801-000000.gz").write_bytes(b"\x1f\x8b decoy")
    raw = tmp_path / "raw"
    summary = ingest(str(site), str(raw), START, END, make_settings(raw))
    assert (summary.listed, summary.downloaded) == (72, 72)
    assert landed(raw) == expected_files(dumps, START, END)
    again = ingest(site.as_uri(), f"file://{raw}", START, END, make_settings(raw))
    assert (again.downloaded, again.skipped) == (0, 72)


def test_summary_is_json_safe() -> None:
    summary = IngestSummary(listed=3, skipped=1, downloaded=1, failed=1, bytes_downloaded=10, seconds=0.12345)
    summary.failures.append(("projectviews-20240801-000000", "HTTP 503"))
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["failures"] == [{"name": "projectviews-20240801-000000", "error": "HTTP 503"}]
    assert data["seconds"] == 0.123
    assert "3 files listed" in summary.describe() and "1 failed" in summary.describe()


# ---------------------------------------------------------------- AWS Lambda entry point


@pytest.fixture
def lambda_env(cli_env: None, base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    raw = tmp_path / "lambda-raw"
    monkeypatch.setenv("WIKICHURN_SOURCE_URL", base_url)
    monkeypatch.setenv("WIKICHURN_RAW_URI", str(raw))
    return raw


def test_lambda_good_event(lambda_env: Path, dumps: FakeDumps) -> None:
    response = lambda_handler({"start": "2024-07-31", "end": "2024-08-01"}, None)
    assert response["statusCode"] == 200
    assert response["summary"]["downloaded"] == 48
    assert json.loads(json.dumps(response)) == response
    assert landed(lambda_env) == expected_files(dumps, date(2024, 7, 31), date(2024, 8, 1))
    # end defaults to start; a rerun downloads nothing
    again = lambda_handler({"start": "2024-08-01"}, None)
    assert again["statusCode"] == 200
    assert (again["summary"]["listed"], again["summary"]["downloaded"]) == (24, 0)


def test_lambda_defaults_to_yesterday(lambda_env: Path, dumps: FakeDumps) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    dumps.add_days(yesterday, yesterday, hours=range(2))
    response = lambda_handler({}, None)
    assert response["statusCode"] == 200, response
    assert (response["start"], response["end"]) == (yesterday.isoformat(), yesterday.isoformat())
    assert response["summary"]["downloaded"] == 2


def test_lambda_overrides(lambda_env: Path, dumps: FakeDumps, base_url: str, tmp_path: Path) -> None:
    other = tmp_path / "other-raw"
    response = lambda_handler({"start": "2024-08-02", "source": base_url, "dest": str(other)}, None)
    assert response["statusCode"] == 200
    assert len(landed(other)) == 24 and not lambda_env.exists()


@pytest.mark.parametrize(
    "event",
    [
        {"start": "2024-02-30"},
        {"start": "yesterday"},
        {"start": "20240801"},
        {"start": "2024-8-1"},
        {"start": 20240801},
        {"start": ""},
        {"start": "2024-08-02", "end": "2024-08-01"},
        {"start": "2024-01-01", "end": "2024-03-03"},  # 63 days
        {"start": "2024-08-01", "source": ""},
        {"start": "2024-08-01", "dest": 3},
        {"start": "2024-08-01", "source": "ftp://dumps/other"},
        {"start": "2024-08-01", "dest": "gs://bucket/raw"},
        ["2024-08-01"],
    ],
)
def test_lambda_bad_event(lambda_env: Path, dumps: FakeDumps, event: object) -> None:
    response = lambda_handler(event, None)  # type: ignore[arg-type]
    assert response["statusCode"] == 400
    assert isinstance(response["error"], str) and response["error"]
    assert dumps.file_requests() == 0


def test_lambda_62_days_is_allowed(lambda_env: Path) -> None:
    response = lambda_handler({"start": "2024-01-01", "end": "2024-03-02"}, None)
    assert response["statusCode"] == 200
    assert response["summary"]["listed"] == 0  # no data on those days in the test site


def test_lambda_partial_failure(lambda_env: Path, dumps: FakeDumps) -> None:
    dumps.always[layout.key_for("projectviews-20240801-050000")] = "500"
    response = lambda_handler({"start": "2024-08-01"}, None)
    assert response["statusCode"] == 207
    summary = response["summary"]
    assert (summary["downloaded"], summary["failed"]) == (23, 1)
    assert summary["failures"][0]["name"] == "projectviews-20240801-050000"
    assert json.loads(json.dumps(response)) == response
