"""Shared fixtures. Servers and engines are started by the tests themselves, never assumed."""

from __future__ import annotations

import os
import sys

import pytest

pytest_plugins = [
    "tests.fixtures.spark",
    "tests.fixtures.s3",
    "tests.fixtures.mirror",
    "tests.fixtures.postgres",
]

_exit_status = 0


def pytest_configure(config: pytest.Config) -> None:
    # Tests build their own settings: a developer's WIKICHURN_* variables must not leak in.
    for name in list(os.environ):
        if name.startswith("WIKICHURN_") and name != "WIKICHURN_CONF_DIR":
            del os.environ[name]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The Spark Connect client (grpc) and deltalake in one interpreter sometimes abort during
    # interpreter teardown (exit 134) after every test has finished. The results are final here,
    # so leave with pytest's own status instead of running that teardown.
    if os.environ.get("WIKICHURN_TEST_HARD_EXIT", "1") == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
