"""The end-to-end demo on the embedded defaults, fully offline.

simulate a dumps mirror -> serve it on loopback -> ingest over HTTP into the raw zone ->
bronze / silver / gold / features on Sail + Delta -> EDA report -> train, register and promote a
model in a local MLflow tracking server -> show what was built.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from wikichurn.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DEMO_START = date(2024, 1, 1)


def _mirror_is_current(mirror: Path, start: date, end: date, domains: int, seed: int) -> bool:
    manifest = mirror / "simulation.json"
    if not manifest.is_file():
        return False
    params = json.loads(manifest.read_text()).get("parameters", {})
    wanted = {"start": start.isoformat(), "end": end.isoformat(), "domains": domains, "seed": seed}
    return {key: params.get(key) for key in wanted} == wanted


def demo_settings(workdir: Path, base: Settings | None = None) -> Settings:
    """The settings the demo runs with: everything under ``workdir``, embedded engine."""
    base = base or load_settings()
    # Two months hold few labels once every day near a missing hourly file is excluded (the
    # strict default), so the demo rescales days that miss at most 4 of their 24 files.
    churn = base.churn.model_copy(update={"incomplete_policy": "rescale"})
    return base.model_copy(
        update={
            "raw_uri": str((workdir / "raw").resolve()),
            "lake_uri": str((workdir / "lake").resolve()),
            "engine": "sail",
            "table_format": "delta",
            "churn": churn,
        }
    )


def run_demo(
    workdir: Path, *, days: int = 60, domains: int = 500, seed: int = 7, trials: int = 10, console: Console
) -> Settings:
    """Run the whole demo and print where everything is.

    Args:
        workdir: folder for the mirror, the raw zone and the lake (reused when re-run).
        days: simulated days, from 2024-01-01.
        domains: simulated domain codes.
        seed: random seed of the simulation.
        trials: Optuna trials of the training step.
        console: where to print.

    Returns:
        The settings the demo used (raw and lake locations).
    """
    from wikichurn.pipeline.eda.report import run_eda
    from wikichurn.pipeline.ingest.land import ingest
    from wikichurn.pipeline.lakehouse.features import export_snapshot
    from wikichurn.pipeline.lakehouse.run import run_pipeline
    from wikichurn.pipeline.spark import build_spark
    from wikichurn.sim.mirror import serve_mirror
    from wikichurn.sim.simulate import simulate
    from wikichurn.training.config import load_training_settings
    from wikichurn.training.main import run_main
    from wikichurn.training.server import tracking_server

    started = time.monotonic()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the demo prints its own summary
    workdir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(workdir)
    start, end = DEMO_START, DEMO_START + timedelta(days=days - 1)
    mirror = workdir / "mirror"

    console.rule("[bold]1/6 simulate a Wikimedia dumps mirror")
    if _mirror_is_current(mirror, start, end, domains, seed):
        console.print(f"reusing the simulated mirror in {mirror}")
    else:
        console.print(simulate(mirror, start, end, domains=domains, seed=seed, progress=True).describe())

    console.rule("[bold]2/6 ingest over HTTP into the raw zone")
    with serve_mirror(mirror) as url:
        console.print(f"mirror served at {url}/ (like https://dumps.wikimedia.org/other/pageviews/)")
        summary = ingest(url, settings.raw_uri, start, end, settings, progress=True)
    console.print(summary.describe())
    if summary.failed:
        raise RuntimeError(f"ingestion failed for {summary.failed} files")

    console.rule("[bold]3/6 bronze -> silver -> gold -> features (Sail + Delta)")
    with tracking_server(workdir / "mlflow") as mlflow_server, build_spark(settings) as spark:
        settings = settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.url})
        result = run_pipeline(spark, settings)
        console.print(result.describe())
        _show_tables(spark, settings, result.table_counts, console)

        console.rule("[bold]4/6 exploratory analysis")
        eda = run_eda(spark, settings, workdir / "eda")
        console.print(eda.describe())

        console.rule("[bold]5/6 train, evaluate, register and promote (MLflow)")
        cfg = load_training_settings(tracking_uri=mlflow_server.url, tuning={"trials": trials})
        trained = run_main(cfg, settings, spark=spark)
        _show_training(trained.summary(), console)
        snapshot = export_snapshot(spark, settings, workdir / "serving" / "features_snapshot.parquet")

        console.rule("[bold]6/6 serve the production model and score a few domains")
        if trained.promotion.alias == cfg.promotion.production_alias or _has_production(mlflow_server.url, cfg):
            from wikichurn.serving.batch import run_scoring

            console.print(run_scoring(spark, settings).describe())  # gold_churn_scores, for the dashboard
            _serve_and_score(mlflow_server.url, snapshot.path, console)
        else:
            console.print("no model holds the production alias yet: nothing to serve (see the promotion line)")

    console.rule("[bold]done")
    console.print(f"raw zone : {settings.raw_uri}")
    console.print(f"lakehouse: {settings.lake_uri}   (Delta tables; read them with deltalake or Spark)")
    console.print(f"EDA report: {eda.report}")
    console.print(f"MLflow UI : wikichurn mlflow-server --root {workdir / 'mlflow'}   then open http://127.0.0.1:5000")
    console.print(f"dashboard : {dashboard_command(workdir)}   then open http://127.0.0.1:8501")
    console.print(f"demo took {time.monotonic() - started:.0f} s")
    return settings


def dashboard_command(workdir: Path) -> str:
    """The command that opens the dashboard on the demo's lake and registry."""
    return f"wikichurn dashboard --lake {workdir / 'lake'} --mlflow-root {workdir / 'mlflow'}"


