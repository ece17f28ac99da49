"""Ingestion into S3 (``s3://bucket/raw``) on the S3-compatible server started by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from tests.fixtures.s3 import S3Server
from tests.utils.dumps import FakeDumps, hourly_names, serve_dumps
from wikichurn.core import layout
from wikichurn.core.settings import IngestSettings, S3Settings, Settings
from wikichurn.core.storage import open_store
from wikichurn.pipeline.ingest.land import ingest

pytestmark = pytest.mark.s3

START, END = date(2024, 7, 31), date(2024, 8, 1)  # two month folders


@pytest.fixture
def site() -> Iterator[tuple[FakeDumps, str]]:
    dumps = FakeDumps()
    dumps.add_days(date(2024, 7, 30), date(2024, 8, 2))
    with serve_dumps(dumps) as url:
        yield dumps, url


def objects(server: S3Server, bucket: str) -> dict[str, int]:
    pages = server.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}


def test_ingest_into_s3(site: tuple[FakeDumps, str], s3_server: S3Server, s3_settings: S3Settings) -> None:
    dumps, url = site
    bucket = s3_server.make_bucket("raw")
    dest = f"s3://{bucket}/raw"
    settings = Settings(raw_uri=dest, s3=s3_settings, ingest=IngestSettings(retries=1, backoff_s=0, concurrency=4))

    summary = ingest(url, dest, START, END, settings)
    assert (summary.listed, summary.downloaded, summary.failed) == (48, 48, 0), summary.failures

    expected = {f"raw/{layout.key_for(n)}": len(dumps.files[layout.key_for(n)]) for n in hourly_names(START, END)}
    assert objects(s3_server, bucket) == expected
    assert "raw/2024/2024-07/projectviews-20240731-000000" in expected
    assert "raw/2024/2024-08/projectviews-20240801-230000" in expected
    key = layout.key_for("projectviews-20240801-050000")
    body = s3_server.client.get_object(Bucket=bucket, Key=f"raw/{key}")["Body"].read()
    assert body == dumps.files[key]
    # The store sees the same keys, relative to the prefix.
    store = open_store(dest, s3_settings)
    assert [f.key for f in store.list_files()] == sorted(layout.key_for(n) for n in hourly_names(START, END))

    # Idempotent: the rerun lists the bucket and downloads nothing.
    file_requests = dumps.file_requests()
    again = ingest(url, dest, START, END, settings)
    assert (again.listed, again.downloaded, again.skipped, again.failed) == (48, 0, 48, 0)
    assert dumps.file_requests() == file_requests

    # A file that changed upstream is replaced; an extended range adds only the new day.
    dumps.files[key] = b"en - 123456 0\nde - 7 0\nfr - 8 0\nit - 9 0\n"
    extended = ingest(url, dest, START, END.replace(day=2), settings)
    assert (extended.listed, extended.downloaded, extended.skipped) == (72, 25, 47)
    assert s3_server.client.get_object(Bucket=bucket, Key=f"raw/{key}")["Body"].read() == dumps.files[key]
    assert len(objects(s3_server, bucket)) == 72


def test_buckets_are_unique_and_isolated(s3_server: S3Server) -> None:
    first, second = s3_server.make_bucket("raw"), s3_server.make_bucket("raw")
    assert first != second
    s3_server.client.put_object(Bucket=first, Key="a", Body=b"x")
    assert objects(s3_server, second) == {}
