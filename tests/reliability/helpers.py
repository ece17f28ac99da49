"""Shared by the reliability tests: run the real CLI in a subprocess, and fingerprint a lake.

A fingerprint reads every table back with the independent ``deltalake`` reader and reduces it to
sorted rows minus the columns that legitimately differ between two runs over the same input
(run ids and run timestamps), so an interrupted-then-resumed lake can be compared with a clean one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from wikichurn.core import tables

WIKICHURN = str(Path(sys.executable).with_name("wikichurn"))

# Columns that name the run rather than the data.
RUN_COLUMNS = {"_ingested_at", "run_id", "run_at", "bronze_watermark", "report", "scored_at"}
# The data tables (the DQ reports hold run stamps), from the data contract.
TABLES = (*(t for t in tables.PIPELINE_TABLES if t != tables.SILVER_DQ_REPORTS), tables.GOLD_FEATURES)


def cli_env(raw: str | Path, lake: str | Path, **extra: str) -> dict[str, str]:
    """The environment of a ``wikichurn`` subprocess working on ``raw`` and ``lake``."""
    # Nothing of this process's wikichurn or MLflow configuration (an earlier test's tracking server,
    # maybe stopped since) leaks into the subprocess: it sees exactly what the test passes.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIKICHURN_", "MLFLOW_"))}
    env.update(WIKICHURN_RAW_URI=str(raw), WIKICHURN_LAKE_URI=str(lake), MLFLOW_DISABLE_TELEMETRY="true")
    env.update(extra)
    return env


def wikichurn(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``wikichurn ARGS`` to completion and capture its output."""
    return subprocess.run(
        [WIKICHURN, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


def start_wikichurn(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """Start ``wikichurn ARGS`` in the background (its own process group, output captured)."""
    return subprocess.Popen(
        [WIKICHURN, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_killed_at(
    args: list[str], env: dict[str, str], cwd: Path, marker: str, occurrence: int = 1, delay_s: float = 0.0
) -> tuple[bool, str]:
    """Run ``args``; SIGKILL its process group ``delay_s`` after the ``occurrence``-th stderr line
    holding ``marker``. Returns (was it killed?, its stderr). A kill aimed by a log line lands in
    the phase it names however fast or slow the shared machine is today."""
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
        start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    fired = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                fired.set()

    lines, seen, timer = [], 0, None
    for line in proc.stderr:
        lines.append(line)
        if timer is None and marker in line:
            seen += 1
            if seen == occurrence:
                timer = threading.Timer(delay_s, kill)
                timer.start()
    proc.wait()
    if timer is not None:
        timer.cancel()
    return fired.is_set() and proc.returncode == -signal.SIGKILL, "".join(lines)


def copy_raw(mirror: Path, dest: Path) -> Path:
    """A raw zone holding every projectviews file of a simulated mirror (same layout)."""
    for path in sorted(mirror.glob("*/*/projectviews-*")):
        target = dest / path.relative_to(mirror)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dest


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    return value


def table_rows(path: str, storage_options: dict[str, str] | None = None) -> Counter:
    """The multiset of a table's rows, run columns dropped (a Counter: duplicates count)."""
    data = DeltaTable(path, storage_options=storage_options).to_pyarrow_table()
    keep = [c for c in data.column_names if c not in RUN_COLUMNS]
    columns = [data.column(c).to_pylist() for c in keep]
    return Counter(tuple(_canonical(v) for v in row) for row in zip(*columns, strict=True))


def fingerprint(lake: str | Path, storage_options: dict[str, str] | None = None) -> dict[str, Counter]:
    """Every data table of ``lake`` as row multisets (tables not written yet are absent)."""
    found = {}
    for table in TABLES:
        path = f"{lake}/{table}"
        if storage_options or Path(path, "_delta_log").is_dir():
            try:
                found[table] = table_rows(path, storage_options)
            except Exception:  # not created (S3 has no folders to test for)
                continue
    return found


def dq_totals(lake: str | Path) -> tuple[int, int, int]:
    """Sums of rows_in, rows_clean and rows_quarantined over every DQ report."""
    data = DeltaTable(f"{lake}/silver_dq_reports").to_pyarrow_table().to_pylist()
    return (
        sum(r["rows_in"] for r in data),
        sum(r["rows_clean"] for r in data),
        sum(r["rows_quarantined"] for r in data),
    )
