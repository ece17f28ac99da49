"""LightGBM fitting and the Optuna study, each trial logged as a nested MLflow run.

Native categorical handling: categorical columns are pandas ``category`` with the levels of
:func:`wikichurn.training.model.category_mappings` (train rows only), so LightGBM's codes are the model's
own. ``scale_pos_weight`` is negatives / positives of the train set. Each fit early-stops on
validation; pruning uses ``optuna_integration.LightGBMPruningCallback``.
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
from optuna_integration import LightGBMPruningCallback

from wikichurn.training.config import TrainingSettings
from wikichurn.training.data import LABEL
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


@dataclass
class TuningResult:
    """The study's outcome."""

    best: Fit
    best_value: float
    best_trial: int
    trials: pd.DataFrame  # one row per trial (Optuna's trials_dataframe)
    states: dict[str, int] = field(default_factory=dict)


def tune(data: ModelData, cfg: TrainingSettings, *, training_id: str | None = None) -> TuningResult:
    """Run the Optuna study (TPE, seeded) maximising / minimising the validation metric.

    Must be called inside the tuned MLflow run: every trial is a nested run with its params,
    score and state. The best trial's booster is kept (no refit).
    """
    spec = metric_spec(cfg.tuning.metric)
    base = fixed_params(cfg, spec, scale_pos_weight(data.y_train))
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=min(cfg.tuning.startup_trials, 10))
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=cfg.tuning.startup_trials, n_warmup_steps=cfg.tuning.pruning_warmup_steps
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
        try:
            mlflow.log_params({f"lgbm.{k}": v for k, v in params.items()} | {"trial": trial.number})
            callbacks = [LightGBMPruningCallback(trial, spec.lightgbm_metric, valid_name=VALID_NAME)]
            fit = fit_booster(data, params, cfg, callbacks if cfg.tuning.pruning else [])
            value = spec.compute(data.y_validation, fit.validation_scores)
            trial.set_user_attr("best_iteration", fit.best_iteration)
            mlflow.log_metrics(
                {f"val_{spec.name}": value, "best_iteration": fit.best_iteration, "seconds": fit.seconds}
            )
            mlflow.set_tag(TAG_TRIAL_STATE, "complete")
            if "value" not in kept or spec.better(value, kept["value"]):
                kept.update(value=value, fit=fit, trial=trial.number)
            mlflow.end_run("FINISHED")
            return value
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
        log.warning("no trial completed; fitting the default parameters")
        fit = fit_booster(data, {**base, **DEFAULT_PARAMS}, cfg)
        kept.update(value=spec.compute(data.y_validation, fit.validation_scores), fit=fit, trial=-1)
    log.info("tuning: %s, best validation %s = %.4f (trial %s)", states, spec.name, kept["value"], kept["trial"])
    return TuningResult(
        best=kept["fit"],
        best_value=float(kept["value"]),
        best_trial=int(kept["trial"]),
        trials=study.trials_dataframe(),
        states=states,
    )
