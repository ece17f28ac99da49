"""LightGBM fitting, walk-forward cross-validation and the Optuna study (one nested MLflow run
per trial).

Native categorical handling: categorical columns are pandas ``category`` with the levels of
:func:`wikichurn.training.model.category_mappings`, so LightGBM's codes are the model's own.
``scale_pos_weight`` is negatives / positives of the rows fit on. A trial's score is the mean
validation metric over the walk-forward folds (:mod:`wikichurn.training.folds`); each fold
early-stops on its own block, and the median pruner may stop a trial after each fold.
Refits (:func:`fit_rounds`) use a fixed number of rounds taken from the folds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import optuna
import pandas as pd

from wikichurn.training.config import TrainingSettings
from wikichurn.training.data import LABEL
from wikichurn.training.folds import Fold, scaled_rounds
from wikichurn.training.metrics import MetricSpec, metric_spec
from wikichurn.training.model import as_categorical
from wikichurn.training.tracking import TAG_ROLE, TAG_TRAINING_ID, TAG_TRIAL_STATE

log = logging.getLogger(__name__)

VALID_NAME = "validation"

# Baseline (a) and the fallback when no trial finishes: LightGBM's usual starting point.
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    "lambda_l1": 0.0,
    "lambda_l2": 0.0,
}


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The search space (log scales where the effect is multiplicative)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-8, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-8, 10.0, log=True),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 100.0, log=True),
        "min_data_per_group": trial.suggest_int("min_data_per_group", 5, 200, log=True),
    }


def scale_pos_weight(y: np.ndarray) -> float:
    """Negatives / positives (1.0 when there are no positives)."""
    positives = int(np.sum(y))
    return float((len(y) - positives) / positives) if positives else 1.0


def fixed_params(cfg: TrainingSettings, spec: MetricSpec, pos_weight: float) -> dict[str, Any]:
    """Parameters every fit shares (objective, metric, seed, class weight, determinism)."""
    params: dict[str, Any] = {
        "objective": "binary",
        "metric": spec.lightgbm_metric,
        "scale_pos_weight": pos_weight,
        "seed": cfg.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }
    if cfg.num_threads:
        params["num_threads"] = cfg.num_threads
    return params


@dataclass
class Fit:
    """A trained booster and its validation predictions."""

    booster: lgb.Booster
    params: dict[str, Any]
    best_iteration: int
    validation_scores: np.ndarray
    seconds: float


class ModelData:
    """Train and validation matrices for one feature list, built once and reused by every fit."""

    def __init__(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        features: Sequence[str],
        categories: Mapping[str, Sequence[str]],
    ) -> None:
        self.features = list(features)
        self.categories = {k: list(v) for k, v in categories.items() if k in self.features}
        self.x_train = as_categorical(train.loc[:, self.features], self.categories)
        self.x_validation = as_categorical(validation.loc[:, self.features], self.categories)
        self.y_train = train[LABEL].to_numpy(dtype="int64")
        self.y_validation = validation[LABEL].to_numpy(dtype="int64")

    def datasets(self) -> tuple[lgb.Dataset, lgb.Dataset]:
        # Fresh Dataset objects per fit: LightGBM binds dataset parameters on first use.
        dataset_params = {"feature_pre_filter": False, "verbosity": -1}
        categorical = [c for c in self.features if c in self.categories]
        train = lgb.Dataset(
            self.x_train,
            self.y_train,
            categorical_feature=categorical,
            params=dataset_params,
            free_raw_data=False,
        )
        validation = lgb.Dataset(
            self.x_validation, self.y_validation, reference=train, params=dataset_params, free_raw_data=False
        )
        return train, validation


def fit_booster(
    data: ModelData,
    params: Mapping[str, Any],
    cfg: TrainingSettings,
    callbacks: Sequence[Any] = (),
) -> Fit:
    """Train on ``data`` with early stopping on validation."""
    started = time.monotonic()
    train, validation = data.datasets()
    booster = lgb.train(
        dict(params),
        train,
        num_boost_round=cfg.tuning.num_boost_round,
        valid_sets=[validation],
        valid_names=[VALID_NAME],
        callbacks=[
            lgb.early_stopping(cfg.tuning.early_stopping_rounds, first_metric_only=True, verbose=False),
            *callbacks,
        ],
    )
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    # Keep exactly the trees used: the saved model and every prediction see the same booster.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    scores = np.asarray(booster.predict(data.x_validation), dtype="float64")
    return Fit(booster, dict(params), best, scores, time.monotonic() - started)


def fit_rounds(
    frame: pd.DataFrame,
    features: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    params: Mapping[str, Any],
    rounds: int,
) -> lgb.Booster:
    """Train on every row of ``frame`` for exactly ``rounds`` rounds (a refit: no early stopping).

    ``scale_pos_weight`` is recomputed on ``frame``, so a refit weighs its own rows as the folds did theirs.
    """
    cats = {k: list(v) for k, v in categories.items() if k in features}
    x = as_categorical(frame.loc[:, list(features)], cats)
    y = frame[LABEL].to_numpy(dtype="int64")
    dataset = lgb.Dataset(
        x,
        y,
        categorical_feature=[c for c in features if c in cats],
        params={"feature_pre_filter": False, "verbosity": -1},
    )
    fit_params = {**params, "scale_pos_weight": scale_pos_weight(y)}
    return lgb.train(fit_params, dataset, num_boost_round=rounds)


class FoldSet:
    """The walk-forward folds' matrices for one feature list, built once and reused by every trial."""

    def __init__(
        self,
        frame: pd.DataFrame,
        folds: Sequence[Fold],
        features: Sequence[str],
        categories: Mapping[str, Sequence[str]],
    ) -> None:
        self.features = list(features)
        dates = pd.to_datetime(frame["event_date"])
        self.folds = list(folds)
        self.data = [
            ModelData(frame.loc[f.train_mask(dates)], frame.loc[f.validation_mask(dates)], features, categories)
            for f in self.folds
        ]
        parts = [frame.loc[f.validation_mask(dates)].assign(fold=f.number) for f in self.folds]
        self.out_of_fold = pd.concat(parts, ignore_index=True)  # validation rows, fold order
        self.y = self.out_of_fold[LABEL].to_numpy(dtype="int64")

    def train_rows(self) -> list[int]:
        """Rows each fold trains on."""
        return [len(d.y_train) for d in self.data]


