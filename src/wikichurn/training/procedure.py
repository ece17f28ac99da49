"""The training procedure on pandas rows, without MLflow: which rows are used for what.

- **development rows**: every labelled row up to the end of the split's validation set (the
  test set and the gap before it excluded); the walk-forward folds tile their later dates.
- **holdout model**: fit on the development rows with the rounds the folds chose; it alone is
  scored on the test set, so the reported test metrics come from a model that never saw them.
- **registered model**: refit on every labelled row up to the latest label, with the same
  parameters, threshold and rounds scaled to its row count.

The decision threshold comes from the out-of-fold predictions; nothing looks at the test rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from wikichurn.core.churn import CATEGORICAL_FEATURES
from wikichurn.training.config import TrainingSettings
from wikichurn.training.data import LABEL, TimeSplit, split_by_time
from wikichurn.training.folds import Fold, RowRange, walk_forward_folds
from wikichurn.training.metrics import binary_metrics, tune_threshold
from wikichurn.training.model import category_mappings
from wikichurn.training.tuning import CVFit, FoldSet, fit_rounds

log = logging.getLogger(__name__)

PROTOCOL = (
    "hyper-parameters, boosting rounds and threshold from walk-forward CV over the development rows "
    "({folds} folds, {gap}-day gaps; threshold on out-of-fold predictions); test metrics from a model "
    "fit on the development rows ({holdout}) only; the registered model refit on all labelled rows ({final})"
)


@dataclass
class Plan:
    """Which rows play which part in one training."""

    frame: pd.DataFrame  # every labelled row, sorted by date
    split: TimeSplit
    development: pd.DataFrame
    folds: list[Fold]

    @classmethod
    def build(cls, frame: pd.DataFrame, cfg: TrainingSettings, horizon_days: int) -> Plan:
        """Split by time, then lay the walk-forward folds over the development rows."""
        split = split_by_time(frame, cfg.split, horizon_days)
        development_end = split.validation["event_date"].max()
        development = frame.loc[frame["event_date"] <= development_end].reset_index(drop=True)
        folds = walk_forward_folds(development["event_date"], cfg.cv, cfg.split.gap_days)
        # A fold whose train or validation rows hold one class (e.g. early months without any
        # collapse) has no ranking metric and no meaningful early stopping: every role skips it.
        dates = development["event_date"]
        scorable = [
            f
            for f in folds
            if development.loc[f.train_mask(dates), LABEL].nunique() == 2
            and development.loc[f.validation_mask(dates), LABEL].nunique() == 2
        ]
        if not scorable:
            raise ValueError("no walk-forward fold has both classes in its train and validation rows")
        if len(scorable) < len(folds):
            log.warning("skipping %d of %d folds holding one class only", len(folds) - len(scorable), len(folds))
        folds = scorable
        return cls(frame=frame, split=split, development=development, folds=folds)

    def categories(self, rows: pd.DataFrame, features: list[str]) -> dict[str, list[str]]:
        """Category levels of ``rows`` for the categorical columns among ``features``."""
        return category_mappings(rows, [c for c in CATEGORICAL_FEATURES if c in features])

    def fold_set(self, features: list[str]) -> FoldSet:
        """The folds' matrices for ``features`` (levels of the development rows)."""
        return FoldSet(self.development, self.folds, features, self.categories(self.development, features))

    def describe(self) -> dict[str, Any]:
        """JSON-safe: folds, development and full row ranges."""
        return {
            "folds": [f.to_dict() for f in self.folds],
            "development": RowRange.of(self.development).to_dict(),
            "all_labelled": RowRange.of(self.frame).to_dict(),
        }


@dataclass
class ScoredOutOfFold:
    """A scorer's out-of-fold result: its threshold and the metrics there."""

    threshold: float
    metrics: dict[str, float]


def out_of_fold_threshold(y: np.ndarray, scores: np.ndarray, cfg: TrainingSettings) -> ScoredOutOfFold:
    """The threshold tuned on out-of-fold scores, and the out-of-fold metrics at it."""
    t = cfg.threshold
    choice = tune_threshold(y, scores, t.objective, beta=t.beta, fn_cost=t.fn_cost)
    return ScoredOutOfFold(choice.threshold, binary_metrics(y, scores, choice.threshold))


@dataclass
class Refits:
    """The holdout and registered boosters of one parameter set, and what each saw."""

    holdout: lgb.Booster
    holdout_rounds: int
    holdout_rows: RowRange
    holdout_categories: dict[str, list[str]]
    final: lgb.Booster
    final_rounds: int
    final_rows: RowRange
    final_categories: dict[str, list[str]]

    def protocol(self, plan: Plan, cfg: TrainingSettings) -> str:
        """One sentence saying how the metrics were obtained."""
        return PROTOCOL.format(
            folds=len(plan.folds),
            gap=cfg.split.gap_days,
            holdout=self.holdout_rows.label(),
            final=self.final_rows.label(),
        )


def refit(plan: Plan, fit: CVFit, features: list[str], cfg: TrainingSettings) -> Refits:
    """Fit the holdout booster on the development rows and the registered one on every row."""
    params = {k: v for k, v in fit.params.items() if k != "scale_pos_weight"}
    dev_cats = plan.categories(plan.development, features)
    all_cats = plan.categories(plan.frame, features)
    dev_rounds = fit.rounds_for(len(plan.development), cfg)
    all_rounds = fit.rounds_for(len(plan.frame), cfg)
    return Refits(
        holdout=fit_rounds(plan.development, features, dev_cats, params, dev_rounds),
        holdout_rounds=dev_rounds,
        holdout_rows=RowRange.of(plan.development, LABEL),
        holdout_categories=dev_cats,
        final=fit_rounds(plan.frame, features, all_cats, params, all_rounds),
        final_rounds=all_rounds,
        final_rows=RowRange.of(plan.frame, LABEL),
        final_categories=all_cats,
    )
