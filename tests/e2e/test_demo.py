"""The demo path end to end, small: simulate -> serve -> ingest over HTTP -> lake -> EDA."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from deltalake import DeltaTable
from rich.console import Console
from typer.testing import CliRunner

from wikichurn.cli.app import app
from wikichurn.cli.demo import run_demo
from wikichurn.core import tables
from wikichurn.core.tables import GOLD_FEATURES, GOLD_SCORES

pytestmark = pytest.mark.slow


def test_demo_builds_the_lake_and_the_report_and_reruns_idempotently(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = run_demo(tmp_path / "demo", days=42, domains=120, seed=3, trials=3, console=Console(file=out, width=120))
    text = out.getvalue()
    assert "EDA report:" in text and "churn base rate" in text
    assert "@production" in text and "baseline_heuristic" in text  # trained, compared, promoted
    assert "POST /score" in text and "curl -s -X POST" in text and "unknown_domain" in text  # served
    assert "gold_churn_scores:" in text and "wikichurn dashboard --lake" in text  # batch-scored, dashboard shown
    lake = Path(settings.lake_uri)
    for table in (tables.BRONZE, tables.SILVER_CLEAN, tables.GOLD_DAILY, GOLD_FEATURES, "gold_kpis_daily", GOLD_SCORES):
        assert DeltaTable(str(lake / table)).to_pyarrow_table().num_rows > 0, table
    assert (tmp_path / "demo" / "eda" / "report.html").stat().st_size > 50_000
    versions = {t: DeltaTable(str(lake / t)).version() for t in (tables.BRONZE, tables.GOLD_DAILY)}

    again = io.StringIO()
    run_demo(tmp_path / "demo", days=42, domains=120, seed=3, trials=3, console=Console(file=again, width=120))
    assert "reusing the simulated mirror" in again.getvalue()
    assert "0 downloaded" in again.getvalue() and "nothing new" in again.getvalue()
    assert {t: DeltaTable(str(lake / t)).version() for t in versions} == versions


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["simulate"],
        ["mirror", "serve"],
        ["ingest"],
        ["pipeline", "run"],
        ["features"],
        ["eda"],
        ["score"],
        ["dashboard"],
        ["warehouse", "export"],
        ["demo"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
