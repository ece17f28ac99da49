"""The package dependency rules of docs/architecture.md, checked on the source's imports (ast).

A stage may import the packages listed for it and nothing else of wikichurn; ``cli`` may import
anything. Imports inside functions count too (they run as soon as the function does), except for
the pyspark rule of ``serving``, which is about what importing the service loads.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "wikichurn"

# Which top-level packages of wikichurn each package may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "pipeline": {"core"},
    "sim": {"core"},
    # Training reads gold_churn_features through the lake's Spark reader.
    "training": {"core", "pipeline"},
    # Serving loads the model through the training package's model wrapper, and nothing else of it.
    "serving": {"core", "training.model"},
    # The dashboard reads the lake (table names from the core's data contract) and the registry.
    # Of serving it takes only the pyspark blocker; of training only the local MLflow server that
    # `--mlflow-root` starts.
    "dashboard": {"core", "serving.nospark", "training.server"},
}
ANYTHING = {"cli", "__main__", "__init__"}
# Named exceptions, module -> package: each one is a composition of several stages that the
# architecture would put in cli/, kept where it is for now.
EXCEPTIONS: dict[str, set[str]] = {
    # The forward backtest serves a simulated or replayed mirror, ingests it and trains on it.
    "wikichurn.training.backtest": {"sim"},
    # Batch scoring reads gold_churn_features and writes gold_churn_scores with Spark, through the
    # lake's I/O (inside run_scoring only: importing the module loads no pipeline code).
    "wikichurn.serving.batch": {"pipeline"},
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. wikichurn.serving.main
    target: str  # what it imports, e.g. wikichurn.core.settings
    line: int
    top_level: bool  # runs when the module is imported (not inside a function or TYPE_CHECKING)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, src: Path = SRC) -> list[Import]:
    module = ".".join(path.relative_to(src.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, child.lineno, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against this module's package
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.append(Import(module, target, child.lineno, top_level))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            else:
                visit(child, top_level)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


def _all_imports() -> list[Import]:
    return [imp for path in sorted(SRC.rglob("*.py")) for imp in _imports(path)]


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _allowed(stage: str, target: str) -> bool:
    inner = target.split(".")[1:]
    if not inner or inner[0] == stage or stage in ANYTHING:
        return True
    return any(inner[: len(rule.split("."))] == rule.split(".") for rule in ALLOWED[stage])


IMPORTS = _all_imports()


def test_every_package_has_a_rule() -> None:
    stages = {_stage(imp.module) for imp in IMPORTS} | {
        p.name for p in SRC.iterdir() if p.is_dir() and p.name != "conf"
    }
    stages.discard("__pycache__")
    assert stages - ANYTHING <= set(ALLOWED), stages - ANYTHING - set(ALLOWED)


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_stage_imports_only_what_it_may(stage: str) -> None:
    bad = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if _stage(imp.module) == stage
        and imp.target.startswith("wikichurn.")
        and not _allowed(stage, imp.target)
        and imp.target.split(".")[1] not in EXCEPTIONS.get(imp.module, set())
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("stage", ["core", "serving"])
def test_stage_does_not_load_spark_when_imported(stage: str) -> None:
    bad = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if _stage(imp.module) == stage and imp.top_level and imp.target.split(".")[0] in ("pyspark", "pysail")
    ]
    assert not bad, "\n".join(bad)


def test_core_never_imports_spark_at_all() -> None:
    # The core is shared with serving, which must run without pyspark installed in its image.
    bad = [imp for imp in IMPORTS if _stage(imp.module) == "core" and imp.target.split(".")[0] in ("pyspark", "pysail")]
    assert not bad


def test_the_checker_sees_forbidden_imports(tmp_path: Path) -> None:
    # The rules are only as good as the parser: a module-level and a nested forbidden import are found.
    probe = tmp_path / "wikichurn" / "serving" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "import pyspark.sql\n"
        "if TYPE_CHECKING:\n    from wikichurn.pipeline import spark\n"
        "def f():\n    from wikichurn.training import train\n"
        "from . import routes\n"
    )
    found = {(imp.target, imp.top_level) for imp in _imports(probe, tmp_path / "wikichurn")}
    assert found == {
        ("typing", True),
        ("pyspark.sql", True),
        ("wikichurn.pipeline", False),
        ("wikichurn.training", False),
        ("wikichurn.serving", True),
    }
    assert not _allowed("serving", "wikichurn.training.train")
    assert _allowed("serving", "wikichurn.training.model")
    assert not _allowed("serving", "wikichurn.pipeline")
    assert not _allowed("core", "wikichurn.pipeline.spark")
