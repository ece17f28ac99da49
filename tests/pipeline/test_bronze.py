"""Bronze reads: which files one commit takes, and reading whole folders gives the listed files only."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tests.utils.raw import write_raw
from wikichurn.core.settings import Settings
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.pipeline.lakehouse.steps import BronzeBatch, bronze_batches

ROOT = "/raw"


def _paths(folder: str, hours: range) -> list[str]:
    day = folder.replace("-", "")[5:] + "01"
    return [f"{ROOT}/{folder[:4]}/{folder}/projectviews-{day}-{h:02d}0000" for h in hours]


def test_whole_folders_share_commits_and_the_rest_are_lists() -> None:
    jan, feb, mar, apr = (_paths(f"2024-{m:02d}", range(4)) for m in (1, 2, 3, 4))
    folder = {m: f"{ROOT}/2024/2024-{m:02d}" for m in (1, 2, 3, 4)}
    sizes = {folder[1]: 4, folder[2]: 4, folder[3]: 6, folder[4]: 4}  # March has 2 files read before
    batches = bronze_batches([*jan, *feb, *mar, *apr], sizes, batch_files=8)
    assert batches == [
        BronzeBatch(paths=[*jan, *feb], folders=[folder[1], folder[2]]),
        BronzeBatch(paths=apr, folders=[folder[4]]),
        BronzeBatch(paths=mar, folders=[]),
    ]
    # Every file exactly once, whatever the batch size; no commit over the limit.
    for limit in (1, 3, 4, 5, 100):
        cut = bronze_batches([*jan, *feb, *mar, *apr], sizes, batch_files=limit)
        assert sorted(p for b in cut for p in b.paths) == sorted([*jan, *feb, *mar, *apr])
        assert all(len(b.paths) <= limit for b in cut)
        # A folder is listed only when the commit holds all of its files.
        assert all(sum(p.startswith(f + "/") for p in b.paths) == sizes[f] for b in cut for f in b.folders)


def test_a_folder_read_returns_exactly_the_listed_files(spark: SparkSession, lake_settings: Settings) -> None:
    keys = [write_raw(lake_settings, f"projectviews-20240105-{h:02d}0000", [f"en - {h} 0"]) for h in range(5)]
    raw = Path(lake_settings.raw_uri)
    (raw / "2024/2024-01/pageviews-20240105-000000.gz").write_bytes(b"not ours")
    paths = [str(raw / k) for k in keys]
    lake = Lake(spark, lake_settings)
    # The last file "landed after the listing": the folder holds it, the run does not read it.
    by_folder = lake.read_folders([str(raw / "2024/2024-01")], paths[:-1])
    by_list = lake.read_files(paths[:-1])

    def contents(files: DataFrame) -> list[tuple[str, str]]:
        rows = files.select(F.substring_index("path", "/", -3).alias("key"), F.col("content").cast("string"))
        return sorted((r[0], r[1]) for r in rows.collect())

    assert contents(by_folder) == contents(by_list)
    assert [key for key, _ in contents(by_folder)] == sorted(keys[:-1])
