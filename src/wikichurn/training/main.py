"""Entry point ``main``: train -> evaluate -> register and promote, on the existing feature table.

It never ingests nor rebuilds tables: it reads ``gold_churn_features`` under the configured lake
(``WIKICHURN_LAKE_URI`` or ``--lake-uri``). Under ``mlflow run . -e main`` the run MLflow
created becomes the tuned run, so the project run carries the model, metrics and figures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from wikichurn.training.config import TrainingSettings
from wikichurn.training.evaluate import EvaluationResult, run_evaluation
from wikichurn.training.register import PromotionResult, register_and_promote
from wikichurn.training.train import TrainResult, run_training

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import Settings
    from wikichurn.training.data import FeatureData

log = logging.getLogger("wikichurn.training.main")  # not __main__ under python -m


@dataclass
class MainResult:
    """The three stages' results."""

    train: TrainResult
    evaluation: EvaluationResult
    promotion: PromotionResult

    def summary(self) -> dict[str, object]:
        """A JSON-safe digest: run ids, model URI, version, alias and headline test metrics."""
        return {
            "run_id": self.train.run_id,
            "baseline_run_ids": self.train.baseline_run_ids,
            "model_uri": self.evaluation.model_uri,
            "model_name": self.promotion.model_name,
            "version": self.promotion.version,
            "alias": self.promotion.alias,
            "reason": self.promotion.reason,
            "test": {
                role: {k: metrics[k] for k in ("pr_auc", "roc_auc", "f1_churn", "threshold")}
                for role, metrics in self.evaluation.test.items()
            },
        }


def run_main(
    cfg: TrainingSettings,
    settings: Settings,
    *,
    force: bool = False,
    spark: SparkSession | None = None,
    data: FeatureData | None = None,
    run_id: str | None = None,
) -> MainResult:
    """Train, evaluate, register and promote.

    Args:
        cfg: training settings.
        settings: lake location, engine and churn definition.
        force: promote the new version whatever the comparison says.
        spark: a session to read the feature table with (built here when None).
        data: feature rows already loaded (skips Spark).
        run_id: an existing run to use as the tuned run (``mlflow run`` sets one).

    Returns:
        Every stage's result.
    """
    trained = run_training(cfg, settings, spark=spark, data=data, run_id=run_id)
    evaluated = run_evaluation(cfg, trained.run_id)
    promoted = register_and_promote(cfg, trained.run_id, force=force)
    return MainResult(trained, evaluated, promoted)


app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def main(
    lake_uri: Annotated[str, typer.Option(help="lake root holding gold_churn_features (default: settings)")] = "",
    trials: Annotated[int, typer.Option(help="Optuna trials (0 = conf/training.yaml)")] = 0,
    metric: Annotated[str, typer.Option(help="validation metric to tune (default: settings)")] = "",
    experiment: Annotated[str, typer.Option(help="MLflow experiment name (default: settings)")] = "",
    model_name: Annotated[str, typer.Option(help="registered model name (default: settings)")] = "",
    force: Annotated[str, typer.Option(help="true: promote even if the candidate loses")] = "false",
) -> None:
    """Train, evaluate, register and promote; print a JSON summary."""
    from wikichurn.training.tracking import pop_project_run_id
    from wikichurn.training.train import cli_settings, parse_bool, setup_cli_logging

    setup_cli_logging()
    run_id = pop_project_run_id()
    cfg, settings = cli_settings(lake_uri, trials, metric, experiment, model_name)
    result = run_main(cfg, settings, force=parse_bool(force), run_id=run_id)
    typer.echo(json.dumps(result.summary(), default=str))


if __name__ == "__main__":
    app()
