"""Training fixtures: a real MLflow tracking server, a simulated feature table, one trained model.

- ``mlflow_server``: ``wikichurn.training.server.tracking_server`` on a free loopback port (sqlite store,
  proxied artifacts) for the whole session.
- ``churn_lake``: 45 simulated days x 60 domains (seed 12: a complete calendar), through the real
  pipeline on Sail into a Delta lake; read-only for tests.
- ``trained``: ``run_main`` (train with 3 trials, evaluate, register, promote) on that lake.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession

from wikichurn.core.settings import Settings
from wikichurn.pipeline.lakehouse.run import run_pipeline
from wikichurn.sim.simulate import simulate
from wikichurn.training.config import TrainingSettings, load_training_settings
from wikichurn.training.main import MainResult, run_main
from wikichurn.training.server import TrackingServer, tracking_server

SIM_START = date(2024, 1, 1)
SIM_DAYS = 45
SIM_DOMAINS = 60
SIM_SEED = 12
E2E_EXPERIMENT = "e2e"
E2E_MODEL = "wikichurn"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A local MLflow tracking server for the session."""
    with tracking_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


def training_settings(server: TrackingServer, **overrides: Any) -> TrainingSettings:
    """Small, fast training settings pointed at ``server``."""
    defaults: dict[str, Any] = {
        "tracking_uri": server.url,
        "tuning": {"trials": 3},
        "num_threads": 1,  # OpenMP threads spin against busy neighbours: 1 thread is far faster on shared CI
        "evaluation": {"shap_sample_rows": 300},
    }
    return load_training_settings(**{**defaults, **overrides})


@pytest.fixture(scope="session")
def churn_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a lake whose gold_churn_features was built from simulated raw files."""
    root = tmp_path_factory.mktemp("churn_lake")
    end = SIM_START + timedelta(days=SIM_DAYS - 1)
    simulate(root / "raw", SIM_START, end, domains=SIM_DOMAINS, seed=SIM_SEED)
    settings = Settings(raw_uri=str(root / "raw"), lake_uri=str(root / "lake"))
    run_pipeline(spark, settings)
    return settings


@pytest.fixture(scope="session")
def trained(churn_lake: Settings, mlflow_server: TrackingServer, spark: SparkSession) -> MainResult:
    """One full training (3 trials), evaluation, registration and promotion."""
    cfg = training_settings(mlflow_server, experiment_name=E2E_EXPERIMENT, model_name=E2E_MODEL)
    return run_main(cfg, churn_lake, spark=spark)
