"""The serving tests' model and data: synthetic histories, a LightGBM model trained on their exact
features and registered in a real (sqlite) MLflow registry, feature snapshots as the exporter writes
them, and request helpers. The fixtures that use them are in tests/serving/conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wikichurn.core.churn import CATEGORICAL_FEATURES, FEATURE_COLUMNS, KEY_COLUMNS
from wikichurn.core.columnar import domain_frame
from wikichurn.core.settings import ChurnSettings
from wikichurn.core.tables import TOP_REASONS, reason_columns

# The product's own scope (URIs, MLflow's globals and environment variables restored), for the tests.
from wikichurn.serving.batch import format_value, mlflow_pointed_at  # noqa: F401
from wikichurn.serving.config import ServingSettings
from wikichurn.serving.registry import LoadedModel
from wikichurn.serving.schemas import ScoreInstance
from wikichurn.serving.scoring import ServingState, score_instances
from wikichurn.serving.snapshot import load_snapshot
from wikichurn.training.model import (
    as_categorical,
    category_mappings,
    log_churn_model,
    model_input_example,
    write_model_dir,
)

MODEL_NAME = "wikichurn"
ALIAS = "production"
START = date(2024, 1, 1)
DAYS = 70
AS_OF = START + timedelta(days=DAYS - 1)
CHURN = ChurnSettings()
SNAPSHOT_DOMAINS = 12  # the first domains of the synthetic set are in the snapshot


# -- synthetic data ----------------------------------------------------------------------------


def synthetic_histories(n_domains: int = 40, seed: int = 3) -> dict[str, dict[date, int]]:
    """Daily views of ``n_domains`` domains over ``DAYS`` days: weekly cycles, noise, some collapses."""
    rng = np.random.default_rng(seed)
    languages = ["en", "de", "fr", "ja", "es", "it", "pl", "nl", "sv", "pt"]
    suffixes = ["", ".m", ".d", ".m.d", ".s", ".zero", ".q"]
    codes: list[str] = []
    while len(codes) < n_domains:
        code = f"{rng.choice(languages)}{rng.choice(suffixes)}"
        if code not in codes:
            codes.append(code)
    days = [START + timedelta(days=i) for i in range(DAYS)]
    histories: dict[str, dict[date, int]] = {}
    for k, code in enumerate(codes):
        level = float(np.exp(rng.uniform(3, 11)))
        weekly = 1 + 0.2 * np.sin(np.arange(DAYS) * 2 * np.pi / 7 + rng.uniform(0, 6))
        series = level * weekly * rng.lognormal(0, 0.15, DAYS)
        for _ in range(rng.integers(0, 4)):  # collapses: a few days at a tenth of the traffic
            at = int(rng.integers(5, DAYS - 3))
            series[at : at + int(rng.integers(1, 4))] *= 0.08
        start = int(rng.integers(0, 10)) if k % 5 == 0 else 0  # some domains appear later
        histories[code] = {day: int(v) for day, v in zip(days[start:], series[start:], strict=True)}
    return histories


def feature_frame(histories: dict[str, dict[date, int]]) -> pd.DataFrame:
    frames = [domain_frame(h, CHURN, domain_code=code) for code, h in histories.items()]
    return pd.concat(frames, ignore_index=True)


def train_model(
    frame: pd.DataFrame, *, seed: int, rounds: int = 40, threshold: float = 0.3, num_leaves: int = 15
) -> tuple[Any, dict]:
    """A small real booster on ``FEATURE_COLUMNS`` and its ``model_meta.json`` content."""
    labelled = frame[frame["label_available"] & frame["churn"].notna()]
    categories = category_mappings(labelled, CATEGORICAL_FEATURES)
    x = as_categorical(labelled[list(FEATURE_COLUMNS)], categories)
    params = {
        "objective": "binary",
        "verbosity": -1,
        "num_leaves": num_leaves,
        "min_data_in_leaf": 10,
        "min_data_per_group": 5,
        "learning_rate": 0.1,
        "seed": seed,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "deterministic": True,
    }
    booster = lgb.train(
        params,
        lgb.Dataset(x, labelled["churn"].astype(int), categorical_feature=list(CATEGORICAL_FEATURES)),
        num_boost_round=rounds,
    )
    meta = {
        "format_version": 1,
        "kind": "lightgbm",
        "features": list(FEATURE_COLUMNS),
        "categorical_features": list(CATEGORICAL_FEATURES),
        "categories": categories,
        "threshold": threshold,
        "threshold_objective": "f1",
        "best_iteration": rounds,
        "params": params,
        "label": {"horizon_days": CHURN.horizon_days, "window_days": CHURN.window_days, "factor": CHURN.factor},
        "metrics": {"validation": {"pr_auc": 0.5}, "test": {"pr_auc": 0.42, "roc_auc": 0.81}},
    }
    return booster, meta


# -- MLflow ------------------------------------------------------------------------------------


@dataclass
class Registry:
    """A sqlite MLflow store with helpers to register versions of the synthetic model."""

    uri: str
    root: Path
    frame: pd.DataFrame
    histories: dict[str, dict[date, int]]
    versions: dict[tuple[str, str], dict] = field(default_factory=dict)

    def register(self, name: str, *, seed: int, threshold: float = 0.3, alias: str | None = ALIAS) -> str:
        """Train, log (ChurnPyfunc), register a version of ``name`` and optionally point ``alias`` at it."""
        import mlflow
        from mlflow import MlflowClient

        booster, meta = train_model(self.frame, seed=seed, threshold=threshold)
        mlflow.set_experiment("serving-tests")
        with mlflow.start_run() as run:
            meta["run_id"] = run.info.run_id
            model_dir = write_model_dir(self.root / "models" / f"{name}-{seed}", booster, meta)
            info = log_churn_model(model_dir, model_input_example(self.frame, meta))
        version = mlflow.register_model(info.model_uri, name)
        if alias:
            MlflowClient().set_registered_model_alias(name, alias, version.version)
        self.versions[(name, str(version.version))] = meta
        return str(version.version)

    def set_alias(self, name: str, version: str, alias: str = ALIAS) -> None:
        from mlflow import MlflowClient

        MlflowClient().set_registered_model_alias(name, alias, version)

    def subprocess_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIKICHURN_")}
        env.update(MLFLOW_TRACKING_URI=self.uri, MLFLOW_REGISTRY_URI=self.uri, MLFLOW_DISABLE_TELEMETRY="true")
        return env


def write_snapshot(out: Path, histories: dict[str, dict[date, int]]) -> pd.DataFrame:
    rows = [domain_frame(h, CHURN, domain_code=code).iloc[[-1]] for code, h in histories.items()]
    frame = pd.concat(rows, ignore_index=True)
    frame = frame[[*KEY_COLUMNS, *(c for c in FEATURE_COLUMNS if c not in KEY_COLUMNS)]]
    frame.to_parquet(out, index=False)
    as_of = frame["event_date"].max()
    out.with_name(out.name + ".json").write_text(json.dumps({"as_of": as_of.isoformat(), "domains": len(frame)}))
    return frame


def api_score_rows(model: LoadedModel, features: pa.Table, folder: Path) -> dict[tuple[str, date], dict[str, Any]]:
    """What ``POST /score`` (explain, top ``TOP_REASONS``) answers for each feature row, as a
    ``gold_churn_scores`` row keyed by domain and day (``scored_at`` None: the batch run's stamp).

    Each day's rows are written as the snapshot file the service reads, loaded by its loader and
    scored by its scorer, one request per day.
    """
    expected: dict[tuple[str, date], dict[str, Any]] = {}
    for day in sorted(set(features.column("event_date").to_pylist())):
        path = folder / f"snapshot-{day}.parquet"
        pq.write_table(features.filter(pc.equal(features.column("event_date"), pa.scalar(day, pa.date32()))), path)
        snapshot = load_snapshot(path)
        instances = [ScoreInstance(domain_code=d) for d in snapshot.rows]
        state = ServingState(model=model, snapshot=snapshot)
        for result in score_instances(state, instances, explain=True, top_k=TOP_REASONS):
            row: dict[str, Any] = {
                "domain_code": result["domain_code"],
                "event_date": result["as_of"],
                "risk_score": result["risk_score"],
                "churn": result["churn"],
                "threshold": result["threshold"],
                "model_name": model.ref.name,
                "model_version": result["model_version"],
                "scored_at": None,
            }
            items = result["explanation"]["contributions"]
            for k in range(1, TOP_REASONS + 1):
                feature, value, contribution = reason_columns(k)
                item = items[k - 1] if k <= len(items) else None
                row[feature] = item["feature"] if item else None
                row[value] = format_value(item["value"]) if item else None
                row[contribution] = item["contribution"] if item else None
            expected[(row["domain_code"], row["event_date"])] = row
    return expected


def serving_settings(snapshot: Path, cache: Path, **overrides: Any) -> ServingSettings:
    values: dict[str, Any] = {
        "model_name": MODEL_NAME,
        "model_alias": ALIAS,
        "snapshot_path": str(snapshot),
        "model_cache_dir": str(cache),
        "startup_timeout_s": 60,
        "max_batch": 50,
        "max_history_batch": 20,
    }
    return ServingSettings(**{**values, **overrides})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def history_payload(history: dict[date, int]) -> list[dict[str, Any]]:
    return [{"date": day.isoformat(), "views": views} for day, views in history.items()]
