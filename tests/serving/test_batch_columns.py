"""The vectorised batch scorer against the API's own scoring, row by row (no Spark, no registry).

:func:`wikichurn.serving.batch.score_features` scores whole columns in chunks; ``POST /score``
scores snapshot rows one request at a time with :func:`wikichurn.serving.scoring.score_instances`.
Here both score the same feature rows (synthetic domains over 70 days, with missing, NaN and
infinite values, unknown and missing categories, and a one-tree model whose reasons tie), the API's
side through the snapshot file and loader it serves from, and every field of every row must be equal.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.utils.serving import CHURN, api_score_rows, feature_frame, synthetic_histories, train_model
from wikichurn.core.churn import FEATURE_COLUMNS, KEY_COLUMNS
from wikichurn.core.tables import SCORE_COLUMNS, TOP_REASONS, reason_columns
from wikichurn.serving.batch import (
    SCORES_ARROW_SCHEMA,
    day_batches,
    format_value,
    format_values,
    score_features,
    top_reasons,
    unique_keys,
)
from wikichurn.serving.registry import LoadedModel, ModelRef, build_loaded_model
from wikichurn.serving.scoring import _explanation
from wikichurn.training.model import ChurnScorer

SCORED_AT = datetime(2024, 5, 6, 7, 8, 9, 123456)


def _model(rounds: int, num_leaves: int = 15) -> LoadedModel:
    frame = feature_frame(synthetic_histories(n_domains=40, seed=3))
    booster, meta = train_model(frame, seed=1, rounds=rounds, num_leaves=num_leaves)
    ref = ModelRef(name="wikichurn", alias="production", version=f"{rounds}x{num_leaves}")
    return build_loaded_model(ref, ChurnScorer(booster, meta), CHURN)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return _model(rounds=40)


@pytest.fixture(scope="module")
def stump() -> LoadedModel:
    """One tree of two splits: at most two features contribute, the others tie at 0 on every row."""
    return _model(rounds=1, num_leaves=3)


def _column(table: pa.Table, name: str, rows: dict[int, Any]) -> pa.Table:
    """``table`` with ``name``'s values replaced at the given rows (NaN stays NaN, None is null)."""
    values = table.column(name).to_pylist()
    for i, value in rows.items():
        values[i] = value
    kind = table.schema.field(name).type
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, kind, from_pandas=False))


@pytest.fixture(scope="module")
def features() -> pa.Table:
    """Every day of 40 synthetic domains (their first days lack history: NaN features), plus edge values."""
    frame = feature_frame(synthetic_histories(n_domains=40, seed=3))
    columns = [*KEY_COLUMNS, *(c for c in FEATURE_COLUMNS if c not in KEY_COLUMNS)]
    table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    n = table.num_rows
    numeric = [c for c in FEATURE_COLUMNS if pa.types.is_floating(table.schema.field(c).type)]
    integer = [c for c in FEATURE_COLUMNS if pa.types.is_integer(table.schema.field(c).type)]
    assert numeric and integer
    rng = np.random.default_rng(7)
    edges = [float("nan"), None, float("inf"), float("-inf"), -0.0, 0.0, 5e-324, 1e300, 1 / 3, 0.1, 2.0**53 + 2]
    for name in numeric:  # every edge value in every float feature, on random rows
        at = rng.choice(n, size=len(edges), replace=False)
        table = _column(table, name, dict(zip(at.tolist(), edges, strict=True)))
    for name in integer:
        at = rng.choice(n, size=3, replace=False)
        table = _column(table, name, dict(zip(at.tolist(), [None, 0, 2**53 + 1], strict=True)))
    for name in ("language", "project_family", "access"):  # unknown to the model, and missing
        at = rng.choice(n, size=6, replace=False)
        table = _column(table, name, dict(zip(at.tolist(), ["xx", "xx", "??", None, None, ""], strict=True)))
    # A domain the model never saw, with its own rows.
    unknown = table.slice(0, 30)
    unknown = unknown.set_column(0, "domain_code", pa.array(["zz.unknown"] * 30, pa.string()))
    return pa.concat_tables([table, unknown])


@pytest.mark.parametrize("which", ["model", "stump"])
def test_every_row_equals_what_the_api_answers(
    which: str, request: pytest.FixtureRequest, features: pa.Table, tmp_path: Path
) -> None:
    model: LoadedModel = request.getfixturevalue(which)
    scores = score_features(model, features, SCORED_AT, chunk_rows=97)  # chunk edges fall inside days
    assert scores.schema == SCORES_ARROW_SCHEMA and scores.column_names == list(SCORE_COLUMNS)
    assert scores.num_rows == features.num_rows
    got = scores.to_pylist()
    # Same rows, in the features' order.
    assert [(r["domain_code"], r["event_date"]) for r in got] == list(
        zip(features.column("domain_code").to_pylist(), features.column("event_date").to_pylist(), strict=True)
    )
    expected = api_score_rows(model, features, tmp_path)
    assert len(expected) == len(got)
    differ = [(r, expected[(r["domain_code"], r["event_date"])]) for r in got]
    differ = [(mine, api) for mine, api in differ if {**mine, "scored_at": None} != api]
    assert not differ, f"{len(differ)} rows differ from the API, e.g. {differ[0]}"
    assert {r["scored_at"] for r in got} == {SCORED_AT}

    # The cases the comparison is meant to cover did occur.
    values = [r[reason_columns(k)[1]] for r in got for k in range(1, TOP_REASONS + 1)]
    assert None in values  # a missing or infinite value among the reasons
    assert "zz.unknown" in values  # a category the model never saw, reported as is
    if which == "stump":  # ties: the third reason is one of the many zeros, the first of them by position
        assert all(r[reason_columns(3)[2]] == 0.0 for r in got)
        assert {r[reason_columns(3)[0]] for r in got} <= set(model.scorer.features[:3])


