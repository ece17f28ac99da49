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
from tests.reliability.helpers import WIKICHURN, cli_env, run_killed_at, table_rows, wikichurn
from wikichurn.core import tables

pytestmark = pytest.mark.slow

KILLS = (
    ("sail server listening", 0.3),
    ("batch scoring with", 0.2),
    ("writing", 0.0),
    ("writing", 0.3),
)


def scores(lake: Path) -> Counter | None:
    """The rows of gold_churn_scores (``scored_at``, the run's stamp, dropped), or None when the
    table does not exist."""
    path = lake / tables.GOLD_SCORES
    return table_rows(str(path)) if (path / "_delta_log").is_dir() else None


def test_killed_scoring_leaves_nothing_or_everything_and_converges(scored_lake: ScoredLake, tmp_path: Path) -> None:
    source = Path(scored_lake.settings.lake_uri)
    reference = scores(source)
    assert reference, "the fixture's scoring run wrote no scores"
    lake = tmp_path / "lake"
    shutil.copytree(source, lake, ignore=shutil.ignore_patterns(tables.GOLD_SCORES))
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
            shutil.rmtree(lake / tables.GOLD_SCORES)
    assert kills >= len(KILLS) - 1, kills  # the last one may come after a fast commit

    rerun = wikichurn("score", env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert scores(lake) == reference
    again = wikichurn("score", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "nothing new" in again.stdout, again.stdout + again.stderr[-2000:]
    assert scores(lake) == reference
    print(f"\nscoring: {kills} kills, converged")
