"""Serving fixtures: a real LightGBM model in a real (sqlite) MLflow registry, and a feature snapshot.

- ``registry``: a temporary sqlite tracking store with ``wikichurn`` version 1 registered and
  aliased ``production`` (MLflow is pointed at it while tests/serving runs, then restored;
  subprocesses get its URI).
- ``snapshot``: a snapshot parquet + sidecar built with :func:`wikichurn.core.churn.domain_frame`
  from synthetic histories (no Spark), as ``wikichurn features export`` writes it.
- ``client``: a ``TestClient`` of the app serving both, lifespan run (model loaded).

The model is trained on synthetic histories with the exact ``FEATURE_COLUMNS``; categoricals are
category codes from :func:`wikichurn.training.model.category_mappings`, as training does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.utils.serving import (
    CHURN,
    MODEL_NAME,
    SNAPSHOT_DOMAINS,
    Registry,
    feature_frame,
    mlflow_pointed_at,
    serving_settings,
    synthetic_histories,
    write_snapshot,
)
from wikichurn.serving.main import create_app


@pytest.fixture(scope="package")
def histories() -> dict[str, dict[date, int]]:
    return synthetic_histories()


@pytest.fixture(scope="package")
def registry(tmp_path_factory: pytest.TempPathFactory, histories: dict[str, dict[date, int]]) -> Iterator[Registry]:
    """``wikichurn`` v1 @production in a temporary sqlite store that MLflow points at (this package only)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_pointed_at(uri):
        import mlflow

        mlflow.create_experiment("serving-tests", artifact_location=(root / "artifacts").as_uri())
        reg = Registry(uri=uri, root=root, frame=feature_frame(histories), histories=histories)
        reg.register(MODEL_NAME, seed=1)
        yield reg


@pytest.fixture(scope="package")
def snapshot(tmp_path_factory: pytest.TempPathFactory, histories: dict[str, dict[date, int]]) -> Path:
    """The features of the first ``SNAPSHOT_DOMAINS`` domains on ``AS_OF``, as the exporter writes them."""
    out = tmp_path_factory.mktemp("serving") / "features_snapshot.parquet"
    write_snapshot(out, {code: histories[code] for code in list(histories)[:SNAPSHOT_DOMAINS]})
    return out


@pytest.fixture(scope="module")
def client(registry: Registry, snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app serving ``wikichurn@production`` with the snapshot, started (model loaded)."""
    app = create_app(serving_settings(snapshot, tmp_path_factory.mktemp("cache")), churn=CHURN)
    with TestClient(app) as test_client:
        assert test_client.get("/ready").status_code == 200
        yield test_client
