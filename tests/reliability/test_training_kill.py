"""Training killed mid-study: no half-registered model, and the alias never names a missing version.

``wikichurn train`` (Optuna study, evaluation, registration, promotion) is SIGKILLed at moments
aimed by its log lines: mid-study (after the first trial) and during evaluation/registration. After every kill each
registered version must be READY with a model that downloads and loads, and ``@production`` (when
set) must name one of them. A last run completes and promotes (``--force``).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.helpers import WIKICHURN, cli_env, run_killed_at
from tests.training.conftest import churn_lake, mlflow_server  # noqa: F401 (fixtures)
from tests.utils.serving import mlflow_pointed_at
from wikichurn.core.settings import Settings
from wikichurn.training.server import TrackingServer

pytestmark = pytest.mark.slow

MODEL = "chaos-model"
# Where the kills land, by the log line that opens the moment (and a delay into it): in the Optuna
# study after its first trial, and while the tuned model is evaluated, logged and registered.
KILLS = (("trial 0: mean CV", 0.5), ("tuned: out-of-fold", 1.0))


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
    kills = []
    for marker, delay_s in KILLS:
        killed, stderr = run_killed_at(args, env, tmp_path, marker, delay_s=delay_s)
        assert killed, f"the run ended before the kill aimed at {marker!r}: {stderr[-2000:]}"
        kills.append(marker)
        check_registry(mlflow_server.url, tmp_path)
    last = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stderr[-3000:]
    versions, aliased = check_registry(mlflow_server.url, tmp_path)
    assert versions >= 1 and aliased == str(versions)  # --force: the last complete run's version serves
    print(f"\ntraining: {len(kills)} kills ({kills}), {versions} versions, all whole")
