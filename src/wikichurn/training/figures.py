"""Evaluation figures (matplotlib, Agg backend): each function returns a closed-over ``Figure``.

The caller logs it (``mlflow.log_figure``) and closes it (``plt.close``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402

Curves = Mapping[str, np.ndarray]  # label -> scores, the first one is the model


def roc_figure(y: np.ndarray, scores: Curves) -> Figure:
    """ROC curves with their AUC, and the chance diagonal."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for i, (label, s) in enumerate(scores.items()):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=2.2 if i == 0 else 1.3, label=f"{label} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance (AUC 0.5)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate (recall)")
    ax.set_title("ROC curve, test set")
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def pr_figure(y: np.ndarray, scores: Curves, threshold: float | None = None) -> Figure:
    """Precision-recall curves with their PR AUC (average precision) and the positive rate."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for i, (label, s) in enumerate(scores.items()):
        precision, recall, thresholds = precision_recall_curve(y, s)
        ax.step(
            recall,
            precision,
            where="post",
            lw=2.2 if i == 0 else 1.3,
            label=f"{label} (PR AUC {average_precision_score(y, s):.3f})",
        )
        if i == 0 and threshold is not None and len(thresholds):
            k = int(np.clip(np.searchsorted(thresholds, threshold), 0, len(thresholds) - 1))
            ax.scatter([recall[k]], [precision[k]], color="black", zorder=5, label=f"threshold {threshold:.3f}")
    rate = float(np.mean(y))
    ax.axhline(rate, ls="--", color="grey", lw=1, label=f"positive rate ({rate:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision")
    ax.set_title("Precision-recall curve, test set")
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(tn: int, fp: int, fn: int, tp: int, threshold: float) -> Figure:
    """The 2x2 confusion matrix with counts and row percentages."""
    matrix = np.array([[tn, fp], [fn, tp]], dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    for i in range(2):
        for j in range(2):
            dark = matrix[i, j] > matrix.max() / 2
            ax.text(
                j,
                i,
                f"{int(matrix[i, j]):,}\n({share[i, j]:.1%})",
                ha="center",
                va="center",
                color="white" if dark else "black",
                fontsize=12,
            )
    ax.set_xticks([0, 1], labels=["no churn", "churn"])
    ax.set_yticks([0, 1], labels=["no churn", "churn"])
    ax.set(xlabel="Predicted", ylabel="Actual")
    ax.set_title(f"Confusion matrix, test set (threshold {threshold:.3f})")
    fig.tight_layout()
    return fig


def score_histogram_figure(y: np.ndarray, scores: np.ndarray, threshold: float) -> Figure:
    """Risk-score distributions of each class, with the decision threshold."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(0, 1, 41).tolist()
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, density=True, label=f"no churn (n={int((y == 0).sum()):,})")
    ax.hist(scores[y == 1], bins=bins, alpha=0.6, density=True, label=f"churn (n={int((y == 1).sum()):,})")
    ax.axvline(threshold, color="black", ls="--", lw=1.5, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="Risk score (predicted churn probability)", ylabel="Density", xlim=(0, 1))
    ax.set_title("Risk score by actual class, test set")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def calibration_figure(y: np.ndarray, scores: Curves, bins: int = 10) -> Figure:
    """Reliability diagram: mean predicted probability vs observed churn rate per bin."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for i, (label, s) in enumerate(scores.items()):
        observed, predicted = calibration_curve(y, np.clip(s, 0, 1), n_bins=bins, strategy="quantile")
        ax.plot(predicted, observed, marker="o", lw=2.2 if i == 0 else 1.3, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Mean predicted probability", ylabel="Observed churn rate")
    ax.set_title(f"Calibration, test set ({bins} quantile bins)")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def importance_figure(names: Sequence[str], values: np.ndarray, title: str, xlabel: str, top: int = 20) -> Figure:
    """Horizontal bar chart of the ``top`` largest values."""
    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(order) + 1.5))
    ax.barh([names[i] for i in order], values[order], color="#3b75af")
    ax.set(xlabel=xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def shap_beeswarm_figure(explanation: object, top: int = 20) -> Figure:
    """SHAP beeswarm of a ``shap.Explanation`` (one dot per row and feature)."""
    import shap

    with warnings.catch_warnings():
        # Categorical columns are all-NaN on purpose (drawn grey): numpy warns about their quantiles.
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        shap.plots.beeswarm(explanation, max_display=top, show=False)
    fig = plt.gcf()
    fig.set_size_inches(8, 0.32 * min(top, len(explanation.feature_names)) + 2)  # type: ignore[attr-defined]
    ax = fig.axes[0]
    ax.set_title("SHAP values per feature, test sample (log-odds of churn)")
    fig.tight_layout()
    return fig
