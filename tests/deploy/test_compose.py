"""docker-compose.yml, the Dockerfile and .env.example agree with each other and with the code.

The stack itself is brought up for real by ``scripts/stack-test`` (``make stack-test``; CI runs it):
these checks are the fast part that needs no Docker engine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from wikichurn.cli.app import app

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
STACK_JOB = REPO / "scripts" / "container" / "stack-job"
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _stages() -> dict[str, list[str]]:
    """Dockerfile stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            current = line.split()[-1]
            stages[current] = [line]
        elif current and line and not line.startswith("#"):
            stages[current].append(line)
    return stages


def test_compose_file_is_valid_compose_spec() -> None:
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "version" not in _compose()


def test_every_dependency_exists_and_waits_on_a_condition() -> None:
    services = _compose()["services"]
    stages = _stages()
    waited_for: dict[str, set[str]] = {}
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert rule["condition"] in ("service_healthy", "service_completed_successfully"), name
            waited_for.setdefault(target, set()).add(rule["condition"])
    for name, service in services.items():
        target = service["build"]["target"]
        assert target in stages, f"{name} builds unknown target {target}"
        healthy = "healthcheck" in service or any(i.startswith("HEALTHCHECK") for i in stages[target])
        if "service_healthy" in waited_for.get(name, set()) or "ports" in service:
            assert healthy, f"{name} has a port or is waited on, but no healthcheck"
        if "service_completed_successfully" in waited_for.get(name, set()):
            assert "restart" not in service, f"one-shot job {name} must not restart"


def test_images_all_start_from_the_base_image_and_drop_root() -> None:
    stages = _stages()
    assert (REPO / "Dockerfile").read_text().count("ARG BASE_IMAGE=python:3.11-slim-bookworm") == 1
    for name, instructions in stages.items():
        parent = instructions[0].split()[1]
        assert parent == "${BASE_IMAGE}" or parent in stages, f"stage {name} starts FROM {parent}"
    for name in ("app", "api", "mlflow", "s3", "postgres"):
        chain, users = name, []
        while chain in stages:
            users = [i for i in stages[chain] if i.startswith("USER ")] or users
            if users:
                break
            chain = stages[chain][0].split()[1]
        assert users and users[-1] not in ("USER root", "USER 0"), f"{name} runs as root"
    deps = stages["deps"]
    assert not any(i.startswith("COPY src") for i in deps), "dependencies must install before the source"


def _stack_job_commands() -> set[str]:
    return set(re.findall(r"^    ([a-z0-9-]+)\)", STACK_JOB.read_text(), flags=re.MULTILINE))


def test_every_service_command_exists() -> None:
    jobs = _stack_job_commands()
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if command and command[0] == "stack-job":
            assert command[1] in jobs, f"{name}: stack-job has no {command[1]}"
    pattern = r"^\s+(?:exec )?wikichurn ([a-z][a-z-]*(?: [a-z][a-z-]*)?)"
    used = set(re.findall(pattern, STACK_JOB.read_text(), flags=re.MULTILINE))
    assert {"ingest", "pipeline run", "warehouse export", "mirror serve"} <= used
    runner = CliRunner()
    for line in sorted(used):
        words = line.split()
        result = runner.invoke(app, [*words, "--help"])
        if result.exit_code != 0 and len(words) == 2:  # "wikichurn ingest --start": one word only
            result = runner.invoke(app, [words[0], "--help"])
        assert result.exit_code == 0, f"wikichurn {line}: {result.output}"


@pytest.mark.parametrize("path", ["scripts/container/stack-job", "scripts/container/postgres-entrypoint"])
def test_container_scripts_are_valid_posix_shell(path: str) -> None:
    assert subprocess.run(["sh", "-n", str(REPO / path)], capture_output=True).returncode == 0


def test_env_example_lists_every_variable_the_compose_file_reads() -> None:
    used = set(VARIABLE.findall(yaml.safe_dump(_compose())))
    documented = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines() if "=" in line}
    documented = {name for name in documented if not name.startswith("#")}
    assert used - documented == set()
    assert documented - used <= {"COMPOSE_PROJECT_NAME"}