def _show_tables(spark: SparkSession, settings: Settings, counts: dict[str, int], console: Console) -> None:
    from pyspark.sql import functions as F

    from wikichurn.core import tables
    from wikichurn.pipeline.lakehouse.lake import Lake

    lake = Lake(spark, settings)
    catalog = Table(title="tables")
    catalog.add_column("table")
    catalog.add_column("rows", justify="right")
    catalog.add_column("location")
    for name, rows in counts.items():
        catalog.add_row(name, f"{rows:,}", lake.path(name))
    console.print(catalog)

    gold = lake.read(tables.GOLD_DAILY)
    last = gold.agg(F.max("event_date")).collect()[0][0]
    top = gold.where(F.col("event_date") == F.lit(last)).orderBy(F.desc("count_views")).limit(8).collect()
    sample = Table(title=f"{tables.GOLD_DAILY}, top domains on {last}")
    for column in ("domain_code", "event_date", "count_views", "hours_present"):
        sample.add_column(column, justify="right" if column in ("count_views", "hours_present") else "left")
    for row in top:
        sample.add_row(row["domain_code"], str(row["event_date"]), f"{row['count_views']:,}", str(row["hours_present"]))
    console.print(sample)

    reasons = lake.read(tables.SILVER_QUARANTINE).groupBy("dq_reason").count().orderBy(F.desc("count")).collect()
    console.print("quarantine by reason: " + ", ".join(f"{r['dq_reason']}={r['count']:,}" for r in reasons))


def _show_training(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"test metrics (model {summary['model_name']} v{summary['version']} -> @{summary['alias']})")
    for column in ("run", "PR AUC", "ROC AUC", "F1 (churn)", "threshold"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for role, metrics in summary["test"].items():
        table.add_row(
            role,
            f"{metrics['pr_auc']:.3f}",
            f"{metrics['roc_auc']:.3f}",
            f"{metrics['f1_churn']:.3f}",
            f"{metrics['threshold']:.3f}",
        )
    console.print(table)
    console.print(f"promotion: {summary['reason']}")


def _has_production(tracking_uri: str, cfg: Any) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri).get_model_version_by_alias(cfg.model_name, cfg.promotion.production_alias)
    except MlflowException:
        return False
    return True


DEMO_DOMAINS = ("en", "de.m", "fr.d", "ja", "commons.m", "xx.unknown")


def _serve_and_score(tracking_uri: str, snapshot: Path, console: Console) -> None:
    """Start ``wikichurn serve`` on a free port, score a few domains with one request, stop it."""
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "WIKICHURN_SERVING__SNAPSHOT_PATH": str(snapshot),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "wikichurn", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the scoring service did not become ready")
            time.sleep(0.3)
        body = {"instances": [{"domain_code": d} for d in DEMO_DOMAINS], "explain": True}
        console.print(f"service ready at {url}; the request:")
        console.print(
            f"curl -s -X POST {url}/score -H 'Content-Type: application/json' -d '{json.dumps(body)}'",
            soft_wrap=True,
        )
        answer = httpx.post(f"{url}/score", json=body, timeout=30).json()
        table = Table(title="POST /score")
        for column in ("domain_code", "as_of", "risk_score", "churn", "top reason"):
            table.add_column(column)
        for item in answer["results"]:
            if "error" in item:
                table.add_row(item["domain_code"], "-", "-", "-", f"error: {item['error']['code']}")
                continue
            top = item.get("explanation", {}).get("contributions", [{}])[0]
            value = top.get("value")
            shown = f"{value:,.4g}" if isinstance(value, float) else value
            reason = f"{top.get('feature')} = {shown} ({top.get('contribution', 0):+.2f})" if top else ""
            table.add_row(
                item["domain_code"], str(item["as_of"]), f"{item['risk_score']:.3f}", str(item["churn"]), reason
            )
        console.print(table)
        console.print("start it yourself with: MLFLOW_TRACKING_URI=... wikichurn serve  (see docs/serving.md)")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
