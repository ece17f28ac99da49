"""The engine work-arounds of wikichurn.pipeline.compat, on Sail.

Each bug has two tests: a canary that shows the bug still happens on this Sail (when it fails after
an upgrade, the engine is fixed: delete the work-around and its canary) and a test that the
work-around gives Spark's answer, which fails if the work-around is replaced by the plain call.
"""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from wikichurn.pipeline import compat

# A week from Monday 2024-01-01 to Sunday 2024-01-07.
WEEK = [date(2024, 1, 1) + timedelta(days=i) for i in range(7)]

# One big value, then a run of equal ones: a sliding window that drops the big value must say 0.
SERIES = [123456.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
FRAME = 3  # rows per window: the current one and the two before


def test_canary_sail_weekday_is_minus_one_on_sunday(spark: SparkSession) -> None:
    sunday = spark.createDataFrame([(WEEK[-1],)], "d date").select(F.weekday("d").alias("w")).collect()
    assert sunday[0]["w"] == -1  # Spark says 6


def test_iso_dayofweek_is_monday_1_to_sunday_7(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(d,) for d in WEEK], "d date")
    got = {r["d"]: r["dow"] for r in frame.select("d", compat.iso_dayofweek("d").alias("dow")).collect()}
    assert got == {d: d.isoweekday() for d in WEEK}


def _series(spark: SparkSession) -> list[tuple[float | None, float | None]]:
    frame = spark.createDataFrame([("k", i, v) for i, v in enumerate(SERIES)], "k string, t int, v double")
    window = Window.partitionBy("k").orderBy("t").rowsBetween(-(FRAME - 1), 0)
    rows = frame.select(
        "t",
        F.stddev_samp("v").over(window).alias("plain"),
        compat.window_stddev("v", window).alias("fixed"),
    ).orderBy("t")
    return [(r["plain"], r["fixed"]) for r in rows.collect()]


def test_canary_sail_sliding_stddev_of_equal_values_is_not_zero(spark: SparkSession) -> None:
    # Rows 3.. see three times 0.1 after 123456.7 left the frame.
    plain = [p for p, _ in _series(spark)[FRAME:]]
    assert all(p is not None and (math.isnan(p) or p != 0.0) for p in plain), plain


def test_window_stddev_matches_the_exact_sample_deviation(spark: SparkSession) -> None:
    got = [fixed for _, fixed in _series(spark)]
    assert got[0] is None  # one value: no sample deviation
    for t in range(1, len(SERIES)):
        frame = SERIES[max(0, t - FRAME + 1) : t + 1]
        assert got[t] == pytest.approx(statistics.stdev(frame), rel=1e-9, abs=0.0), t
    assert got[FRAME:] == [0.0] * (len(SERIES) - FRAME)


def _binary_paths(tmp_path: Path, n: int) -> list[str]:
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for i in range(n):
        path = folder / f"f{i:03d}.txt"
        path.write_text(f"line {i}\n")
        paths.append(str(path))
    return paths


def test_distinct_files_keeps_each_file_once(spark: SparkSession, tmp_path: Path) -> None:
    # Sail 0.7.2 was seen returning a file twice for a list of ~170 raw paths; it did not happen
    # again in this test's setting (up to 336 paths), so the repeat is made by hand: no canary.
    paths = _binary_paths(tmp_path, 150)
    raw = spark.read.format("binaryFile").load(paths)
    repeated = raw.unionByName(raw.where(F.col("path").endswith("7.txt")))
    assert repeated.count() == 165
    files = compat.distinct_files(repeated).select("path", F.col("content").cast("string").alias("text")).collect()
    assert len(files) == len(paths)
    assert sorted(r["text"] for r in files) == sorted(f"line {i}\n" for i in range(150))


def _parquet_source(spark: SparkSession, folder: Path, values: list[int]) -> None:
    spark.createDataFrame([(v,) for v in values], "v bigint").write.mode("overwrite").parquet(str(folder))


def test_canary_sail_cache_is_a_no_op(spark: SparkSession, tmp_path: Path) -> None:
    source = tmp_path / "source"
    _parquet_source(spark, source, [1, 2, 3])
    cached = spark.read.parquet(str(source)).cache()
    assert cached.count() == 3
    _parquet_source(spark, source, [10, 20])
    # A real cache answers from the first computation (3 rows); Sail reads the new files.
    assert sorted(r["v"] for r in cached.collect()) == [10, 20]


def test_canary_sail_percentile_approx_interpolates(spark: SparkSession) -> None:
    # Why compat says "do not use percentile_approx": Spark answers 2.0 (a value of the data).
    frame = spark.createDataFrame([(float(v),) for v in (1, 2, 3, 4)], "v double")
    row = frame.select(F.percentile_approx("v", 0.5).alias("approx"), F.median("v").alias("median")).collect()[0]
    assert row["approx"] == 2.5
    assert row["median"] == 2.5  # median interpolates on both engines: the portable choice
