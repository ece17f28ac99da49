"""Crash anywhere, converge, for batch scoring: ``wikichurn score`` SIGKILLed at several moments.

The last stage a scheduled round runs after the pipeline. On a copy of the scored test lake with
its ``gold_churn_scores`` removed, ``wikichurn score`` (the production model of the lake's real
MLflow server) is killed at moments aimed by its log lines. After every kill the
table is absent or whole (one Delta commit for all days); a rerun completes it to exactly the rows
of the fixture's own scoring run, and one more run writes nothing.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.scored_lake import ScoredLake
from tests.reliability.helpers import WIKICHURN, _canonical, cli_env, run_killed_at, wikichurn

pytestmark = pytest.mark.slow

KILLS = (
    ("sail server listening", 0.3),
    ("batch scoring with", 0.2),
    ("writing", 0.0),
    ("writing", 0.3),
)
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

    # Kills aimed by the run's log lines: loading the model, reading features and scoring, and at and
    # just into the one commit.
    kills = 0
    for marker, delay_s in KILLS:
        killed, stderr = run_killed_at([WIKICHURN, "score"], env, tmp_path, marker, delay_s=delay_s)
        kills += killed
        got = scores(lake)
        assert got is None or got == reference, f"partial scores after a kill at {marker!r} + {delay_s} s"
        if got is not None:  # a kill after the commit: start again from nothing for the next one
            shutil.rmtree(lake / "gold_churn_scores")
    assert kills >= len(KILLS) - 1, kills  # the last one may come after a fast commit

    rerun = wikichurn("score", env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert scores(lake) == reference
    again = wikichurn("score", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "nothing new" in again.stdout, again.stdout + again.stderr[-2000:]
    assert scores(lake) == reference
    print(f"\nscoring: {kills} kills, converged")
