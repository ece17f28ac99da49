"""Compatibility lane: the same pipeline code on local JVM Spark (classic, parquet tables).

The Delta jars cannot be fetched on these machines, so JVM Spark writes parquet here; the point is
that the transforms are real Spark, not Sail-only. JVM Spark runs in a subprocess through the CLI
(configured only by environment variables, as the docker-compose stack does), Sail in this process,
over the same raw files, and the two lakes must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from tests.utils.raw import full_day, write_raw
from wikichurn.core import tables
from wikichurn.core.settings import Settings
from wikichurn.core.tables import GOLD_FEATURES
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.pipeline.lakehouse.run import run_pipeline

pytestmark = [pytest.mark.jvm, pytest.mark.slow]


def run_on_jvm(raw: Path, lake: Path) -> subprocess.CompletedProcess[str]:
    # This process runs a Spark Connect session, whose marker variables must not reach the JVM run.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_CONNECT", "SPARK_REMOTE"))}
    env = {
        **inherited,
        "WIKICHURN_ENGINE": "spark",
        "WIKICHURN_TABLE_FORMAT": "parquet",
        "WIKICHURN_SPARK__MASTER": "local[2]",
        "WIKICHURN_RAW_URI": str(raw),
        "WIKICHURN_LAKE_URI": str(lake),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    return subprocess.run(
        [sys.executable, "-m", "wikichurn", "pipeline", "run", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )


def sorted_frame(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    df = df.copy()
    df["event_date"] = pd.to_datetime(df["event_date"]).dt.date
    return df[sorted(df.columns)].sort_values(keys).reset_index(drop=True)


def test_pipeline_and_features_on_jvm_spark_match_sail(spark: SparkSession, tmp_path: Path) -> None:
    settings = Settings(raw_uri=str(tmp_path / "raw"), lake_uri=str(tmp_path / "lake_sail"))
    full_day(settings, "20240301", {"en": 100, "en.m": 250, "de.m.s": 3})
    full_day(settings, "20240302", {"en": 90, "fr.d": 2}, hours=range(0, 20))
    write_raw(settings, "projectviews-20240302-200000", ["en - 1 0", "en - 2 0", "x - y 0", " - 1 0", "ok - 1"])
    write_raw(settings, "projectviews-20241399-000000", ["en - 1 0"])
    for day in range(3, 13):  # ten more (incomplete) days, so the features' windows have history
        views = {"en": 100 + 7 * day, "en.m": 250 if day % 4 else 3, "fr.d": day % 3}
        full_day(settings, f"202403{day:02d}", {k: v for k, v in views.items() if v}, hours=range(0, 2))

    run_pipeline(spark, settings)
    jvm_lake = tmp_path / "lake_jvm"
    first = run_on_jvm(Path(settings.raw_uri), jvm_lake)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads(first.stdout)["files_new"] == 24 + 20 + 2 + 10 * 2

    sail = Lake(spark, settings)
    gold_sail = sail.read(tables.GOLD_DAILY).toPandas()
    gold_jvm = pd.read_parquet(jvm_lake / tables.GOLD_DAILY)
    keys = ["domain_code", "event_date"]
    pd.testing.assert_frame_equal(sorted_frame(gold_jvm, keys), sorted_frame(gold_sail, keys), check_dtype=False)

    # The feature job too: the same table, value for value.
    features_sail = sail.read(GOLD_FEATURES).toPandas()
    features_jvm = pd.read_parquet(jvm_lake / GOLD_FEATURES)
    assert len(features_jvm) == len(features_sail) > 0
    pd.testing.assert_frame_equal(
        sorted_frame(features_jvm, keys)[sorted(features_sail.columns)],
        sorted_frame(features_sail, keys)[sorted(features_sail.columns)],
        check_dtype=False,
        rtol=1e-9,
    )

    quarantine_jvm = pd.read_parquet(jvm_lake / tables.SILVER_QUARANTINE)
    quarantine_sail = sail.read(tables.SILVER_QUARANTINE).toPandas()
    assert sorted(quarantine_jvm["dq_reason"]) == sorted(quarantine_sail["dq_reason"])
    bronze_jvm = len(pd.read_parquet(jvm_lake / tables.BRONZE))
    clean_jvm = len(pd.read_parquet(jvm_lake / tables.SILVER_CLEAN))
    assert bronze_jvm == clean_jvm + len(quarantine_jvm) == sail.count(tables.BRONZE)

    again = run_on_jvm(Path(settings.raw_uri), jvm_lake)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["files_new"] == 0
