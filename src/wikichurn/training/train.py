"""Stage ``train``: walk-forward-tuned LightGBM, out-of-fold threshold, refits, and two baselines.

The procedure (which rows serve what) is :mod:`wikichurn.training.procedure`. MLflow runs written:

- the tuned run (tag ``wikichurn.role=tuned``): config, split and fold params, split sizes and
  positive rates, the best hyper-parameters, out-of-fold metrics (``val_*``) at the tuned
  threshold, per-fold CV scores, and artifacts ``bundle/`` (the registered refit on every
  labelled row), ``holdout/`` (the same parameters fit on the development rows; scored on
  test), ``data/`` (the exact validation and test rows), ``tuning/trials.csv``; one nested run
  per Optuna trial (``wikichurn.role=trial``);
- ``baseline_seed_features``: LightGBM with default parameters on ``SEED_FEATURES`` only, with
  the same folds, rounds rule and refits;
- ``baseline_heuristic``: no learning, ``1 - min(1, count_views / avg_views_past_3d)``.

All three share the split, the folds and the tag ``wikichurn.training_id`` (the tuned run's id);
each has its own threshold tuned out of fold. Test metrics come later, from ``evaluate``.

Run as ``python -m wikichurn.training.train --trials 5`` or ``mlflow run . -e train -P trials=5``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import mlflow
import typer
from mlflow import MlflowClient

from wikichurn.core.churn import FEATURE_COLUMNS, KEY_COLUMNS, feature_columns, label_columns, seed_features
from wikichurn.training.baselines import HeuristicScorer, heuristic_features, heuristic_score
from wikichurn.training.config import TrainingSettings
from wikichurn.training.data import FeatureData, TimeSplit, load_feature_data
from wikichurn.training.metrics import metric_spec
from wikichurn.training.model import META_FORMAT_VERSION, write_model_dir
from wikichurn.training.procedure import Plan, Refits, ScoredOutOfFold, out_of_fold_threshold, refit
from wikichurn.training.tracking import (
    BUNDLE_DIR,
    DATA_DIR,
    HOLDOUT_DIR,
    ROLE_HEURISTIC,
    ROLE_SEED,
    ROLE_TUNED,
    TAG_BASELINE_RUNS,
    TAG_CV_FOLDS,
    TAG_HOLDOUT_ROWS,
    TAG_PROTOCOL,
    TAG_ROLE,
    TAG_TRAINED_ROWS,
    TAG_TRAINING_ID,
    configure_tracking,
    flat_params,
    git_commit,
)
from wikichurn.training.tuning import DEFAULT_PARAMS, CVFit, FoldSet, cross_validate, fixed_params, tune

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import Settings

log = logging.getLogger("wikichurn.training.train")  # not __main__ under python -m


@dataclass
class TrainResult:
    """What ``train`` produced."""

    run_id: str  # the tuned run (also the training id)
    experiment_id: str
    baseline_run_ids: dict[str, str]
    split: dict[str, Any]
    features: list[str]
    threshold: float
    best_params: dict[str, Any]
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> metrics
    feature_table_version: int | None = None
    trained_rows: dict[str, Any] = field(default_factory=dict)  # the registered model's rows
    holdout_rows: dict[str, Any] = field(default_factory=dict)  # the test-set model's rows


def model_features(
    columns: tuple[str, ...] | list[str] = FEATURE_COLUMNS, horizon_days: int | None = None
) -> list[str]:
    """The model's feature list, refusing any label-only or key-date column (a leak)."""
    forbidden = set(label_columns(horizon_days)) | {"event_date"}
    leaked = [c for c in columns if c in forbidden]
    if leaked:
        raise ValueError(f"label or key columns in the feature list: {leaked}")
    return list(columns)


