"""Schemathesis fuzzes every operation of the OpenAPI schema: no input may produce a 5xx.

Each operation's case strategy drives a Hypothesis test directly. (Schemathesis' lazy
``schemathesis.pytest.from_fixture`` loader reads ``Function._nodeid``, which pytest 9 removed,
and an eager schema would need the registry and snapshot at import time.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from tests.utils.serving import CHURN, Registry, serving_settings
from wikichurn.serving.main import create_app

pytestmark = pytest.mark.slow

OPERATIONS = [
    ("POST", "/score"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/model"),
    ("POST", "/admin/reload"),
]


@pytest.fixture(scope="module")
def fuzz_schema(registry: Registry, snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from schemathesis.python.asgi import shutdown_lifespans

    # Schemathesis runs the app's lifespan itself: the model is loaded before the first call.
    app = create_app(serving_settings(snapshot, tmp_path_factory.mktemp("fuzz-cache"), max_batch=20), churn=CHURN)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shutdown_lifespans()


def test_schema_lists_every_operation(fuzz_schema: Any) -> None:
    found = {(op.method.upper(), op.path) for op in (result.ok() for result in fuzz_schema.get_all_operations())}
    assert found == set(OPERATIONS)


# Negative cases (invalid on purpose) exist only for operations that take input.
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    ("POST", "/score", GenerationMode.NEGATIVE),
    ("POST", "/admin/reload", GenerationMode.NEGATIVE),
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_no_input_causes_a_server_error(fuzz_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = fuzz_schema[path][method]
    # Beyond "no 5xx": every status and body the app answers with is one its schema documents.
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        case.call_and_validate(checks=checks)

    fuzz()
