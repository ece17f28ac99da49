"""Stage ``register``: register the evaluated model and move the ``production`` or ``challenger`` alias.

The candidate (the ``model`` logged by ``evaluate`` on the tuned run, refit on every labelled
row) becomes a new version of the registered model. Because that refit saw the test rows, the
candidate is judged by its holdout model (same procedure, fit before the test rows). It gets
the alias ``production`` only if, by the configured metric (default PR AUC):

1. it beats the seed-feature baseline on its test rows (``promotion.require_beat_baseline``), and
2. it beats the current ``production`` version by more than ``promotion.min_delta``, both
   scored on the same recent rows: the test rows dated after the champion's own training rows
   (all test rows when none remain, noted in the reason). A registry without a production
   version is beaten by default.

Otherwise it gets ``challenger`` and the reason is logged and stored as a version tag.
``force`` promotes regardless. Lineage (feature table and its Delta version, split dates, git
commit, training run) is recorded as model version tags.

Run as ``python -m wikichurn.training.register --run-id <tuned run>`` or ``mlflow run . -e register -P run_id=...``.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import mlflow
import pandas as pd
import typer
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from wikichurn.training.config import TrainingSettings
from wikichurn.training.data import LABEL
from wikichurn.training.metrics import MetricSpec, metric_spec
from wikichurn.training.model import ChurnScorer, download_model, read_meta
from wikichurn.training.tracking import (
    DATA_DIR,
    HOLDOUT_DIR,
    ROLE_SEED,
    TAG_MODEL_URI,
    TAG_PROTOCOL,
    TAG_ROLE,
    TAG_TRAINED_ROWS,
    TAG_TRAINING_ID,
    configure_tracking,
    download_run_artifacts,
    has_artifact,
)

log = logging.getLogger("wikichurn.training.register")  # not __main__ under python -m

TAG_PROMOTION = "wikichurn.promotion"  # production | challenger
TAG_PROMOTION_REASON = "wikichurn.promotion_reason"


@dataclass(frozen=True)
class Decision:
    """Whether to promote, and why."""

    promote: bool
    reason: str


def decide_promotion(
    spec: MetricSpec,
    candidate: float,
    *,
    production: float | None = None,
    baseline: float | None = None,
    min_delta: float = 0.0,
    require_beat_baseline: bool = True,
    force: bool = False,
) -> Decision:
    """The promotion rule (pure: no MLflow).

    Args:
        spec: the comparison metric (direction included).
        candidate: the candidate's score on its test rows.
        production: the production model's score on the same rows (None: no production yet).
        baseline: the seed-feature baseline's score on the same rows (None: unknown).
        min_delta: the margin by which the candidate must beat production.
        require_beat_baseline: refuse a candidate that does not beat the baseline.
        force: promote whatever the scores.

    Returns:
        The decision and a human-readable reason.
    """
    name = spec.name
    if force:
        return Decision(True, f"forced promotion (candidate {name} {candidate:.4f})")
    if candidate is None or math.isnan(candidate):
        return Decision(False, f"candidate {name} is undefined on its test set")
    if require_beat_baseline:
        if baseline is None or math.isnan(baseline):
            return Decision(False, f"no seed-feature baseline {name} to compare with")
        if not spec.better(candidate, baseline):
            return Decision(
                False, f"candidate {name} {candidate:.4f} does not beat the seed-feature baseline {baseline:.4f}"
            )
    if production is None or math.isnan(production):
        return Decision(True, f"no comparable production model; candidate {name} {candidate:.4f}")
    gain = spec.improvement(candidate, production)
    if gain > min_delta:
        return Decision(
            True, f"candidate {name} {candidate:.4f} beats production {production:.4f} (by {gain:+.4f} > {min_delta})"
        )
    return Decision(
        False,
        f"candidate {name} {candidate:.4f} does not beat production {production:.4f} by more than {min_delta} "
        f"(difference {gain:+.4f})",
    )


@dataclass
class PromotionResult:
    """What ``register`` did."""

    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    metric: str
    candidate_score: float
    baseline_score: float | None
    production_version: str | None
    production_score: float | None
    model_uri: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias`` (None when the model or the alias does not exist)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_and_promote(cfg: TrainingSettings, run_id: str, *, force: bool = False) -> PromotionResult:
    """Register the model of tuned run ``run_id`` and set ``production`` or ``challenger`` on it.

    Args:
        cfg: model name, promotion metric, margin and alias names.
        run_id: the tuned run, already evaluated (it carries the tag ``wikichurn.model_uri``).
        force: promote even if the candidate loses.

    Returns:
        The new version, the alias set, and the scores behind the decision.
    """
    configure_tracking(cfg, run_id)
    client = MlflowClient()
    name, promo = cfg.model_name, cfg.promotion
    spec = metric_spec(promo.metric)
    run = client.get_run(run_id)
    model_uri = run.data.tags.get(TAG_MODEL_URI)
    if not model_uri:
        raise ValueError(f"run {run_id} has no evaluated model: run `evaluate --run-id {run_id}` first")

    with tempfile.TemporaryDirectory(prefix="wikichurn-register-") as tmp_name:
        tmp = Path(tmp_name)
        candidate_dir = download_model(model_uri, tmp / "candidate")
        meta = read_meta(candidate_dir)
        # The registered model saw the test rows (refit on everything): the candidate is judged
        # by its holdout model, fit with the same procedure before the test rows (runs without
        # one, written before the refit procedure, by the registered model itself).
        if has_artifact(run_id, HOLDOUT_DIR):
            candidate_dir = download_run_artifacts(run_id, HOLDOUT_DIR, tmp / "holdout")
        candidate = ChurnScorer.from_dir(candidate_dir)
        test = pd.read_parquet(download_run_artifacts(run_id, f"{DATA_DIR}/test.parquet", tmp / "data"))
        y = test[LABEL].to_numpy(dtype="int64")
        candidate_score = spec.compute(y, candidate.predict_proba(test))
        baseline_score = meta.get("baselines", {}).get(ROLE_SEED, {}).get("test", {}).get(spec.name)

        production = current_alias_version(client, name, promo.production_alias)
        version = mlflow.register_model(model_uri, name, tags=_lineage_tags(meta, run_id, spec, candidate_score))
        production_score: float | None = None
        note = ""
        if production is not None and production.version != version.version:
            try:
                incumbent = ChurnScorer.from_dir(download_model(f"models:/{name}/{production.version}", tmp / "prod"))
                rows, note = comparison_rows(test, incumbent.meta)
                rows_y = rows[LABEL].to_numpy(dtype="int64")
                production_score = spec.compute(rows_y, incumbent.predict_proba(rows))
                if len(rows) != len(test):  # re-score the candidate on exactly the same rows
                    candidate_score = spec.compute(rows_y, candidate.predict_proba(rows))
            except Exception as exc:  # an incompatible production model cannot block a new one
                note = f" (production v{production.version} could not score the test rows: {exc})"
                log.warning("production version %s could not be re-scored: %s", production.version, exc)

    decision = decide_promotion(
        spec,
        candidate_score,
        production=production_score,
        baseline=baseline_score,
        min_delta=promo.min_delta,
        require_beat_baseline=promo.require_beat_baseline,
        force=force,
    )
    alias = promo.production_alias if decision.promote else promo.challenger_alias
    reason = decision.reason + note
    client.set_registered_model_alias(name, alias, version.version)
    client.set_model_version_tag(name, version.version, TAG_PROMOTION, alias)
    client.set_model_version_tag(name, version.version, TAG_PROMOTION_REASON, reason[:5000])
    if production is not None:
        client.set_model_version_tag(name, version.version, "wikichurn.compared_with_version", production.version)
        if production_score is not None:
            client.set_model_version_tag(
                name, version.version, f"wikichurn.production_test_{spec.name}", f"{production_score:.6f}"
            )
    client.set_tag(run_id, "wikichurn.registered_version", version.version)
    client.set_tag(run_id, TAG_PROMOTION, alias)
    client.set_tag(run_id, TAG_PROMOTION_REASON, reason[:5000])
    log.info("%s version %s -> @%s: %s", name, version.version, alias, reason)
    return PromotionResult(
        model_name=name,
        version=str(version.version),
        alias=alias,
        promoted=decision.promote,
        reason=reason,
        metric=spec.name,
        candidate_score=candidate_score,
        baseline_score=baseline_score,
        production_version=None if production is None else str(production.version),
        production_score=production_score,
        model_uri=model_uri,
    )


def comparison_rows(test: pd.DataFrame, champion_meta: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """The candidate's test rows the champion never trained on (dates after its ``trained_rows``),
    when they hold both classes; else all test rows, with a note that the champion saw some."""
    end = champion_meta.get("trained_rows", {}).get("end")
    if end is None or "event_date" not in test.columns:
        return test, ""
    unseen = test.loc[pd.to_datetime(test["event_date"]) > pd.Timestamp(end)]
    if len(unseen) == len(test):
        return test, ""
    if unseen[LABEL].nunique() == 2:
        return unseen, f" (compared on the {len(unseen):,} test rows after {end}, which production never saw)"
    return test, f" (production was trained on rows up to {end}, inside the test window: it is favoured)"


def _lineage_tags(meta: dict[str, Any], run_id: str, spec: MetricSpec, score: float) -> dict[str, str]:
    lineage = meta.get("lineage", {})
    split = meta.get("split", {})
    tags = {
        "wikichurn.run_id": run_id,
        "wikichurn.feature_table": str(lineage.get("feature_table")),
        "wikichurn.feature_table_location": str(lineage.get("feature_table_location")),
        "wikichurn.feature_table_version": str(lineage.get("feature_table_version")),
        "wikichurn.threshold": f"{float(meta['threshold']):.6f}",
        f"wikichurn.test_{spec.name}": f"{score:.6f}",
    }
    trained = meta.get("trained_rows")
    if trained:
        tags[TAG_TRAINED_ROWS] = f"{trained['start']}..{trained['end']}"
        tags["wikichurn.trained_rows_count"] = str(trained["rows"])
    if meta.get("protocol"):
        tags[TAG_PROTOCOL] = str(meta["protocol"])[:5000]
    if lineage.get("git_commit"):
        tags["wikichurn.git_commit"] = str(lineage["git_commit"])
    for part in ("train", "validation", "test"):
        if part in split:
            tags[f"wikichurn.split.{part}"] = f"{split[part]['start']}..{split[part]['end']}"
    return tags


# -- command line ----------------------------------------------------------------------------

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def main(
    run_id: Annotated[str, typer.Option(help="the tuned, evaluated run")],
    model_name: Annotated[str, typer.Option(help="registered model name (default: settings)")] = "",
    force: Annotated[str, typer.Option(help="true: promote even if the candidate loses")] = "false",
) -> None:
    """Register the run's model and set alias production (if it wins) or challenger."""
    from wikichurn.training.tracking import pop_project_run_id
    from wikichurn.training.train import cli_settings, parse_bool, setup_cli_logging

    setup_cli_logging()
    project_run_id = pop_project_run_id()
    cfg, _settings = cli_settings(model_name=model_name)
    result = register_and_promote(cfg, run_id, force=parse_bool(force))
    if project_run_id and project_run_id != run_id:
        client = MlflowClient()
        for key, value in {
            TAG_ROLE: "register",
            TAG_TRAINING_ID: run_id,
            "wikichurn.registered_version": result.version,
            TAG_PROMOTION: result.alias,
            TAG_PROMOTION_REASON: result.reason[:5000],
        }.items():
            client.set_tag(project_run_id, key, value)
    typer.echo(json.dumps(result.to_dict()))


if __name__ == "__main__":
    app()
