"""Training benchmark on a lake built by bench_pipeline.py (one simulated year, ~1,000 domains).

Measures the time per Optuna trial (each trial's own fit time, logged on its nested run), the
whole training stage, SHAP (``shap.TreeExplainer`` on the configured sample of test rows, timed
alone), the whole evaluation stage, and the process's peak memory (RSS).

    python benchmarks/bench_training.py --lake /tmp/wikichurn-bench/lake --trials 10
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False)


@app.command()
def main(
    lake: Annotated[Path, typer.Option(help="lake holding gold_churn_features")] = Path("/tmp/wikichurn-bench/lake"),
    trials: Annotated[int, typer.Option(help="Optuna trials")] = 10,
    results: Annotated[Path, typer.Option(help="JSON results file")] = Path("docs/benchmarks-training.json"),
) -> None:
    """Train and evaluate once against a throw-away tracking server and report the timings."""
    from mlflow.tracking import MlflowClient

    from wikichurn.core.settings import Settings
    from wikichurn.pipeline.spark import build_spark
    from wikichurn.training.config import load_training_settings
    from wikichurn.training.evaluate import run_evaluation, shap_explanation
    from wikichurn.training.model import ChurnScorer
    from wikichurn.training.server import tracking_server
    from wikichurn.training.train import run_training

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    settings = Settings(lake_uri=str(lake), raw_uri=str(lake.parent / "raw"))
    measured: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, tracking_server(Path(tmp) / "mlflow") as server:
        cfg = load_training_settings(tracking_uri=server.url, tuning={"trials": trials})
        with build_spark(settings) as spark:
            started = time.monotonic()
            trained = run_training(cfg, settings, spark=spark)
            measured["train_seconds"] = time.monotonic() - started
        client = MlflowClient(server.url)
        nested = client.search_runs(
            [trained.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{trained.run_id}'"
        )
        fits = [run.data.metrics["seconds"] for run in nested if "seconds" in run.data.metrics]
        measured["trials"] = len(nested)
        measured["trial_seconds_mean"] = statistics.fmean(fits) if fits else None
        measured["trial_seconds_median"] = statistics.median(fits) if fits else None
        measured["train_rows"] = trained.split["train"]["rows"]
        measured["split"] = {k: trained.split[k]["rows"] for k in ("train", "validation", "test")}

        started = time.monotonic()
        evaluated = run_evaluation(cfg, trained.run_id)
        measured["evaluate_seconds"] = time.monotonic() - started
        measured["test"] = {
            role: {k: m[k] for k in ("pr_auc", "roc_auc", "f1_churn")} for role, m in evaluated.test.items()
        }

        import mlflow
        import pandas as pd

        folder = Path(tmp) / "model"
        mlflow.set_tracking_uri(server.url)
        scorer = ChurnScorer.from_dir(mlflow.artifacts.download_artifacts(evaluated.model_uri, dst_path=str(folder)))
        test = pd.read_parquet(
            mlflow.artifacts.download_artifacts(run_id=trained.run_id, artifact_path="data/test.parquet", dst_path=tmp)
        )
        started = time.monotonic()
        shap_explanation(scorer, test, cfg.evaluation.shap_sample_rows, cfg.seed)
        measured["shap_seconds"] = time.monotonic() - started
        measured["shap_rows"] = min(cfg.evaluation.shap_sample_rows, len(test))
        measured["trees"] = scorer.booster.num_trees()
    measured["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "lake": str(lake),
    }
    results.write_text(json.dumps({"meta": meta, "training": measured}, indent=2, default=str) + "\n")
    typer.echo(json.dumps(measured, indent=2, default=str))


if __name__ == "__main__":
    app()
