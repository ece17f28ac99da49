"""Training killed mid-study: no half-registered model, and the alias never names a missing version.

``wikichurn train`` (Optuna study, evaluation, registration, promotion) is SIGKILLed at moments
spread over a first, uninterrupted training on the same lake and registry. After every kill each
registered version must be READY with a model that downloads and loads, and ``@production`` (when
set) must name one of them. A last run completes and promotes (``--force``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.helpers import WIKICHURN, cli_env
from tests.training.conftest import churn_lake, mlflow_server  # noqa: F401 (fixtures)
from tests.utils.serving import mlflow_pointed_at
from wikichurn.core.settings import Settings
from wikichurn.training.server import TrackingServer

pytestmark = pytest.mark.slow

MODEL = "chaos-model"
FRACTIONS = (0.55, 0.9)


def check_registry(url: str, tmp: Path) -> tuple[int, str | None]:
    """(versions, version the alias names); asserts every version is whole and the alias valid."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from wikichurn.training.model import ChurnScorer, download_model

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    try:
        versions = client.search_model_versions(f"name='{MODEL}'")
    except MlflowException:
        return 0, None
    with mlflow_pointed_at(url):
        for version in versions:
            assert version.status == "READY", version
            target = tmp / f"v{version.version}-{time.time_ns()}"
            ChurnScorer.from_dir(download_model(f"models:/{MODEL}/{version.version}", target))  # whole, and loads
    try:
        aliased = client.get_model_version_by_alias(MODEL, "production").version
    except MlflowException:
        aliased = None
    assert aliased is None or aliased in {v.version for v in versions}
    return len(versions), aliased


def train_env(lake: Settings, server: TrackingServer) -> dict[str, str]:
    return cli_env(lake.raw_uri, lake.lake_uri, MLFLOW_TRACKING_URI=server.url, MLFLOW_REGISTRY_URI=server.url)


def test_killed_training_never_half_registers(
    churn_lake: Settings,  # noqa: F811
    mlflow_server: TrackingServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    args = [WIKICHURN, "train", "--trials", "3", "--model-name", MODEL, "--force", "--json"]
    env = train_env(churn_lake, mlflow_server)
    began = time.monotonic()
    first = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    reference_s = time.monotonic() - began
    assert first.returncode == 0, first.stderr[-3000:]
    assert check_registry(mlflow_server.url, tmp_path) == (1, "1")

    kills = 0
    for fraction in FRACTIONS:
        # A run that finishes before its kill (the shared machine got faster) recalibrates the
        # reference from its own duration and is tried again, so the kill lands where it is aimed.
        for _attempt in range(3):
            began = time.monotonic()
            proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            try:
                proc.wait(timeout=fraction * reference_s)
                reference_s = time.monotonic() - began
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
            check_registry(mlflow_server.url, tmp_path)
            if proc.returncode == -signal.SIGKILL:
                break
    last = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stderr[-3000:]
    versions, aliased = check_registry(mlflow_server.url, tmp_path)
    assert aliased == str(versions)  # --force: the last complete run's version serves
    assert kills >= 1
    print(f"\ntraining: {kills} kills over a {reference_s:.0f} s run, {versions} versions, all whole")
