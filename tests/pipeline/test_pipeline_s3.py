"""The pipeline with its raw zone and its lake on S3 (the S3-compatible server the tests start)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from tests.fixtures.s3 import DUMMY_KEY_ID, DUMMY_SECRET, REGION, S3Server
from wikichurn.core import tables
from wikichurn.core.settings import S3Settings, Settings
from wikichurn.core.storage import open_store
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.pipeline.lakehouse.run import run_pipeline
from wikichurn.pipeline.spark import build_spark

pytestmark = [pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def s3_lake(s3_server: S3Server) -> Iterator[tuple[Settings, SparkSession]]:
    """A Sail server started with this S3 endpoint in its environment (Sail reads it at start)."""
    s3 = S3Settings(
        endpoint_url=s3_server.endpoint_url,
        region=REGION,
        access_key_id=DUMMY_KEY_ID,
        secret_access_key=DUMMY_SECRET,
    )
    bucket = s3_server.make_bucket("lake")
    settings = Settings(raw_uri=f"s3://{bucket}/raw", lake_uri=f"s3://{bucket}/lake", s3=s3)
    saved = dict(os.environ)
    try:
        with build_spark(settings) as spark:
            yield settings, spark
    finally:
        os.environ.clear()
        os.environ.update(saved)


def storage_options(s3: S3Settings) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": str(s3.endpoint_url),
        "AWS_REGION": s3.region,
        "AWS_ACCESS_KEY_ID": str(s3.access_key_id),
        "AWS_SECRET_ACCESS_KEY": str(s3.secret_access_key),
        "AWS_ALLOW_HTTP": "true",
    }


def test_pipeline_reads_raw_from_s3_and_writes_delta_to_s3(s3_lake: tuple[Settings, SparkSession]) -> None:
    settings, spark = s3_lake
    raw = open_store(settings.raw_uri, settings.s3)
    for hour in range(24):
        raw.put(f"2024/2024-02/projectviews-20240229-{hour:02d}0000", b"de - 3 0\nen - 10 0\nen.m - x 0\n")
    raw.put("2024/2024-03/projectviews-20240301-000000", b"en - 7 0\n")

    result = run_pipeline(spark, settings)

    assert (result.files_new, result.bronze_rows, result.clean_rows, result.quarantined_rows) == (25, 73, 49, 24)
    gold = DeltaTable(f"{settings.lake_uri}/{tables.GOLD_DAILY}", storage_options=storage_options(settings.s3))
    rows = {(r["domain_code"], r["event_date"]): r["count_views"] for r in gold.to_pyarrow_table().to_pylist()}
    assert rows == {("de", date(2024, 2, 29)): 72, ("en", date(2024, 2, 29)): 240, ("en", date(2024, 3, 1)): 7}
    lake = Lake(spark, settings)
    assert lake.exists(tables.GOLD_DAILY) and lake.count(tables.BRONZE) == 73

    again = run_pipeline(spark, settings)
    assert again.files_new == 0 and again.bronze_rows == 0
    assert lake.count(tables.SILVER_CLEAN) == 49
