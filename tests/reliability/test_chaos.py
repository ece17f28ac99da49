"""Crash anywhere, converge: ``wikichurn pipeline run`` killed with SIGKILL at many moments.

Each kill is aimed by the run's own log lines: the k-th occurrence of a phase's line, then a delay
into the work that follows (no hooks in the pipeline: the real CLI process is killed wherever it
happens to be), so a kill lands in its phase however fast the shared machine is. After each kill the
run is repeated; some lakes are killed twice in a row (a crash during recovery) before the last
rerun. Every table is then compared, row for row, with an uninterrupted run's: same content,
bronze = clean + quarantine, and the DQ reports count every bronze row exactly once.

Two scenarios: a cold start (empty lake, many bronze batches) and an incremental run (a lake
built from the first two weeks gets the third one). Both must end equal to the one cold
reference, so an incremental history is also checked against a from-scratch build.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from tests.reliability.helpers import WIKICHURN, cli_env, dq_totals, fingerprint, run_killed_at, wikichurn
from wikichurn.sim.simulate import simulate

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

START, SPLIT, END = date(2024, 3, 1), date(2024, 3, 15), date(2024, 3, 21)
DOMAINS = 120
# Small bronze batches: a cold start commits bronze ~20 times, so kills land between commits.
BATCH_FILES = "24"
# The first kill of each lake: (log line, occurrence, delay s). Cold starts write ~21 bronze batches.
# 8 cold + 3 incremental lakes, each killed twice: 22 kills.
COLD_KILLS = (
    ("sail server listening", 1, 0.3),
    ("bronze: appended", 9, 0.05),
    ("bronze: appended", 18, 0.1),
    ("ledger: recorded", 1, 0.0),
    ("silver: rules applied", 1, 0.05),
    ("silver: quarantined rows appended", 1, 0.05),
    ("gold: merged", 1, 0.0),
    ("features: rebuilding", 1, 0.3),
)
INCREMENTAL_KILLS = (
    ("bronze: appended", 2, 0.0),
    ("rows in =", 1, 0.05),
    ("features: rebuilding", 1, 0.4),
)
# Each recovery run is killed again soon after its session starts (a crash during recovery).
RECOVERY_DELAYS = (0.1, 0.3, 0.5)
# WIKICHURN_CHAOS_LAKES=3,1 keeps the first lakes of each list: a quick local loop.
_limit = os.environ.get("WIKICHURN_CHAOS_LAKES")
if _limit:
    _cold, _incremental = (int(n) for n in _limit.split(","))
    COLD_KILLS, INCREMENTAL_KILLS = COLD_KILLS[:_cold], INCREMENTAL_KILLS[:_incremental]
# The last phase marker a killed run logged names where it died.
PHASES = (
    ("writer lease taken", "lock"),
    ("sail server listening", "session"),
    ("bronze: appended", "bronze"),
    ("ledger: recorded", "ledger"),
    ("silver: rules applied", "silver-rules"),
    ("silver: clean rows appended", "silver-clean"),
    ("silver: quarantined rows appended", "silver-quarantine"),
    ("rows in =", "gold"),
    ("gold: merged", "dq-report"),
    ("features: rebuilding", "features"),
)


def phase_of(stderr: str) -> str:
    best, where = "startup", -1
    for marker, name in PHASES:
        at = stderr.rfind(marker)
        if at > where:
            best, where = name, at
    return best


def timed_run(env: dict[str, str], cwd: Path) -> dict[str, float]:
    """An uninterrupted run; the offset (s) at which each phase began, and ``end``."""
    began = time.monotonic()
    proc = subprocess.Popen(
        [WIKICHURN, "pipeline", "run"], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    timeline: dict[str, float] = {}
    lines = []
    for line in proc.stderr:
        lines.append(line)
        for marker, name in PHASES:
            if marker in line:
                timeline.setdefault(name, time.monotonic() - began)
    assert proc.wait() == 0, "".join(lines)[-3000:]
    timeline["end"] = time.monotonic() - began
    return timeline


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The raw zone, a two-week base lake, and the uninterrupted references."""
    root = tmp_path_factory.mktemp("chaos")
    mirror = root / "mirror"
    simulate(mirror, START, END, domains=DOMAINS, seed=5)
    raw = root / "raw"
    files = sorted(mirror.glob("*/*/projectviews-*"))
    late = [p for p in files if p.name[13:21] > SPLIT.strftime("%Y%m%d")]

    def land(paths: list[Path]) -> None:
        for path in paths:
            target = raw / path.relative_to(mirror)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)

    extra = {"WIKICHURN_PIPELINE__BRONZE_BATCH_FILES": BATCH_FILES, "COLUMNS": "250"}
    land([p for p in files if p not in late])
    base = root / "base"
    timed_run(cli_env(raw, base, **extra), root)
    land(late)
    reference = root / "reference"
    cold = timed_run(cli_env(raw, reference, **extra), root)
    incremental = root / "incremental"
    shutil.copytree(base, incremental)
    increment = timed_run(cli_env(raw, incremental, **extra), root)
    return {
        "root": root, "raw": raw, "base": base, "extra": extra, "reference": fingerprint(reference),
        "timelines": {"cold": cold, "incremental": increment}, "incremental": incremental,
    }  # fmt: skip


