"""Metrics of a binary risk score, and the decision threshold picked on validation.

Pure numpy / scikit-learn: no MLflow, no Spark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)


@dataclass(frozen=True)
class MetricSpec:
    """A score metric: how to compute it and which way is better."""

    name: str
    compute: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    lightgbm_metric: str  # the LightGBM eval metric used for early stopping and pruning

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b

    def improvement(self, candidate: float, reference: float) -> float:
        """How much better ``candidate`` is than ``reference`` (positive = better)."""
        return candidate - reference if self.greater_is_better else reference - candidate


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))


METRICS: dict[str, MetricSpec] = {
    # PR AUC is average precision (the step-wise area, as scikit-learn and LightGBM compute it).
    "pr_auc": MetricSpec("pr_auc", lambda y, p: float(average_precision_score(y, p)), True, "average_precision"),
    "roc_auc": MetricSpec("roc_auc", lambda y, p: float(roc_auc_score(y, p)), True, "auc"),
    "log_loss": MetricSpec("log_loss", _log_loss, False, "binary_logloss"),
    "brier": MetricSpec("brier", lambda y, p: float(brier_score_loss(y, p)), False, "binary_logloss"),
}


def metric_spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` called ``name`` (``pr_auc``, ``roc_auc``, ``log_loss``, ``brier``)."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}") from None


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold: predict churn when ``score >= threshold``."""

    threshold: float
    objective: str
    value: float  # the objective at that threshold (F-beta, or minus the cost)


def tune_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    objective: Literal["f1", "fbeta", "cost"] = "f1",
    *,
    beta: float = 1.0,
    fn_cost: float = 5.0,
) -> ThresholdChoice:
    """The threshold that maximises F1 / F-beta, or minimises ``FP + fn_cost * FN``.

    Every distinct score is a candidate (predict churn when ``score >= candidate``); ties go to
    the higher threshold (fewer alarms). Call this on validation predictions only.

    Args:
        y: 0/1 labels.
        scores: risk scores, higher = more likely churn.
        objective: ``f1``, ``fbeta`` (with ``beta``) or ``cost`` (with ``fn_cost``).
        beta: F-beta's beta (> 1 weighs recall more).
        fn_cost: cost of a missed churn, in false alarms.

    Returns:
        The threshold and the objective's value there.
    """
    y = np.asarray(y, dtype="int64")
    scores = np.asarray(scores, dtype="float64")
    if y.shape != scores.shape or y.size == 0:
        raise ValueError("y and scores must be non-empty and of the same length")
    positives = int(y.sum())
    if positives == 0:
        raise ValueError("cannot tune a threshold without positive labels")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order]
    # Candidate k = "predict positive for the first k+1 sorted rows", taken at the last row of
    # each run of equal scores so a threshold never splits tied scores.
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(t)[last_of_run].astype("float64")
    fp = np.cumsum(1 - t)[last_of_run].astype("float64")
    candidates = s[last_of_run]
    fn = positives - tp
    if objective == "cost":
        values = -(fp + fn_cost * fn)
    else:
        b2 = 1.0 if objective == "f1" else beta**2
        values = (1 + b2) * tp / np.maximum((1 + b2) * tp + b2 * fn + fp, 1e-12)
    # argmax returns the first maximum: the highest threshold among equally good ones.
    best = int(np.argmax(values))
    return ThresholdChoice(threshold=float(candidates[best]), objective=objective, value=float(values[best]))


def score_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics: ROC AUC, PR AUC, log loss, Brier score (NaN when undefined)."""
    y = np.asarray(y, dtype="int64")
    scores = np.clip(np.asarray(scores, dtype="float64"), 0.0, 1.0)
    both = 0 < y.sum() < y.size
    return {
        name: (spec.compute(y, scores) if both or name == "brier" else float("nan")) for name, spec in METRICS.items()
    }


def threshold_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Confusion counts and per-class precision / recall / F1 at ``score >= threshold``."""
    y = np.asarray(y, dtype="int64")
    pred = (np.asarray(scores, dtype="float64") >= threshold).astype("int64")
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    out: dict[str, float] = {"threshold": float(threshold), "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}
    for i, cls in enumerate(("no_churn", "churn")):
        out[f"precision_{cls}"] = float(precision[i])
        out[f"recall_{cls}"] = float(recall[i])
        out[f"f1_{cls}"] = float(f1[i])
        out[f"support_{cls}"] = int(support[i])
    out["accuracy"] = float((tp + tn) / max(len(y), 1))
    return out


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """:func:`score_metrics` and :func:`threshold_metrics` together, plus the positive rate."""
    y = np.asarray(y, dtype="int64")
    return {
        **score_metrics(y, scores),
        **threshold_metrics(y, scores, threshold),
        "rows": int(y.size),
        "positive_rate": float(y.mean()) if y.size else float("nan"),
    }
