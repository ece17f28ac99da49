"""The feature job and the serving snapshot on a simulated mirror's files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from wikichurn.core.churn import FEATURE_COLUMNS, KEY_COLUMNS
from wikichurn.core.settings import Settings
from wikichurn.pipeline.lakehouse.features import GOLD_FEATURES, export_snapshot
from wikichurn.pipeline.lakehouse.run import run_pipeline
from wikichurn.sim.simulate import load_manifest


def test_pipeline_builds_features_and_exports_the_latest_complete_day(
    spark: SparkSession, small_mirror: Path, tmp_path: Path
) -> None:
    # The mirror folder has the raw layout; its listings, manifest and decoys are not raw files.
    settings = Settings(raw_uri=str(small_mirror), lake_uri=str(tmp_path / "lake"))
    result = run_pipeline(spark, settings)
    assert result.features is not None and "churn base rate" in result.features
    manifest = load_manifest(small_mirror)
    assert result.files_new == manifest["counts"]["hourly_files"]

    table = DeltaTable(str(tmp_path / "lake" / GOLD_FEATURES)).to_pandas()
    assert set(FEATURE_COLUMNS) <= set(table.columns)
    assert not table.duplicated(list(KEY_COLUMNS)).any()
    # Ten days leave no label: 3 days of past and 7 of future are needed around each day.
    assert not table["label_available"].any()
    assert table["churn"].dropna().isin([0.0, 1.0]).all() and table["churn"].notna().any()

    out = tmp_path / "serving" / "snapshot.parquet"
    snap = export_snapshot(spark, settings, out)
    frame = pd.read_parquet(out)
    complete = table[table["day_hours_available"] >= 24]
    last = complete["event_date"].max()
    assert snap.as_of == last and snap.domains == len(frame) == (complete["event_date"] == last).sum()
    assert list(frame.columns) == [*KEY_COLUMNS, *(c for c in FEATURE_COLUMNS if c not in KEY_COLUMNS)]
    assert json.loads(out.with_name(out.name + ".json").read_text())["as_of"] == last.isoformat()
    assert not list(out.parent.glob(".*tmp"))  # swapped in, nothing half-written left
