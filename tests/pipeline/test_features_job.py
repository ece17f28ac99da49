"""The feature job and the serving snapshot on a simulated mirror's files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from tests.utils.contract import assert_matches_contract
from tests.utils.features import assert_same_features
from wikichurn.core.churn import FEATURE_COLUMNS, KEY_COLUMNS
from wikichurn.core.columnar import domain_frame
from wikichurn.core.featurespec import table_columns
from wikichurn.core.settings import Settings
from wikichurn.core.tables import BRONZE_LEDGER, GOLD_DAILY, GOLD_FEATURES, features_schema
from wikichurn.pipeline.lakehouse.features import export_snapshot
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

    lake = tmp_path / "lake"
    assert_matches_contract(str(lake / GOLD_FEATURES), features_schema(settings.churn))
    table = DeltaTable(str(lake / GOLD_FEATURES)).to_pandas()
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

    # The numpy compilation, run on the same gold and ledger tables, gives the table Spark wrote.
    gold = DeltaTable(str(lake / GOLD_DAILY)).to_pandas()
    ledger = DeltaTable(str(lake / BRONZE_LEDGER)).to_pandas().dropna(subset=["event_date"])
    hours = ledger.groupby("event_date")["event_timestamp"].nunique().to_dict()
    frames = [
        domain_frame(
            dict(zip(rows["event_date"], rows["count_views"], strict=True)),
            settings.churn,
            domain_code=str(code),
            end_date=max(hours),
            day_hours=hours,
        )
        for code, rows in gold.groupby("domain_code")
    ]
    numpy_table = pd.concat(frames, ignore_index=True)
    assert len(numpy_table) == len(table) > 100
    assert_same_features(table, numpy_table, table_columns(settings.churn))
