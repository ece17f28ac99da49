"""Shared fixtures. Servers and engines are started by the tests themselves, never assumed."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.spark",
    "tests.fixtures.s3",
    "tests.fixtures.mirror",
    "tests.fixtures.scored_lake",
    "tests.fixtures.postgres",
]


def pytest_configure(config: pytest.Config) -> None:
    # Tests build their own settings: a developer's WIKICHURN_* variables must not leak in.
    for name in list(os.environ):
        if name.startswith("WIKICHURN_") and name != "WIKICHURN_CONF_DIR":
            del os.environ[name]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