def run_training(
    cfg: TrainingSettings,
    settings: Settings,
    *,
    spark: SparkSession | None = None,
    data: FeatureData | None = None,
    run_id: str | None = None,
) -> TrainResult:
    """Walk-forward tuning, out-of-fold thresholds, holdout and full refits; log all three roles.

    Args:
        cfg: training settings (tracking, split, CV, tuning, threshold).
        settings: the lake location, engine and churn definition (its horizon bounds the gap).
        spark: a Spark session to read the feature table with (built here when None).
        data: already-loaded feature rows (skips Spark entirely; tests and notebooks).
        run_id: resume this run as the tuned run (the run ``mlflow run`` created).

    Returns:
        Run ids, the split, the threshold and out-of-fold metrics of every role.
    """
    experiment_id = configure_tracking(cfg, run_id)
    if data is None:
        data = load_feature_data(settings, cfg.feature_table, spark)
    horizon = settings.churn.horizon_days
    plan = Plan.build(data.frame, cfg, horizon)
    features = model_features(feature_columns(settings.churn), horizon)
    lineage = {
        "feature_table": data.table,
        "feature_table_location": data.location,
        "feature_table_version": data.version,
        "git_commit": git_commit(),
    }
    context = _Context(cfg, settings, plan, lineage)
    spec = metric_spec(cfg.tuning.metric)

    with tempfile.TemporaryDirectory(prefix="wikichurn-train-") as tmp:
        with mlflow.start_run(
            run_id=run_id,
            experiment_id=None if run_id else experiment_id,
            run_name=ROLE_TUNED,
            tags={TAG_ROLE: ROLE_TUNED},
        ) as run:
            training_id = run.info.run_id
            folds = plan.fold_set(features)
            tuning = tune(folds, cfg, training_id=training_id)
            fit = tuning.best
            oof = out_of_fold_threshold(folds.y, fit.oof_scores, cfg)
            refits = refit(plan, fit, features, cfg)
            context.log_common(training_id, refits)
            tuned_params = {k: v for k, v in fit.params.items() if k not in ("metric", "verbosity", "scale_pos_weight")}
            mlflow.log_params({f"lgbm.{k}": v for k, v in tuned_params.items()})
            mlflow.log_params({"best_trial": tuning.best_trial, "best_iteration": refits.final_rounds})
            mlflow.log_metrics({f"val_{k}": v for k, v in oof.metrics.items()})
            mlflow.log_metrics({f"cv_{spec.name}_fold{k}": v for k, v in enumerate(fit.values)})
            mlflow.log_metric(f"best_val_{spec.name}", tuning.best_value)
            tuning_meta = {
                "metric": spec.name,
                "trials": cfg.tuning.trials,
                "states": tuning.states,
                "best_trial": tuning.best_trial,
                "best_value": tuning.best_value,
            }
            context.log_bundles(Path(tmp) / ROLE_TUNED, features, oof, fit, refits, training_id, tuning=tuning_meta)
            mlflow.log_artifacts(str(_write_split_data(plan.split, Path(tmp) / "data")), DATA_DIR)
            trials_csv = Path(tmp) / "trials.csv"
            tuning.trials.to_csv(trials_csv, index=False)
            mlflow.log_artifact(str(trials_csv), "tuning")
            mlflow.set_tag("wikichurn.trial_states", json.dumps(tuning.states))

        baselines = {
            ROLE_SEED: context.seed_baseline(experiment_id, training_id, Path(tmp) / ROLE_SEED),
            ROLE_HEURISTIC: context.heuristic_baseline(experiment_id, training_id, folds, Path(tmp) / ROLE_HEURISTIC),
        }
    MlflowClient().set_tag(training_id, TAG_BASELINE_RUNS, json.dumps({r: b[0] for r, b in baselines.items()}))
    for role, (_, metrics) in baselines.items():
        log.info("%s: out-of-fold %s = %.4f", role, spec.name, metrics[spec.name])
    log.info(
        "tuned: out-of-fold %s = %.4f, threshold %.4f, %d rounds on %s rows (run %s)",
        spec.name,
        oof.metrics[spec.name],
        oof.threshold,
        refits.final_rounds,
        f"{refits.final_rows.rows:,}",
        training_id,
    )
    return TrainResult(
        run_id=training_id,
        experiment_id=experiment_id,
        baseline_run_ids={role: b[0] for role, b in baselines.items()},
        split=plan.split.to_dict(),
        features=features,
        threshold=oof.threshold,
        best_params=tuned_params,
        validation={ROLE_TUNED: oof.metrics, **{role: b[1] for role, b in baselines.items()}},
        feature_table_version=data.version,
        trained_rows=refits.final_rows.to_dict(),
        holdout_rows=refits.holdout_rows.to_dict(),
    )