def test_reference_is_conserved_and_incremental_equals_cold(world: dict) -> None:
    reference: dict[str, Counter] = world["reference"]
    assert set(reference) == {
        "bronze_projectviews", "bronze_file_ledger", "silver_projectviews_clean",
        "silver_projectviews_quarantine", "gold_daily_projectviews", "gold_churn_features",
    }  # fmt: skip
    bronze = reference["bronze_projectviews"].total()
    clean, quarantined = (
        reference["silver_projectviews_clean"].total(),
        reference["silver_projectviews_quarantine"].total(),
    )
    assert bronze == clean + quarantined and quarantined > 0  # the simulator plants bad lines
    assert fingerprint(world["incremental"]) == reference
    assert dq_totals(world["incremental"]) == (bronze, clean, quarantined)


def test_killed_runs_converge_to_the_uninterrupted_result(world: dict) -> None:
    reference: dict[str, Counter] = world["reference"]
    root: Path = world["root"]
    totals = (
        reference["bronze_projectviews"].total(),
        reference["silver_projectviews_clean"].total(),
        reference["silver_projectviews_quarantine"].total(),
    )
    plan = [("cold", k) for k in COLD_KILLS] + [("incremental", k) for k in INCREMENTAL_KILLS]
    kills: list[tuple[str, str, str]] = []
    for index, (scenario, (marker, occurrence, delay_s)) in enumerate(plan):
        lake = root / f"lake-{index}"
        if scenario == "incremental":
            shutil.copytree(world["base"], lake)
        env = cli_env(world["raw"], lake, **world["extra"])
        aims = [(marker, occurrence, delay_s), ("sail server listening", 1, RECOVERY_DELAYS[index % 3])]
        for aim in aims:  # the second kill hits the recovery run
            killed, stderr = run_killed_at([WIKICHURN, "pipeline", "run"], env, root, aim[0], aim[1], aim[2])
            if killed:
                kills.append((scenario, f"{aim[0]}#{aim[1]}+{aim[2]}s", phase_of(stderr)))
        rerun = wikichurn("pipeline", "run", "--json", env=env, cwd=root)
        assert rerun.returncode == 0, f"rerun after kills {aims} failed: {rerun.stderr[-3000:]}"
        got = fingerprint(lake)
        for table, rows in reference.items():
            assert got.get(table) == rows, f"{table} differs after {scenario} kills {aims}"
        assert dq_totals(lake) == totals, f"double counting after {scenario} kills {aims}"
        shutil.rmtree(lake)
    phases = Counter(phase for _s, _f, phase in kills)
    log.warning("chaos: %d kills survived, by phase %s", len(kills), dict(phases))
    print(f"\nchaos: {len(kills)} kills, by phase: {dict(phases)}; timelines: {world['timelines']}")
    # Every lake's first kill is aimed at a log line its run prints; the bar is 20 kills.
    assert len(kills) >= (20 if len(plan) >= 11 else len(plan)), kills
    assert len(phases) >= min(5, len(plan) - 1), phases  # the kills really were spread over the run's phases


def test_killed_ingest_never_shows_a_partial_file_and_completes(
    small_mirror: Path, mirror_url: str, tmp_path: Path
) -> None:
    from tests.fixtures.mirror import SMALL_MIRROR_END, SMALL_MIRROR_START
    from tests.reliability.faults import FaultyFront

    expected = {str(p.relative_to(small_mirror)): p.read_bytes() for p in small_mirror.glob("*/*/projectviews-*")}
    raw = tmp_path / "raw"
    env = cli_env(raw, tmp_path / "lake")
    kills = 0
    # Slow downloads (100 ms a file, 4 at a time: ~40 files/s of 240); each kill lands that long after
    # the run logs how many files it will download, so it is always mid-transfer.
    with FaultyFront(mirror_url, delay_s=0.1) as front:
        args = [WIKICHURN, "ingest", "--source", front.url, "--dest", str(raw)]
        args += ["--start", f"{SMALL_MIRROR_START}", "--end", f"{SMALL_MIRROR_END}"]
        for delay_s in (0.3, 0.5, 0.7, 0.9, 1.1):
            killed, _stderr = run_killed_at(args, env, tmp_path, "to download", delay_s=delay_s)
            kills += killed
            visible = {str(p.relative_to(raw)): p.read_bytes() for p in raw.glob("*/*/projectviews-*")}
            assert all(expected[key] == data for key, data in visible.items())  # whole files only
        done = wikichurn(*args[1:], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert kills == 5
    assert {str(p.relative_to(raw)): p.read_bytes() for p in raw.glob("*/*/projectviews-*")} == expected
