"""Stage ``evaluate``: test metrics of the tuned model and both baselines, figures, SHAP, model card,
and the logged pyfunc model.

Reads from the tuned run (``train``'s output): ``bundle/`` (booster + meta), ``data/test.parquet``
and the baselines' ``bundle/``. Writes:

- on every role's run: ``test_*`` metrics at that role's own validation-tuned threshold;
- on the tuned run: ``<baseline role>_test_*`` headline metrics, ``figures/*.png``,
  ``explain/*.csv``, ``model_card.md``, ``model_meta.json`` and the ``model`` (a
  :class:`wikichurn.training.model.ChurnPyfunc` whose ``model_meta.json`` includes the test metrics),
  plus the tag ``wikichurn.model_uri``.

Run as ``python -m wikichurn.training.evaluate --run-id <tuned run>`` or ``mlflow run . -e evaluate -P run_id=...``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import typer
from mlflow import MlflowClient
from mlflow.entities import Metric

from wikichurn.training import figures
from wikichurn.training.baselines import HeuristicScorer, load_any_scorer
from wikichurn.training.config import TrainingSettings
from wikichurn.training.data import LABEL
from wikichurn.training.metrics import binary_metrics
from wikichurn.training.model import (
    META_FILE,
    ChurnScorer,
    json_safe,
    log_churn_model,
    model_input_example,
    write_model_dir,
)
from wikichurn.training.tracking import (
    BASELINE_ROLES,
    BUNDLE_DIR,
    DATA_DIR,
    MODEL_NAME_IN_RUN,
    ROLE_HEURISTIC,
    ROLE_SEED,
    ROLE_TUNED,
    TAG_EVALUATED_RUN,
    TAG_MODEL_URI,
    TAG_ROLE,
    TAG_TRAINING_ID,
    baseline_runs,
    configure_tracking,
    download_run_artifacts,
    download_test_scorer_dir,
)

log = logging.getLogger("wikichurn.training.evaluate")  # not __main__ under python -m

HEADLINE_METRICS: tuple[str, ...] = (
    "pr_auc",
    "roc_auc",
    "log_loss",
    "brier",
    "f1_churn",
    "precision_churn",
    "recall_churn",
)
ROLE_LABELS = {ROLE_TUNED: "tuned LightGBM", ROLE_SEED: "seed-feature LightGBM", ROLE_HEURISTIC: "heuristic"}


@dataclass
class EvaluationResult:
    """What ``evaluate`` produced."""

    run_id: str
    model_uri: str
    test: dict[str, dict[str, float]]  # role -> test metrics
    artifacts: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_evaluation(cfg: TrainingSettings, run_id: str, *, project_run_id: str | None = None) -> EvaluationResult:
    """Evaluate the tuned run ``run_id`` and its baselines on the test rows; log everything.

    Args:
        cfg: training settings (tracking, SHAP sample size, calibration bins).
        run_id: the tuned run written by ``train``.
        project_run_id: the run ``mlflow run -e evaluate`` created, tagged to point at ``run_id``.

    Returns:
        The logged model's URI and the test metrics of every role.
    """
    started = time.monotonic()
    configure_tracking(cfg, run_id)
    client = MlflowClient()
    baselines = baseline_runs(run_id)
    with tempfile.TemporaryDirectory(prefix="wikichurn-evaluate-") as tmp_name:
        tmp = Path(tmp_name)
        # The registered model was refit on every labelled row (test rows included): the test
        # metrics come from the holdout model, fit with the same parameters before the test rows.
        registered = ChurnScorer.from_dir(download_run_artifacts(run_id, BUNDLE_DIR, tmp / ROLE_TUNED))
        scorer = ChurnScorer.from_dir(download_test_scorer_dir(run_id, tmp / f"{ROLE_TUNED}-holdout"))
        test_path = download_run_artifacts(run_id, f"{DATA_DIR}/test.parquet", tmp / "data")
        test = pd.read_parquet(test_path)
        y = test[LABEL].to_numpy(dtype="int64")

        scorers: dict[str, ChurnScorer | HeuristicScorer] = {ROLE_TUNED: scorer}
        for role in BASELINE_ROLES:
            if role in baselines:
                scorers[role] = load_any_scorer(download_test_scorer_dir(baselines[role], tmp / role))
        scores = {role: s.predict_proba(test) for role, s in scorers.items()}
        test_metrics = {role: binary_metrics(y, scores[role], scorers[role].threshold) for role in scorers}

        for role, rid in baselines.items():
            if role in test_metrics:
                _log_metrics(client, rid, {f"test_{k}": v for k, v in test_metrics[role].items()})

        meta = dict(registered.meta)
        meta["metrics"] = {**meta.get("metrics", {}), "test": test_metrics[ROLE_TUNED]}
        meta["baselines"] = {
            role: {
                "run_id": baselines[role],
                "threshold": scorers[role].threshold,
                "validation": scorers[role].meta.get("metrics", {}).get("validation", {}),
                "test": test_metrics[role],
            }
            for role in baselines
            if role in scorers
        }

        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics[ROLE_TUNED].items()})
            for role in baselines:
                if role in test_metrics:
                    mlflow.log_metrics({f"{role}_test_{k}": test_metrics[role][k] for k in HEADLINE_METRICS})
            logged = _log_figures(y, scores, scorer, registered, test, cfg, tmp)
            card = model_card(meta, test_metrics)
            mlflow.log_text(card, "model_card.md")
            mlflow.log_dict(json_safe(meta), META_FILE)
            model_dir = write_model_dir(tmp / "model", registered.booster, meta)
            info = log_churn_model(model_dir, model_input_example(test, meta), name=MODEL_NAME_IN_RUN)
            mlflow.set_tag(TAG_MODEL_URI, info.model_uri)
            logged += ["model_card.md", META_FILE, MODEL_NAME_IN_RUN]

    if project_run_id and project_run_id != run_id:
        client.set_tag(project_run_id, TAG_ROLE, "evaluate")
        client.set_tag(project_run_id, TAG_EVALUATED_RUN, run_id)
        client.set_tag(project_run_id, TAG_TRAINING_ID, run_id)
        client.set_tag(project_run_id, TAG_MODEL_URI, info.model_uri)
        _log_metrics(client, project_run_id, {f"test_{k}": test_metrics[ROLE_TUNED][k] for k in HEADLINE_METRICS})

    for role, metrics in test_metrics.items():
        log.info(
            "%s: test PR AUC %.4f, ROC AUC %.4f, F1 %.4f",
            role,
            metrics["pr_auc"],
            metrics["roc_auc"],
            metrics["f1_churn"],
        )
    return EvaluationResult(
        run_id=run_id,
        model_uri=info.model_uri,
        test=test_metrics,
        artifacts=logged,
        seconds=time.monotonic() - started,
    )


def _log_metrics(client: MlflowClient, run_id: str, values: dict[str, float]) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])


def _log_figure(fig: plt.Figure, path: str) -> str:
    mlflow.log_figure(fig, path)
    plt.close(fig)
    return path


def _log_figures(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    scorer: ChurnScorer,
    registered: ChurnScorer,
    test: pd.DataFrame,
    cfg: TrainingSettings,
    tmp: Path,
) -> list[str]:
    """ROC, PR, confusion matrix, score histogram, calibration (the holdout model on test), and the
    registered model's SHAP and gain importance."""
    labelled = {ROLE_LABELS.get(role, role): s for role, s in scores.items()}
    model_scores = scores[ROLE_TUNED]
    m = binary_metrics(y, model_scores, scorer.threshold)
    paths = [
        _log_figure(figures.roc_figure(y, labelled), "figures/roc_curve.png"),
        _log_figure(figures.pr_figure(y, labelled, scorer.threshold), "figures/pr_curve.png"),
        _log_figure(
            figures.confusion_figure(int(m["tn"]), int(m["fp"]), int(m["fn"]), int(m["tp"]), scorer.threshold),
            "figures/confusion_matrix.png",
        ),
        _log_figure(figures.score_histogram_figure(y, model_scores, scorer.threshold), "figures/score_histogram.png"),
        _log_figure(
            figures.calibration_figure(
                y,
                {k: v for k, v in labelled.items() if k != ROLE_LABELS[ROLE_HEURISTIC]},
                cfg.evaluation.calibration_bins,
            ),
            "figures/calibration.png",
        ),
    ]

    scorer = registered  # explanations describe the model that is served
    gain = scorer.booster.feature_importance(importance_type="gain")
    paths.append(
        _log_figure(
            figures.importance_figure(scorer.features, gain, "LightGBM gain importance", "Total gain of splits"),
            "figures/gain_importance.png",
        )
    )
    explanation = shap_explanation(scorer, test, cfg.evaluation.shap_sample_rows, cfg.seed)
    mean_abs = np.abs(explanation.values).mean(axis=0)
    paths.append(
        _log_figure(
            figures.importance_figure(
                scorer.features,
                mean_abs,
                f"SHAP global importance ({len(explanation.values):,} test rows)",
                "mean |SHAP value| (log-odds of churn)",
            ),
            "figures/shap_importance.png",
        )
    )
    paths.append(_log_figure(figures.shap_beeswarm_figure(explanation), "figures/shap_beeswarm.png"))

    table = pd.DataFrame({"feature": scorer.features, "gain": gain, "mean_abs_shap": mean_abs})
    table = table.sort_values("mean_abs_shap", ascending=False)
    csv = tmp / "feature_importance.csv"
    table.to_csv(csv, index=False)
    mlflow.log_artifact(str(csv), "explain")
    paths.append("explain/feature_importance.csv")
    return paths


