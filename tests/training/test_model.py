"""ChurnScorer (the serving path) against LightGBM itself, category handling, and the leak check."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from wikichurn.core.churn import CATEGORICAL_FEATURES, FEATURE_COLUMNS, LABEL_ONLY_COLUMNS, SEED_FEATURES, label_columns
from wikichurn.training.baselines import HeuristicScorer, heuristic_score
from wikichurn.training.model import (
    BOOSTER_FILE,
    META_FILE,
    ChurnScorer,
    as_categorical,
    category_mappings,
    model_input_example,
    read_meta,
    write_model_dir,
)
from wikichurn.training.onerow import SingleRowPredictor
from wikichurn.training.train import model_features

FEATURES = ["views", "ratio", "domain_code", "access"]


@pytest.fixture(scope="module")
def toy() -> tuple[ChurnScorer, pd.DataFrame, lgb.Booster]:
    rng = np.random.default_rng(7)
    n = 600
    frame = pd.DataFrame(
        {
            "views": rng.integers(0, 1000, n),
            "ratio": rng.normal(1, 0.3, n),
            "domain_code": rng.choice(["en", "de", "fr.d", "ja.m"], n),
            "access": rng.choice(["desktop", "mobile"], n),
        }
    )
    y = ((frame["ratio"] < 0.9) | (frame["domain_code"] == "fr.d")).astype(int)
    categories = category_mappings(frame, ["domain_code", "access"])
    x = as_categorical(frame[FEATURES], categories)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 7, "min_data_per_group": 5, "seed": 1},
        lgb.Dataset(x, y, categorical_feature=["domain_code", "access"]),
        num_boost_round=30,
    )
    meta = {"features": FEATURES, "categories": categories, "threshold": 0.5, "kind": "lightgbm"}
    return ChurnScorer(lgb.Booster(model_str=booster.model_to_string()), meta), frame, booster


def test_scorer_equals_lightgbm_on_pandas_categories(toy) -> None:
    scorer, frame, booster = toy
    expected = booster.predict(as_categorical(frame[FEATURES], scorer.categories))
    assert np.array_equal(scorer.predict_proba(frame), expected)


def test_dataframe_matrix_and_records_paths_agree(toy) -> None:
    scorer, frame, _ = toy
    from_frame = scorer.predict_proba(frame)
    assert np.array_equal(scorer.predict_proba(scorer.encode(frame)), from_frame)
    records = frame.head(20).to_dict(orient="records")
    assert np.array_equal(scorer.predict_proba(records), from_frame[:20])
    assert np.array_equal(scorer.encode_records(records), scorer.encode(frame.head(20)))


def test_unseen_and_missing_categories_are_unknown(toy) -> None:
    scorer, frame, booster = toy
    odd = frame.head(3).copy()
    odd["domain_code"] = ["never-seen", None, "en"]
    matrix = scorer.encode(odd)
    j = FEATURES.index("domain_code")
    assert np.isnan(matrix[0, j]) and np.isnan(matrix[1, j])
    assert matrix[2, j] == scorer.categories["domain_code"].index("en")
    # LightGBM's own pandas path maps unseen levels to missing too: same scores.
    expected = booster.predict(as_categorical(odd[FEATURES], scorer.categories))
    assert np.array_equal(scorer.predict_proba(odd), expected)


def test_predict_output_and_threshold(toy) -> None:
    scorer, frame, _ = toy
    out = scorer.predict(frame)
    assert list(out.columns) == ["risk_score", "churn"]
    assert out["risk_score"].between(0, 1).all()
    assert (out["churn"] == (out["risk_score"] >= scorer.threshold).astype(int)).all()
    assert set(out["churn"]) <= {0, 1}


def test_contributions_sum_to_log_odds(toy) -> None:
    scorer, frame, _ = toy
    contrib = scorer.contributions(frame.head(50))
    assert list(contrib.columns) == [*FEATURES, "expected_value"]
    raw = scorer.booster.predict(scorer.encode(frame.head(50)), raw_score=True)
    assert np.allclose(contrib.sum(axis=1).to_numpy(), raw)


def test_single_row_path_equals_booster_predict_bit_for_bit(toy) -> None:
    """One-row calls go through LightGBM's single-row C predictor: the very numbers of Booster.predict."""
    scorer, frame, booster = toy
    matrix = scorer.encode(frame)
    matrix[::7, 1] = np.nan  # missing values and unknown categories take the trees' default branches
    matrix[::5, 2] = np.nan
    batch_scores = booster.predict(matrix)
    batch_contrib = booster.predict(matrix, pred_contrib=True)
    for i in range(0, len(matrix), 3):
        one = matrix[i : i + 1]
        assert scorer.predict_proba(one).tolist() == [batch_scores[i]]
        assert scorer.contribution_matrix(one).tolist() == [batch_contrib[i].tolist()]