def test_chunk_size_changes_nothing_but_the_booster_calls(
    model: LoadedModel, features: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = score_features(model, features, SCORED_AT)
    calls: list[dict[str, Any]] = []
    predict = model.scorer.booster.predict

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append({"rows": len(args[0]), **kwargs})
        return predict(*args, **kwargs)

    monkeypatch.setattr(model.scorer.booster, "predict", counting)
    chunked = score_features(model, features, SCORED_AT, chunk_rows=1000)
    assert chunked.equals(whole)
    chunks = math.ceil(features.num_rows / 1000)
    # Per chunk: one call for the scores, one for the contributions; never one per row or per day.
    assert len(calls) == 2 * chunks
    assert sum(1 for c in calls if c.get("pred_contrib")) == chunks
    assert max(c["rows"] for c in calls) == 1000
    assert score_features(model, features.slice(0, 0), SCORED_AT).num_rows == 0
    with pytest.raises(ValueError, match="chunk_rows"):
        score_features(model, features, SCORED_AT, chunk_rows=0)


def test_top_reasons_rank_and_break_ties_as_the_api() -> None:
    rng = np.random.default_rng(3)
    crafted = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, -1.0, 1.0, 0.5, -0.5, 0.0],
            [-2.0, 2.0, 0.0, 2.0, -0.0, 1.0],
            [0.0, -0.0, 3.0, 0.0, -3.0, 0.0],
            [1e-300, -5e-324, 5e-324, 0.0, -1e-300, 0.0],
        ]
    )
    matrix = np.vstack([crafted, rng.integers(-3, 4, size=(200, 6)) / 2])  # many ties of each size
    names = [f"f{j}" for j in range(6)]
    for k in (1, 3, 6):
        got = top_reasons(matrix, k)
        for row, picked in zip(matrix, got, strict=True):
            contrib = np.append(row, 0.0)  # the API's row ends with the bias
            api = _explanation(names, {}, contrib, k)["contributions"]
            assert [names[j] for j in picked] == [item["feature"] for item in api]
            assert [float(row[j]) for j in picked] == [item["contribution"] for item in api]


def test_reason_values_are_formatted_as_format_value() -> None:
    finite = [0.1, 1 / 3, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 1e300, -1e-7, 2.0**53 + 2, 123456789.0, 1e16]
    numbers = np.array([*finite, float("nan"), float("inf"), float("-inf")])
    assert format_values(numbers).tolist() == [format_value(v) for v in finite] + [None, None, None]
    assert [float(v) for v in format_values(np.array(finite))] == finite  # repr round-trips
    assert format_values(np.array(finite)).tolist()[2] == "-0.0"
    assert format_values(np.array([], dtype="float64")).tolist() == []
    assert (format_value(None), format_value("en.m"), format_value(3)) == (None, "en.m", "3.0")


def test_repeated_keys_score_the_last_row_once(model: LoadedModel, features: pa.Table) -> None:
    assert unique_keys(features) is features
    first, second = features.slice(5, 1), _column(features.slice(5, 1), "count_views", {0: 10**9})
    doubled = pa.concat_tables([features.slice(0, 5), first, features.slice(6, 10), second])
    kept = unique_keys(doubled)
    assert kept.num_rows == 16 and kept.column("count_views").to_pylist().count(10**9) == 1
    assert kept.equals(pa.concat_tables([features.slice(0, 5), features.slice(6, 10), second]))


def test_day_batches_cut_between_days_under_the_byte_limit() -> None:
    days = [date(2024, 1, 1 + i % 5) for i in range(500)]  # 5 days, shuffled across the rows
    table = pa.table({"event_date": pa.array(days, pa.date32()), "x": pa.array(np.arange(500.0))})
    assert day_batches(table, table.nbytes) == [table]  # under the limit: untouched, one commit
    per_day = table.nbytes / 5
    parts = day_batches(table, int(2 * per_day) + 1)
    assert [p.num_rows for p in parts] == [200, 200, 100]
    seen = [set(p.column("event_date").to_pylist()) for p in parts]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])  # no day in two commits
    assert sorted(pa.concat_tables(parts).column("x").to_pylist()) == list(np.arange(500.0))
    single = day_batches(table, 1)  # one day over the limit still goes whole
    assert [p.num_rows for p in single] == [100] * 5
