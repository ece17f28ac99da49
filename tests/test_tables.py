"""The data contract: each table name is written once, and the feature table's schema is the spec's."""

from __future__ import annotations

import ast
from pathlib import Path

from wikichurn.core import tables
from wikichurn.core.featurespec import feature_spec, table_columns
from wikichurn.core.settings import ChurnSettings

SRC = Path(__file__).resolve().parents[1] / "src" / "wikichurn"
NAMES = {value for key, value in vars(tables).items() if key.isupper() and isinstance(value, str)}
# The training settings name their input table (a setting, also in conf/training.yaml).
SETTING = {"core/settings.py": {tables.GOLD_FEATURES}}


def test_table_names_are_written_only_in_the_contract() -> None:
    assert len(NAMES) >= 13 and set(tables.PIPELINE_TABLES) <= NAMES
    repeated = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "core/tables.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in NAMES and node.value not in SETTING.get(rel, set()):
                repeated.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not repeated, "table names outside wikichurn.core.tables:\n" + "\n".join(repeated)


def test_feature_schema_is_the_spec_and_follows_the_settings() -> None:
    churn = ChurnSettings(window_days=5, horizon_days=10)
    schema = tables.features_schema(churn)
    assert [c.name for c in schema] == list(table_columns(churn))
    assert "avg_views_past_5d" in {c.name for c in schema} and "views_plus_10" in {c.name for c in schema}
    types = {c.name: c.type for c in schema}
    assert types["event_date"] == "date" and types["label_available"] == "boolean"
    assert {f.name: f.dtype for f in feature_spec(churn)}.items() <= types.items()


def test_score_columns_are_the_schema() -> None:
    assert set(tables.SCORE_KEYS) <= set(tables.SCORE_COLUMNS)
    assert [c for k in range(1, tables.TOP_REASONS + 1) for c in tables.reason_columns(k)] == list(
        tables.SCORE_COLUMNS[-3 * tables.TOP_REASONS :]
    )