def test_single_row_predictor_refuses_a_wrong_width_and_frees_its_config(toy) -> None:
    _scorer, _frame, booster = toy
    predictor = SingleRowPredictor(booster)
    with pytest.raises(ValueError, match="expected one row of 4 features"):
        predictor.predict(np.zeros(3))
    assert predictor.predict(np.zeros(4)).shape == (1,)
    predictor.close()
    predictor.close()  # idempotent: the finalizer runs once


def test_single_row_path_is_safe_across_threads(toy) -> None:
    scorer, frame, booster = toy
    matrix = scorer.encode(frame)
    expected = booster.predict(matrix)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: scorer.predict_proba(matrix[i : i + 1])[0], range(len(matrix))))
    assert got == expected.tolist()


def test_model_dir_round_trip(toy, tmp_path: Path) -> None:
    scorer, frame, _ = toy
    folder = write_model_dir(tmp_path / "m", scorer.booster, scorer.meta)
    assert (folder / BOOSTER_FILE).read_text().startswith("tree")
    assert json.loads((folder / META_FILE).read_text())["features"] == FEATURES
    again = ChurnScorer.from_dir(folder)
    assert np.array_equal(again.predict_proba(frame), scorer.predict_proba(frame))
    # A downloaded MLflow model keeps the two files under artifacts/.
    nested = tmp_path / "mlflow_model" / "artifacts"
    write_model_dir(nested, scorer.booster, scorer.meta)
    assert np.array_equal(
        ChurnScorer.from_dir(tmp_path / "mlflow_model").predict_proba(frame), again.predict_proba(frame)
    )
    assert read_meta(tmp_path / "mlflow_model")["threshold"] == 0.5


def test_missing_feature_column_is_an_error(toy) -> None:
    scorer, frame, _ = toy
    with pytest.raises(KeyError, match="ratio"):
        scorer.predict_proba(frame.drop(columns="ratio"))


def test_input_example_types(toy) -> None:
    scorer, frame, _ = toy
    example = model_input_example(frame.astype({"views": "int32"}), scorer.meta, rows=3)
    assert str(example["views"].dtype) == "int64"  # MLflow widens int32 but never int -> double
    assert str(example["ratio"].dtype) == "float64"
    assert example["domain_code"].map(type).eq(str).all()


def test_no_label_only_column_is_a_feature() -> None:
    assert not set(FEATURE_COLUMNS) & set(LABEL_ONLY_COLUMNS)
    assert not set(FEATURE_COLUMNS) & set(label_columns(14))
    assert model_features(FEATURE_COLUMNS) == list(FEATURE_COLUMNS)
    assert set(SEED_FEATURES) <= set(FEATURE_COLUMNS)
    assert set(CATEGORICAL_FEATURES) <= set(FEATURE_COLUMNS)


@pytest.mark.parametrize("leak", [*LABEL_ONLY_COLUMNS, "event_date"])
def test_leak_check_refuses_label_columns(leak: str) -> None:
    with pytest.raises(ValueError, match="label or key columns"):
        model_features([*FEATURE_COLUMNS, leak])


def test_heuristic_score() -> None:
    frame = pd.DataFrame({"count_views": [100, 50, 0, 10, 5], "avg_views_past_3d": [100.0, 100.0, 100.0, 0.0, None]})
    assert heuristic_score(frame).tolist() == [0.0, 0.5, 1.0, 0.0, 0.0]
    out = HeuristicScorer({"threshold": 0.5}).predict(frame)
    assert out["churn"].tolist() == [0, 1, 1, 0, 0]
