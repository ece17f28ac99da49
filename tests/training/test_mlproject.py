"""The MLflow project: entry points wired to the typer commands, the pinned environment, and
(slow) ``mlflow run`` and ``mlflow models serve`` as subprocesses against the test server."""

from __future__ import annotations

import importlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from mlflow import MlflowClient
from mlflow.projects._project_spec import load_project
from typer.testing import CliRunner

from tests.utils.training import E2E_MODEL
from wikichurn.core.churn import FEATURE_COLUMNS
from wikichurn.core.settings import Settings
from wikichurn.training.evaluate import app as evaluate_app
from wikichurn.training.main import MainResult
from wikichurn.training.model import ChurnScorer, download_model
from wikichurn.training.register import app as register_app
from wikichurn.training.server import TrackingServer, free_port
from wikichurn.training.tracking import ROLE_TUNED, TAG_MODEL_URI, TAG_ROLE, TAG_TRAINING_ID, download_run_artifacts

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ENTRY_POINTS = {"main", "train", "evaluate", "register"}


def test_entry_points_call_typed_commands() -> None:
    project = load_project(str(REPO))
    assert ENTRY_POINTS <= set(project._entry_points)
    for name in ENTRY_POINTS:
        entry = project.get_entry_point(name)
        values = {key: "x" for key in entry.parameters}
        argv = shlex.split(entry.compute_command(values, storage_dir=None))
        assert argv[:3] == ["python", "-m", f"wikichurn.training.{name}"]
        command = typer.main.get_command(importlib.import_module(f"wikichurn.training.{name}").app)
        options = {opt for param in command.params for opt in param.opts}
        flags = [arg for arg in argv[3:] if arg.startswith("--")]
        assert flags and set(flags) <= options, f"{name}: {set(flags) - options}"
        assert len(flags) == len(entry.parameters)  # every parameter reaches the command


def test_python_env_pins_match_pyproject() -> None:
    env = yaml.safe_load((REPO / "python_env.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert str(env["python"]) == "3.11"
    assert env["dependencies"] == project["dependencies"]


def _env(server: TrackingServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIKICHURN_", "MLFLOW_"))}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    return env


@pytest.fixture(scope="module")
def project_train_run(churn_lake: Settings, mlflow_server: TrackingServer) -> str:
    """``mlflow run . -e train --env-manager local -P trials=2`` in a subprocess; the tuned run id."""
    command = [
        str(VENV_BIN / "mlflow"),
        "run",
        str(REPO),
        "-e",
        "train",
        "--env-manager",
        "local",
        "--experiment-name",
        "mlproject",
        "-P",
        "trials=2",
        "-P",
        f"lake_uri={churn_lake.lake_uri}",
    ]
    done = subprocess.run(command, cwd=REPO, env=_env(mlflow_server), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # stdout: the command's JSON result (plus `mlflow run`'s own "View run" lines).
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"run_id"')))
    return str(result["run_id"])


@pytest.mark.slow
def test_mlflow_run_train_entry_point(project_train_run: str, mlflow_server: TrackingServer) -> None:
    client = MlflowClient(mlflow_server.url)
    run = client.get_run(project_train_run)
    # The run `mlflow run` created is the tuned run itself.
    assert run.data.tags["mlflow.project.entryPoint"] == "train"
    assert run.data.tags[TAG_ROLE] == ROLE_TUNED and run.info.run_name == ROLE_TUNED
    assert run.info.status == "FINISHED"
    assert "val_pr_auc" in run.data.metrics and run.data.params["trials"] == "2"
    group = client.search_runs([run.info.experiment_id], f"tags.`{TAG_TRAINING_ID}` = '{run.info.run_id}'")
    roles = sorted(r.data.tags[TAG_ROLE] for r in group)
    assert roles == ["baseline_heuristic", "baseline_seed_features", "trial", "trial", "tuned"]


@pytest.mark.slow
def test_evaluate_and_register_commands_on_a_project_run(project_train_run: str, mlflow_server: TrackingServer) -> None:
    """The ``evaluate`` and ``register`` commands as ``mlflow run`` calls them (``MLFLOW_RUN_ID`` set)."""
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    experiment_id = client.get_run(project_train_run).info.experiment_id
    runner = CliRunner()
    outputs = {}
    for name, app, args in (
        ("evaluate", evaluate_app, ["--run-id", project_train_run]),
        ("register", register_app, ["--run-id", project_train_run, "--model-name", "mlproject", "--force", "true"]),
    ):
        project_run = client.create_run(experiment_id, tags={"mlflow.project.entryPoint": name}).info.run_id
        env = {"MLFLOW_RUN_ID": project_run, "MLFLOW_TRACKING_URI": mlflow_server.url}
        out = runner.invoke(app, args, env=env)
        assert out.exit_code == 0, out.output
        outputs[name] = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))
        tags = client.get_run(project_run).data.tags
        assert tags[TAG_ROLE] == name and tags[TAG_TRAINING_ID] == project_train_run
    assert outputs["evaluate"]["model_uri"] == client.get_run(project_train_run).data.tags[TAG_MODEL_URI]
    assert outputs["register"]["alias"] == "production" and "forced" in outputs["register"]["reason"]
    assert client.get_model_version_by_alias("mlproject", "production").run_id == project_train_run


@pytest.mark.slow
def test_mlflow_models_serve(trained: MainResult, mlflow_server: TrackingServer, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(mlflow_server.url)
    uri = f"models:/{E2E_MODEL}@production"
    rows = pd.read_parquet(download_run_artifacts(trained.train.run_id, "data/test.parquet", tmp_path)).head(8)
    features = rows[list(FEATURE_COLUMNS)]
    expected = ChurnScorer.from_dir(download_model(uri, tmp_path / "model")).predict(features)

    port = free_port()
    command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        command, env=_env(mlflow_server), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(0.5)
        split = features.to_dict(orient="split")
        data = [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in split["data"]]
        body = json.dumps({"dataframe_split": {"columns": split["columns"], "data": data}}).encode()
        request = urllib.request.Request(
            f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = pd.DataFrame(json.loads(response.read())["predictions"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    assert list(predictions.columns) == ["risk_score", "churn"]
    assert np.allclose(predictions["risk_score"], expected["risk_score"], rtol=1e-12, atol=0)
    assert (predictions["churn"].to_numpy() == expected["churn"].to_numpy()).all()