@dataclass
class CVFit:
    """One parameter set's walk-forward result."""

    params: dict[str, Any]
    values: list[float]  # validation metric per fold
    best_iterations: list[int]
    train_rows: list[int]
    oof_scores: np.ndarray  # aligned with FoldSet.out_of_fold
    seconds: float

    @property
    def value(self) -> float:
        """Mean metric over folds (the tuning objective)."""
        return float(np.mean(self.values))

    def rounds_for(self, rows: int, cfg: TrainingSettings) -> int:
        """Boosting rounds of a refit on ``rows`` rows."""
        return scaled_rounds(
            self.best_iterations, self.train_rows, rows, cfg.cv.rounds_exponent, cfg.tuning.num_boost_round
        )

    def summary(self) -> dict[str, Any]:
        """JSON-safe per-fold results."""
        return {
            "values": [float(v) for v in self.values],
            "mean": self.value,
            "best_iterations": self.best_iterations,
            "train_rows": self.train_rows,
        }


def cross_validate(
    folds: FoldSet,
    params: Mapping[str, Any],
    cfg: TrainingSettings,
    spec: MetricSpec,
    *,
    after_fold: Any = None,
) -> CVFit:
    """Fit ``params`` on every fold (early stopping on its block); ``after_fold(k, mean so far)``
    is called after each fold (pruning hook; it may raise ``optuna.TrialPruned``)."""
    started = time.monotonic()
    values: list[float] = []
    iterations: list[int] = []
    scores: list[np.ndarray] = []
    for k, data in enumerate(folds.data):
        fold_params = {**params, "scale_pos_weight": scale_pos_weight(data.y_train)}
        fit = fit_booster(data, fold_params, cfg)
        values.append(spec.compute(data.y_validation, fit.validation_scores))
        iterations.append(fit.best_iteration)
        scores.append(fit.validation_scores)
        if after_fold is not None:
            after_fold(k, float(np.mean(values)))
    return CVFit(
        params=dict(params),
        values=values,
        best_iterations=iterations,
        train_rows=folds.train_rows(),
        oof_scores=np.concatenate(scores),
        seconds=time.monotonic() - started,
    )