def shap_explanation(scorer: ChurnScorer, frame: pd.DataFrame, rows: int, seed: int) -> Any:
    """SHAP values (``shap.TreeExplainer``, log-odds) of a random sample of ``frame``.

    Categorical columns are shown without a colour (their codes carry no order).
    """
    with warnings.catch_warnings():
        # shap 0.51 still calls matplotlib's deprecated Colormap.set_bad & co at import.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    sample = frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
    matrix = scorer.encode(sample)
    explanation = shap.TreeExplainer(scorer.booster)(matrix)
    explanation.feature_names = list(scorer.features)
    display = matrix.copy()
    for j, name in enumerate(scorer.features):
        if name in scorer.categories:
            display[:, j] = np.nan
    explanation.data = display
    return explanation


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def model_card(meta: dict[str, Any], test: dict[str, dict[str, float]]) -> str:
    """A short markdown model card: data window, features, metrics vs baselines, known limits."""
    label = meta.get("label", {})
    split = meta.get("split", {})
    lineage = meta.get("lineage", {})
    features = meta["features"]
    cats = meta.get("categories", {})
    roles = [r for r in (ROLE_TUNED, ROLE_SEED, ROLE_HEURISTIC) if r in test]
    lines = [
        "# wikichurn traffic-collapse model",
        "",
        "Predicts, for one Wikimedia domain (`domain_code`) on day t, whether its daily views fall to at most "
        f"{label.get('factor', 0.3)} x their mean of the {label.get('window_days', 3)} previous days at some point "
        f"within the next {label.get('horizon_days', 7)} days (`churn` = 1). Output: `risk_score` in [0, 1] and "
        f"`churn` = `risk_score >= {meta['threshold']:.4f}`.",
        "",
        f"- training run: `{meta.get('run_id')}`, trained at {meta.get('trained_at')}",
        f"- feature table: `{lineage.get('feature_table')}` at `{lineage.get('feature_table_location')}`, "
        f"Delta version {lineage.get('feature_table_version', 'n/a')}",
        f"- code: git commit `{lineage.get('git_commit') or 'unknown'}`",
        "",
        "## Data window",
        "",
        "Split by `event_date`, never shuffled; "
        f"{split.get('gap_days')} days dropped between sets ({split.get('dropped_rows', 0):,} rows) so that no "
        "label of one set sees the days of the next.",
        "",
        "| set | first date | last date | rows | churn rows | churn rate |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name in ("train", "validation", "test"):
        s = split.get(name, {})
        lines.append(
            f"| {name} | {s.get('start')} | {s.get('end')} | {s.get('rows', 0):,} | {s.get('positives', 0):,} "
            f"| {_fmt(s.get('positive_rate'), 3)} |"
        )
    trained = meta.get("trained_rows", {})
    holdout = meta.get("holdout", {})
    cv = meta.get("cv", {})
    if trained:
        lines += [
            "",
            f"**The registered model was refit on every labelled row**: {trained.get('start')} to "
            f"{trained.get('end')}, {trained.get('rows', 0):,} rows ({trained.get('positives', 0):,} churn), "
            f"{meta.get('best_iteration')} rounds. The test metrics below come from a holdout model with the same "
            f"parameters fit on the development rows only ({holdout.get('rows', {}).get('start')} to "
            f"{holdout.get('rows', {}).get('end')}, {holdout.get('rows', {}).get('rows', 0):,} rows, "
            f"{holdout.get('rounds')} rounds), which never saw the test set.",
            "",
            f"How the metrics were obtained: {meta.get('protocol', 'n/a')}.",
            "",
            "| fold | train dates | validation dates | " + f"{meta.get('tuning', {}).get('metric', 'metric')} |",
            "|---:|---|---|---:|",
        ]
        values = meta.get("cv_result", {}).get("values", [])
        for fold, value in zip(cv.get("folds", []), values, strict=False):
            lines.append(f"| {fold['fold']} | {fold['train']} | {fold['validation']} | {_fmt(value)} |")
    tuning = meta.get("tuning", {})
    lines += [
        "",
        "## Features",
        "",
        f"{len(features)} features computed from day t and earlier only (no label column, checked at training): "
        + ", ".join(f"`{f}`" for f in features)
        + ".",
        "",
        "Categorical (LightGBM native, levels from the train set; unseen values are treated as missing): "
        + ", ".join(f"`{c}` ({len(v)} levels)" for c, v in cats.items())
        + ".",
        "",
        "## Model",
        "",
        f"LightGBM, {meta.get('best_iteration')} trees; hyper-parameters from an Optuna study of "
        f"{tuning.get('trials', '?')} trials (TPE, seeded) maximising the mean walk-forward CV "
        f"{tuning.get('metric', '?')} (best trial {tuning.get('best_trial', '?')}); rounds = the folds' median best "
        "iteration scaled to the rows fit on; `scale_pos_weight` = negatives / positives of the rows fit on. "
        f"Decision threshold {meta['threshold']:.4f}, chosen on out-of-fold predictions "
        f"({meta.get('threshold_objective')}).",
        "",
        "## Test metrics vs baselines",
        "",
        "Each model at its own threshold, tuned out of fold; the LightGBM rows are holdout models fit before the "
        "test rows with the same procedure. Baselines: LightGBM with default parameters on the seed features only, "
        "and the no-learning score `1 - min(1, count_views / avg_views_past_3d)`.",
        "",
        "| metric | " + " | ".join(ROLE_LABELS[r] for r in roles) + " |",
        "|---|" + "---:|" * len(roles),
    ]
    for key in ("pr_auc", "roc_auc", "log_loss", "brier", "precision_churn", "recall_churn", "f1_churn", "threshold"):
        lines.append(f"| {key} | " + " | ".join(_fmt(test[r].get(key)) for r in roles) + " |")
    for key in ("tp", "fp", "fn", "tn"):
        lines.append(f"| {key} | " + " | ".join(_fmt(test[r].get(key)) for r in roles) + " |")
    test_split = split.get("test", {})
    lines += [
        "",
        "(The heuristic's log loss and Brier score are not meaningful: its score is not a probability.)",
        "",
        "## Known limits",
        "",
        f"- The test window is short ({test_split.get('start')} to {test_split.get('end')}, "
        f"{test_split.get('positives', 0):,} churn rows): metrics carry sampling noise of a few points, and rows "
        "of one domain on consecutive days are correlated (a collapse lasts days), so the effective sample is smaller "
        "than the row count.",
        "- `scale_pos_weight` re-weights churn rows: `risk_score` ranks well but over-states the probability "
        "(see `figures/calibration.png`); use the threshold, or recalibrate before reading it as a probability.",
        "- The threshold is tuned for the validation base rate; if the churn rate drifts, re-tune it.",
        "- Days with missing hourly files make labels unavailable (strict policy): those days are neither trained "
        "nor evaluated on, and scoring a day whose history has gaps is less reliable.",
        "- Domains unseen in training get the missing-category branch of `domain_code`; they are scored from "
        "their history features, with less accuracy.",
        "- Bot-like spikes inflate the 3-day mean and can make a return to normal look like a collapse.",
        "",
    ]
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def main(
    run_id: Annotated[str, typer.Option(help="the tuned run written by `train`")],
    experiment: Annotated[str, typer.Option(help="MLflow experiment name (default: settings)")] = "",
) -> None:
    """Evaluate a trained run on its test rows and log figures, model card and the pyfunc model."""
    from wikichurn.training.tracking import pop_project_run_id
    from wikichurn.training.train import cli_settings, setup_cli_logging

    setup_cli_logging()
    project_run_id = pop_project_run_id()
    cfg, _settings = cli_settings(experiment=experiment)
    result = run_evaluation(cfg, run_id, project_run_id=project_run_id)
    typer.echo(json.dumps({"run_id": result.run_id, "model_uri": result.model_uri}))


if __name__ == "__main__":
    app()