class _Context:
    """What every run of one training shares: settings, rows plan, lineage."""

    def __init__(self, cfg: TrainingSettings, settings: Settings, plan: Plan, lineage: dict[str, Any]) -> None:
        self.cfg = cfg
        self.settings = settings
        self.plan = plan
        self.split = plan.split
        self.lineage = lineage

    def log_common(self, training_id: str, refits: Refits | None = None) -> None:
        """Tags, config params, split and fold params and split metrics of the active run."""
        tags = {TAG_TRAINING_ID: training_id}
        tags.update({f"wikichurn.{k}": str(v) for k, v in self.lineage.items() if v is not None})
        folds = self.plan.folds
        tags[TAG_CV_FOLDS] = json.dumps([f.to_dict() for f in folds])
        if refits is not None:
            tags[TAG_TRAINED_ROWS] = refits.final_rows.label()
            tags[TAG_HOLDOUT_ROWS] = refits.holdout_rows.label()
            tags[TAG_PROTOCOL] = refits.protocol(self.plan, self.cfg)[:5000]
        mlflow.set_tags(tags)
        params = flat_params("cfg", self.cfg.model_dump(mode="json", exclude={"tracking_uri", "artifact_root"}))
        params.update(flat_params("label", self.settings.churn.model_dump(mode="json")))
        params.update({k: str(v) for k, v in self.split.flat().items() if k.endswith((".start", ".end", "gap_days"))})
        params["cv.folds_used"] = str(len(folds))
        mlflow.log_params(params)
        metrics: dict[str, float] = {}
        for name, info in self.split.info().items():
            metrics[f"split_{name}_rows"] = info.rows
            metrics[f"split_{name}_positives"] = info.positives
            metrics[f"split_{name}_positive_rate"] = info.positive_rate
        if refits is not None:
            metrics["trained_rows"] = refits.final_rows.rows
            metrics["holdout_trained_rows"] = refits.holdout_rows.rows
        mlflow.log_metrics(metrics)

    def meta(
        self,
        kind: str,
        features: list[str],
        categories: dict[str, list[str]],
        threshold: float,
        validation: dict[str, float],
        run_id: str,
        **extra: Any,
    ) -> dict[str, Any]:
        """The ``model_meta.json`` content known at training time (test metrics come later)."""
        return {
            "format_version": META_FORMAT_VERSION,
            "kind": kind,
            "features": features,
            "categorical_features": [c for c in features if c in categories],
            "categories": {k: v for k, v in categories.items() if k in features},
            "threshold": threshold,
            "threshold_objective": self.cfg.threshold.objective,
            **extra,
            "label": self.settings.churn.model_dump(mode="json"),
            "key_columns": list(KEY_COLUMNS),
            "split": self.split.to_dict(),
            "cv": self.plan.describe(),
            "metrics": {"validation": validation},
            "lineage": self.lineage,
            "run_id": run_id,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def log_bundles(
        self,
        folder: Path,
        features: list[str],
        oof: ScoredOutOfFold,
        fit: CVFit,
        refits: Refits,
        run_id: str,
        **extra: Any,
    ) -> None:
        """``bundle/`` (the registered refit on all rows) and ``holdout/`` (the test-set model)."""
        params = {k: v for k, v in fit.params.items() if k not in ("metric", "verbosity", "scale_pos_weight")}
        common = {"params": params, "cv_result": fit.summary(), "protocol": refits.protocol(self.plan, self.cfg)}
        final = self.meta(
            "lightgbm",
            features,
            refits.final_categories,
            oof.threshold,
            oof.metrics,
            run_id,
            best_iteration=refits.final_rounds,
            trained_rows=refits.final_rows.to_dict(),
            holdout={"rows": refits.holdout_rows.to_dict(), "rounds": refits.holdout_rounds},
            **common,
            **extra,
        )
        holdout = self.meta(
            "lightgbm",
            features,
            refits.holdout_categories,
            oof.threshold,
            oof.metrics,
            run_id,
            best_iteration=refits.holdout_rounds,
            trained_rows=refits.holdout_rows.to_dict(),
            purpose="holdout: scored on the test set; not registered",
            **common,
            **extra,
        )
        mlflow.log_artifacts(str(write_model_dir(folder / "final", refits.final, final)), BUNDLE_DIR)
        mlflow.log_artifacts(str(write_model_dir(folder / "holdout", refits.holdout, holdout)), HOLDOUT_DIR)

    def seed_baseline(self, experiment_id: str, training_id: str, folder: Path) -> tuple[str, dict[str, float]]:
        """Baseline (a): LightGBM, default parameters, ``SEED_FEATURES`` only, same folds and refits."""
        features = model_features(seed_features(self.settings.churn), self.settings.churn.horizon_days)
        with mlflow.start_run(experiment_id=experiment_id, run_name=ROLE_SEED, tags={TAG_ROLE: ROLE_SEED}) as run:
            spec = metric_spec(self.cfg.tuning.metric)
            folds = self.plan.fold_set(features)
            fit = cross_validate(folds, {**fixed_params(self.cfg, spec, 1.0), **DEFAULT_PARAMS}, self.cfg, spec)
            oof = out_of_fold_threshold(folds.y, fit.oof_scores, self.cfg)
            refits = refit(self.plan, fit, features, self.cfg)
            self.log_common(training_id, refits)
            params = {k: v for k, v in fit.params.items() if k not in ("metric", "verbosity", "scale_pos_weight")}
            mlflow.log_params({f"lgbm.{k}": v for k, v in params.items()} | {"best_iteration": refits.final_rounds})
            mlflow.log_metrics({f"val_{k}": v for k, v in oof.metrics.items()})
            self.log_bundles(folder, features, oof, fit, refits, run.info.run_id)
            return run.info.run_id, oof.metrics

    def heuristic_baseline(
        self, experiment_id: str, training_id: str, folds: FoldSet, folder: Path
    ) -> tuple[str, dict[str, float]]:
        """Baseline (b): no learning, today's views against the past-window mean (threshold out of fold)."""
        features = heuristic_features(self.settings.churn.window_days)
        formula = f"1 - min(1, {features[0]} / {features[1]})"
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=ROLE_HEURISTIC, tags={TAG_ROLE: ROLE_HEURISTIC}
        ) as run:
            self.log_common(training_id)
            oof = out_of_fold_threshold(folds.y, heuristic_score(folds.out_of_fold, features), self.cfg)
            mlflow.log_param("formula", formula)
            mlflow.log_metrics({f"val_{k}": v for k, v in oof.metrics.items()})
            meta = self.meta("heuristic", list(features), {}, oof.threshold, oof.metrics, run.info.run_id)
            meta["formula"] = f"{formula}; 0 when the mean is missing or 0"
            mlflow.log_artifacts(str(HeuristicScorer(meta).save(folder)), BUNDLE_DIR)
            return run.info.run_id, oof.metrics