@dataclass
class TuningResult:
    """The study's outcome."""

    best: CVFit
    best_value: float
    best_trial: int
    trials: pd.DataFrame  # one row per trial (Optuna's trials_dataframe)
    states: dict[str, int] = field(default_factory=dict)


def tune(folds: FoldSet, cfg: TrainingSettings, *, training_id: str | None = None) -> TuningResult:
    """Run the Optuna study (TPE, seeded) on the mean walk-forward metric.

    Must be called inside the tuned MLflow run: every trial is a nested run with its params,
    per-fold scores and best iterations, and state.
    """
    spec = metric_spec(cfg.tuning.metric)
    base = fixed_params(cfg, spec, 1.0)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=min(cfg.tuning.startup_trials, 10))
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=cfg.tuning.startup_trials, n_warmup_steps=cfg.cv.prune_after_folds - 1
        )
        if cfg.tuning.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        direction="maximize" if spec.greater_is_better else "minimize",
        sampler=sampler,
        pruner=pruner,
        study_name="wikichurn-lightgbm",
    )
    kept: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        params = {**base, **suggest_params(trial)}
        tags = {TAG_ROLE: "trial", TAG_TRIAL_STATE: "running"}
        if training_id:
            tags[TAG_TRAINING_ID] = training_id
        mlflow.start_run(run_name=f"trial-{trial.number:03d}", nested=True, tags=tags)

        def after_fold(k: int, mean: float) -> None:
            mlflow.log_metric(f"cv_{spec.name}_mean", mean, step=k)
            trial.report(mean, k)
            if cfg.tuning.pruning and k + 1 < len(folds.folds) and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {k}")

        try:
            logged = {k: v for k, v in params.items() if k != "scale_pos_weight"}
            mlflow.log_params({f"lgbm.{k}": v for k, v in logged.items()} | {"trial": trial.number})
            fit = cross_validate(folds, params, cfg, spec, after_fold=after_fold)
            trial.set_user_attr("best_iterations", fit.best_iterations)
            metrics = {f"val_{spec.name}": fit.value, "best_iteration": float(np.median(fit.best_iterations))}
            metrics |= {f"val_{spec.name}_fold{k}": v for k, v in enumerate(fit.values)}
            metrics |= {f"best_iteration_fold{k}": v for k, v in enumerate(fit.best_iterations)}
            mlflow.log_metrics(metrics | {"seconds": fit.seconds})
            log.info("trial %d: mean CV %s = %.4f (%.1f s)", trial.number, spec.name, fit.value, fit.seconds)
            mlflow.set_tag(TAG_TRIAL_STATE, "complete")
            if "value" not in kept or spec.better(fit.value, kept["value"]):
                kept.update(value=fit.value, fit=fit, trial=trial.number)
            mlflow.end_run("FINISHED")
            return fit.value
        except optuna.TrialPruned:
            mlflow.set_tag(TAG_TRIAL_STATE, "pruned")
            mlflow.end_run("KILLED")
            raise
        except Exception:
            mlflow.set_tag(TAG_TRIAL_STATE, "failed")
            mlflow.end_run("FAILED")
            raise

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=cfg.tuning.trials, timeout=cfg.tuning.timeout_s, catch=())
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    if "fit" not in kept:
        # Every trial was pruned: fall back to the default parameters rather than fail.
        log.warning("no trial completed; cross-validating the default parameters")
        fit = cross_validate(folds, {**base, **DEFAULT_PARAMS}, cfg, spec)
        kept.update(value=fit.value, fit=fit, trial=-1)
    log.info("tuning: %s, best mean CV %s = %.4f (trial %s)", states, spec.name, kept["value"], kept["trial"])
    return TuningResult(
        best=kept["fit"],
        best_value=float(kept["value"]),
        best_trial=int(kept["trial"]),
        trials=study.trials_dataframe(),
        states=states,
    )
