"""Threshold tuning and metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from wikichurn.training.metrics import binary_metrics, metric_spec, tune_threshold

Y = np.array([1, 1, 0, 1, 0, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.1])
# F1 when predicting churn for score >= t:
#   0.9 -> 0.500, 0.8 -> 0.800, 0.7 -> 0.667, 0.6 -> 0.857 (TP 3, FP 1, FN 0), 0.3 -> 0.750, 0.1 -> 0.667


def test_threshold_maximises_f1_on_a_hand_made_case() -> None:
    choice = tune_threshold(Y, SCORES, "f1")
    assert choice.threshold == 0.6
    assert choice.value == pytest.approx(6 / 7)


@pytest.mark.parametrize(
    ("objective", "kwargs", "expected"),
    [
        ("fbeta", {"beta": 0.5}, 0.8),  # precision-weighted: stop before the false alarm at 0.7
        ("fbeta", {"beta": 2.0}, 0.6),  # recall-weighted
        ("cost", {"fn_cost": 5.0}, 0.6),  # missing a churn is expensive: catch all three
        ("cost", {"fn_cost": 0.4}, 0.8),  # false alarms are expensive: FP 0 + 0.4 x FN 1
    ],
)
def test_threshold_objectives(objective: str, kwargs: dict[str, float], expected: float) -> None:
    assert tune_threshold(Y, SCORES, objective, **kwargs).threshold == expected  # type: ignore[arg-type]


def test_threshold_matches_brute_force_f1() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.15).astype(int)
    scores = np.round(np.clip(0.3 * y + rng.normal(0.3, 0.2, 500), 0, 1), 2)  # many ties
    choice = tune_threshold(y, scores, "f1")
    best = max(f1_score(y, (scores >= t).astype(int)) for t in np.unique(scores))
    assert choice.value == pytest.approx(best)
    assert f1_score(y, (scores >= choice.threshold).astype(int)) == pytest.approx(best)
    assert choice.threshold in set(scores)  # never splits tied scores


def test_ties_are_not_split() -> None:
    choice = tune_threshold(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.2]), "f1")
    assert choice.threshold == 0.2


def test_threshold_needs_positives() -> None:
    with pytest.raises(ValueError, match="positive"):
        tune_threshold(np.zeros(5), np.linspace(0, 1, 5))


def test_binary_metrics_at_threshold() -> None:
    m = binary_metrics(Y, SCORES, 0.6)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 0, 2)
    assert m["precision_churn"] == pytest.approx(0.75)
    assert m["recall_churn"] == 1.0
    assert m["precision_no_churn"] == 1.0
    assert m["recall_no_churn"] == pytest.approx(2 / 3)
    assert m["threshold"] == 0.6
    assert m["roc_auc"] == pytest.approx(8 / 9)
    assert 0 < m["brier"] < 1 and m["log_loss"] > 0
    assert m["rows"] == 6 and m["positive_rate"] == 0.5


def test_metric_directions() -> None:
    assert metric_spec("pr_auc").better(0.5, 0.4)
    assert metric_spec("log_loss").better(0.3, 0.4)
    assert metric_spec("brier").improvement(0.1, 0.2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown metric"):
        metric_spec("accuracy")