def _write_split_data(split: TimeSplit, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    split.validation.to_parquet(folder / "validation.parquet", index=False)
    split.test.to_parquet(folder / "test.parquet", index=False)
    return folder


# -- command line ----------------------------------------------------------------------------

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)

LakeOpt = Annotated[str, typer.Option(help="lake root holding gold_churn_features (default: settings)")]
TrialsOpt = Annotated[int, typer.Option(help="Optuna trials (0 = conf/training.yaml)")]
MetricOpt = Annotated[str, typer.Option(help="validation metric to tune: pr_auc, roc_auc, log_loss, brier")]
ExperimentOpt = Annotated[str, typer.Option(help="MLflow experiment name (default: settings)")]


def cli_settings(
    lake_uri: str = "", trials: int = 0, metric: str = "", experiment: str = "", model_name: str = ""
) -> tuple[TrainingSettings, Settings]:
    """Settings from files and environment, with non-empty command-line values on top."""
    from wikichurn.core.settings import load_settings
    from wikichurn.training.config import load_training_settings

    overrides: dict[str, Any] = {}
    tuning: dict[str, Any] = {}
    if trials:
        tuning["trials"] = trials
    if metric:
        tuning["metric"] = metric
    if tuning:
        overrides["tuning"] = tuning
    if experiment:
        overrides["experiment_name"] = experiment
    if model_name:
        overrides["model_name"] = model_name
    settings = load_settings(**({"lake_uri": lake_uri} if lake_uri else {}))
    return load_training_settings(**overrides), settings


def parse_bool(value: str) -> bool:
    """``true/1/yes/on`` -> True, ``false/0/no/off/""`` -> False (MLproject parameters are strings)."""
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise typer.BadParameter(f"expected true or false, got {value!r}")


def setup_cli_logging() -> None:
    """INFO logs on stderr for the stage commands, quiet libraries, no run URLs on stdout."""
    # No-op when logging is already configured (e.g. called in-process by tests).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # stdout carries only the command's JSON result.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for noisy in ("py4j", "pyspark", "httpx", "urllib3", "botocore", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def main(
    lake_uri: LakeOpt = "",
    trials: TrialsOpt = 0,
    metric: MetricOpt = "",
    experiment: ExperimentOpt = "",
) -> None:
    """Train the tuned model and both baselines on the feature table; print the run ids as JSON."""
    from wikichurn.training.tracking import pop_project_run_id

    setup_cli_logging()
    run_id = pop_project_run_id()
    cfg, settings = cli_settings(lake_uri, trials, metric, experiment)
    result = run_training(cfg, settings, run_id=run_id)
    typer.echo(json.dumps({"run_id": result.run_id, "baseline_run_ids": result.baseline_run_ids}))


if __name__ == "__main__":
    app()
