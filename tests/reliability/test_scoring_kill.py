"""Crash anywhere, converge, for batch scoring: ``wikichurn score`` SIGKILLed at several moments.

The last stage a scheduled round runs after the pipeline. On a copy of the scored test lake with
its ``gold_churn_scores`` removed, ``wikichurn score`` (the production model of the lake's real
MLflow server) is killed at fractions of an uninterrupted run's wall time. After every kill the
table is absent or whole (one Delta commit for all days); a rerun completes it to exactly the rows
of the fixture's own scoring run, and one more run writes nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.scored_lake import ScoredLake
from tests.reliability.helpers import WIKICHURN, _canonical, cli_env, wikichurn

pytestmark = pytest.mark.slow

FRACTIONS = (0.3, 0.6, 0.85, 0.95)
# The run's own stamp, not the data: two runs over the same features differ only here.
RUN_COLUMNS = {"scored_at"}


def scores(lake: Path) -> Counter | None:
    """The rows of gold_churn_scores (run stamp dropped), or None when the table does not exist."""
    from deltalake import DeltaTable

    path = lake / "gold_churn_scores"
    if not (path / "_delta_log").is_dir():
        return None
    data = DeltaTable(str(path)).to_pyarrow_table()
    keep = [c for c in data.column_names if c not in RUN_COLUMNS]
    columns = [data.column(c).to_pylist() for c in keep]
    return Counter(tuple(_canonical(v) for v in row) for row in zip(*columns, strict=True))


def test_killed_scoring_leaves_nothing_or_everything_and_converges(scored_lake: ScoredLake, tmp_path: Path) -> None:
    source = Path(scored_lake.settings.lake_uri)
    reference = scores(source)
    assert reference, "the fixture's scoring run wrote no scores"
    lake = tmp_path / "lake"
    shutil.copytree(source, lake, ignore=shutil.ignore_patterns("gold_churn_scores"))
    env = cli_env(scored_lake.settings.raw_uri, lake, MLFLOW_TRACKING_URI=scored_lake.server.url)

    # The uninterrupted reference time, on a scratch copy (the run is what is being timed).
    scratch = tmp_path / "scratch"
    shutil.copytree(lake, scratch)
    began = time.monotonic()
    timed = wikichurn("score", env={**env, "WIKICHURN_LAKE_URI": str(scratch)}, cwd=tmp_path)
    reference_s = time.monotonic() - began
    assert timed.returncode == 0, timed.stderr[-3000:]
    assert scores(scratch) == reference

    kills = 0
    for fraction in FRACTIONS:
        proc = subprocess.Popen(
            [WIKICHURN, "score"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=fraction * reference_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        got = scores(lake)
        assert got is None or got == reference, f"partial scores after a kill at {fraction:.0%}"
        if got is not None:  # a kill after the commit: start again from nothing for the next one
            shutil.rmtree(lake / "gold_churn_scores")
    assert kills >= 3, kills

    rerun = wikichurn("score", env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert scores(lake) == reference
    again = wikichurn("score", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "nothing new" in again.stdout, again.stdout + again.stderr[-2000:]
    assert scores(lake) == reference
    print(f"\nscoring: {kills} kills over a {reference_s:.1f} s run, converged")
