"""MLflow plumbing shared by the training stages: tracking URI, experiment, tags, lineage."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from wikichurn.training.config import TrainingSettings

log = logging.getLogger(__name__)

# Run tags. Filter the UI with e.g.  tags.`wikichurn.training_id` = '<tuned run id>'
TAG_ROLE = "wikichurn.role"  # tuned | baseline_seed_features | baseline_heuristic | trial | evaluate
TAG_TRAINING_ID = "wikichurn.training_id"  # the tuned run's id, on every run of one training
TAG_BASELINE_RUNS = "wikichurn.baseline_runs"  # on the tuned run: JSON {role: run id}
TAG_MODEL_URI = "wikichurn.model_uri"  # on the tuned run after evaluate: the logged pyfunc model
TAG_EVALUATED_RUN = "wikichurn.evaluated_run_id"  # on an `evaluate` project run
TAG_TRIAL_STATE = "wikichurn.trial_state"  # complete | pruned | failed
TAG_TRAINED_ROWS = "wikichurn.trained_rows"  # dates the registered model was fit on (start..end)
TAG_HOLDOUT_ROWS = "wikichurn.holdout_rows"  # dates the test-set (holdout) model was fit on
TAG_PROTOCOL = "wikichurn.metrics_protocol"  # how the reported metrics were obtained
TAG_CV_FOLDS = "wikichurn.cv_folds"  # JSON list of the walk-forward folds' dates

ROLE_TUNED = "tuned"
ROLE_SEED = "baseline_seed_features"
ROLE_HEURISTIC = "baseline_heuristic"
ROLE_TRIAL = "trial"
BASELINE_ROLES: tuple[str, str] = (ROLE_SEED, ROLE_HEURISTIC)

# Artifact paths inside a training run.
BUNDLE_DIR = "bundle"  # booster.txt + model_meta.json (or the heuristic's meta): the registered refit
HOLDOUT_DIR = "holdout"  # the same parameters fit on the development rows only: scored on test
DATA_DIR = "data"  # validation.parquet, test.parquet (the exact rows of the split)
MODEL_NAME_IN_RUN = "model"  # the logged ChurnPyfunc

DEFAULT_TRACKING_DIR = Path("data/mlflow")


def resolve_tracking_uri(cfg: TrainingSettings) -> str:
    """``cfg.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/data/mlflow/mlflow.db``."""
    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = DEFAULT_TRACKING_DIR.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def is_local_store(uri: str) -> bool:
    """True for a database or file store this process writes directly (no tracking server)."""
    return not uri.startswith(("http://", "https://", "databricks"))


def configure_tracking(cfg: TrainingSettings, run_id: str | None = None) -> str:
    """Point MLflow at the tracking server / store and return the experiment id to log into.

    With ``run_id`` (e.g. the run ``mlflow run`` created) the experiment is that run's;
    otherwise ``cfg.experiment_name``, created if needed (on a local store with its artifacts
    under ``cfg.artifact_root``).
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    if run_id:
        experiment_id = client.get_run(run_id).info.experiment_id
    else:
        experiment = client.get_experiment_by_name(cfg.experiment_name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None
            if is_local_store(uri):
                root = Path(cfg.artifact_root).expanduser().resolve()
                location = (root / cfg.experiment_name).as_uri()
            experiment_id = client.create_experiment(cfg.experiment_name, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    log.info("MLflow tracking at %s, experiment %s", uri, experiment_id)
    return experiment_id


def git_commit(folder: Path | None = None) -> str | None:
    """The git commit of the working tree holding this code (None outside git)."""
    cwd = folder or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def baseline_runs(run_id: str) -> dict[str, str]:
    """``{role: run id}`` of the baselines trained with the tuned run ``run_id``."""
    tag = MlflowClient().get_run(run_id).data.tags.get(TAG_BASELINE_RUNS)
    return json.loads(tag) if tag else {}


def download_run_artifacts(run_id: str, path: str, dst: Path) -> Path:
    """Download ``path`` of run ``run_id`` into ``dst`` and return the local path."""
    dst.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst)))


def has_artifact(run_id: str, path: str) -> bool:
    """True when run ``run_id`` has an artifact folder or file at ``path``."""
    parent, _, name = path.rstrip("/").rpartition("/")
    entries = MlflowClient().list_artifacts(run_id, parent or None)
    return any(e.path.rpartition("/")[2] == name for e in entries)


def download_test_scorer_dir(run_id: str, dst: Path) -> Path:
    """The folder of the model that is scored on the test set: ``holdout/`` (fit before the test
    rows) when the run has one, else ``bundle/`` (runs written before the refit procedure)."""
    return download_run_artifacts(run_id, HOLDOUT_DIR if has_artifact(run_id, HOLDOUT_DIR) else BUNDLE_DIR, dst)


def flat_params(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    """``{prefix.key: str(value)}`` for MLflow params (nested dicts flattened with dots)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flat_params(name, value))
        else:
            out[name] = str(value)
    return out


def pop_project_run_id() -> str | None:
    """The run ``mlflow run`` created for this process (``MLFLOW_RUN_ID``), removed from the environment.

    Removing it keeps later ``mlflow.start_run()`` calls from resuming it by accident.
    """
    return os.environ.pop("MLFLOW_RUN_ID", None)
