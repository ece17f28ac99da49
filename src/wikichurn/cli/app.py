"""The ``wikichurn`` command line: thin commands that parse flags and call the packages.

Heavy imports (Spark, MLflow) happen inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import rich
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(
    help="wikichurn: Wikimedia projectviews lakehouse and traffic-collapse (churn) model.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
mirror_app = typer.Typer(help="A simulated Wikimedia dumps mirror served over HTTP.", no_args_is_help=True)
pipeline_app = typer.Typer(help="The bronze -> silver -> gold medallion pipeline.", no_args_is_help=True)
app.add_typer(mirror_app, name="mirror")
features_app = typer.Typer(
    help="The churn feature table and its serving snapshot (no sub-command: build).", invoke_without_command=True
)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(features_app, name="features")
warehouse_app = typer.Typer(help="Gold tables in a PostgreSQL warehouse (Redshift-style DDL).", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")

console = Console()
err_console = Console(stderr=True)

DateOpt = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="a UTC date, YYYY-MM-DD")]


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    # Results go to stdout; logs and progress bars share one stderr console so a live bar is
    # redrawn around log lines instead of being torn by them.
    rich.reconfigure(stderr=True)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=rich.get_console(), show_path=False, rich_tracebacks=False)],
        force=True,
    )
    # Spark Connect and py4j are chatty at INFO.
    for noisy in ("py4j", "pyspark", "httpx", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="folder to write the mirror into")],
    start: DateOpt,
    end: DateOpt,
    domains: Annotated[int, typer.Option(min=1, help="number of domain codes")] = 500,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same files)")] = 0,
) -> None:
    """Write a realistic simulated dumps mirror (projectviews files + decoys + listings)."""
    from wikichurn.sim.simulate import simulate as run_simulation

    summary = run_simulation(out, start.date(), end.date(), domains=domains, seed=seed, progress=True)
    console.print(summary.describe())


@app.command()
def replay(
    daily: Annotated[Path, typer.Option(exists=True, file_okay=False, help="folder of real <wiki>.csv daily totals")],
    out: Annotated[Path, typer.Option(help="folder to write the mirror into")],
    seed: Annotated[int, typer.Option(help="seed of the hourly spread")] = 0,
) -> None:
    """Turn real daily totals (projectcounts/daily CSVs) into a mirror of hourly projectviews files."""
    from wikichurn.sim.replay import replay as run_replay

    summary = run_replay(daily, out, seed=seed)
    console.print_json(data=summary.to_dict())
    if summary.start < date(2015, 5, 1):
        # The pipeline quarantines hours before the projectviews dumps began unless told otherwise.
        err_console.print(
            f"the mirror starts {summary.start}, before the projectviews dumps: run the pipeline with "
            f"WIKICHURN_PIPELINE__FIRST_FILE_HOUR={summary.start}T00:00:00"
        )


@app.command()
def backtest(
    daily: Annotated[Path, typer.Option(exists=True, file_okay=False, help="folder of real <wiki>.csv daily totals")],
    work: Annotated[Path, typer.Option(help="scratch folder: mirror, raw files, lake")],
    windows: Annotated[int, typer.Option(min=1, help="monthly forward windows (the last months)")] = 6,
    trials: Annotated[int, typer.Option(help="Optuna trials per window (0 = settings)")] = 0,
    wikis: Annotated[str, typer.Option(help="comma-separated database names (default: every file)")] = "",
    experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "wikichurn-backtest",
) -> None:
    """Replay real daily totals, build the lake, train at monthly cut-offs and score the next month."""
    from wikichurn.training.backtest import backtest_daily
    from wikichurn.training.config import load_training_settings

    cfg = load_training_settings(experiment_name=experiment, **({"tuning": {"trials": trials}} if trials else {}))
    result = backtest_daily(daily, work, cfg, windows=windows, wikis=wikis.split(",") if wikis else None)
    console.print(result.table().round(4).to_string(index=False))
    console.print_json(data=result.summary())


@mirror_app.command("serve")
def mirror_serve(
    root: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="the mirror folder")],
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
) -> None:
    """Serve a mirror folder over HTTP with Apache-style listings (until Ctrl-C)."""
    from wikichurn.sim.mirror import run_mirror

    run_mirror(root, host=host, port=port)


@app.command()
def ingest(
    start: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="first UTC date")] = None,
    end: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="last UTC date")] = None,
    source: Annotated[str | None, typer.Option(help="dumps URL or folder (default: settings)")] = None,
    dest: Annotated[str | None, typer.Option(help="raw folder or s3://bucket/prefix (default: settings)")] = None,
) -> None:
    """Land projectviews files from the dumps site into raw storage (idempotent)."""
    from wikichurn.cli.errors import fail_clearly
    from wikichurn.core.settings import load_settings
    from wikichurn.pipeline.ingest.land import ingest as run_ingest

    settings = load_settings()
    first = start.date() if start else _yesterday()
    last = end.date() if end else first
    source, dest = source or settings.source_url, dest or settings.raw_uri
    with fail_clearly("ingest", console):
        summary = run_ingest(source, dest, first, last, settings, progress=True)
    console.print(summary.describe())
    if summary.failed:
        raise typer.Exit(code=1)


JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON only")]


WaitOpt = Annotated[bool, typer.Option("--wait", help="wait for another writer to finish instead of exiting 75")]
WaitTimeoutOpt = Annotated[float | None, typer.Option(min=0, help="with --wait: give up after this many seconds")]


@pipeline_app.command("run")
def pipeline_run(as_json: JsonOpt = False, wait: WaitOpt = False, wait_timeout: WaitTimeoutOpt = None) -> None:
    """Run bronze -> silver -> gold incrementally and print a per-table summary (one writer per lake)."""
    from wikichurn.cli.errors import fail_clearly
    from wikichurn.core.settings import load_settings
    from wikichurn.pipeline.lakehouse.lock import writer_lock
    from wikichurn.pipeline.lakehouse.run import run_pipeline
    from wikichurn.pipeline.spark import build_spark
    from wikichurn.serving.batch import score_if_production

    settings = load_settings()
    lock = writer_lock(settings, command="wikichurn pipeline run", wait=wait, wait_timeout_s=wait_timeout)
    with fail_clearly("pipeline run", console), lock, build_spark(settings) as spark:
        result = run_pipeline(spark, settings)
        scored = score_if_production(spark, settings)  # gold_churn_scores, when a production model exists
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "scoring": scored.describe() if scored else None}))
    else:
        _print_pipeline(result.table_counts, result.describe())
        if scored:
            console.print(scored.describe())


@app.command()
def score() -> None:
    """Score every domain on every complete day not yet scored by the production model (gold_churn_scores)."""
    from wikichurn.core.settings import load_settings
    from wikichurn.pipeline.spark import build_spark
    from wikichurn.serving.batch import NoProductionModelError, run_scoring

    settings = load_settings()
    with build_spark(settings) as spark:
        try:
            result = run_scoring(spark, settings)
        except (NoProductionModelError, FileNotFoundError) as exc:
            console.print(f"[red]{exc}[/red]\nno production model yet: run `wikichurn train` (after `pipeline run`)")
            raise typer.Exit(code=1) from exc
    console.print(result.describe())


@features_app.callback()
def _features_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        features_build()


@features_app.command("build")
def features_build() -> None:
    """Rebuild gold_churn_features (labels + leak-free features) from the gold tables."""
    from wikichurn.core.settings import load_settings
    from wikichurn.pipeline.lakehouse.features import run_features
    from wikichurn.pipeline.spark import build_spark

    settings = load_settings()
    with build_spark(settings) as spark:
        console.print(run_features(spark, settings).describe())


@features_app.command("export")
def features_export(
    out: Annotated[Path | None, typer.Option(help="parquet file (default: serving.snapshot_path)")] = None,
) -> None:
    """Export the latest complete day of features for the scoring service."""
    from wikichurn.core.settings import load_settings
    from wikichurn.pipeline.lakehouse.features import export_snapshot
    from wikichurn.pipeline.spark import build_spark

    settings = load_settings()
    with build_spark(settings) as spark:
        result = export_snapshot(spark, settings, out or Path(settings.serving.snapshot_path))
    console.print(result.describe())


@warehouse_app.command("export")
def warehouse_export(
    url: Annotated[str | None, typer.Option(help="postgresql://user:password@host:port/db (default: settings)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load gold_daily_projectviews, the features and the KPI tables into PostgreSQL (COPY, upsert by key)."""
    from wikichurn.core.settings import load_settings
    from wikichurn.pipeline.spark import build_spark
    from wikichurn.pipeline.warehouse import WarehouseError, export_warehouse

    settings = load_settings()
    try:
        with build_spark(settings) as spark:
            result = export_warehouse(spark, settings, url)
    except WarehouseError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=1) from exc
    _emit(result, as_json)


@app.command()
def eda(
    out: Annotated[Path, typer.Option(help="folder for report.html and plots/")] = Path("data/eda"),
    as_json: JsonOpt = False,
) -> None:
    """Explore the lake: KPI tables (gold_kpis_*), plots and one HTML report; logged to MLflow if configured."""
    from wikichurn.core.settings import load_settings
    from wikichurn.pipeline.eda.report import run_eda
    from wikichurn.pipeline.spark import build_spark

    settings = load_settings()
    with build_spark(settings) as spark:
        try:
            result = run_eda(spark, settings, out)
        except FileNotFoundError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(code=1) from exc
    _emit(result, as_json)


@app.command("mlflow-server")
def mlflow_server(
    root: Annotated[Path, typer.Option(help="folder for mlflow.db and artifacts/")] = Path("data/mlflow"),
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 5000,
) -> None:
    """Run a local MLflow tracking server with the model registry (sqlite, local artifacts) until Ctrl-C."""
    from wikichurn.training.server import run_tracking_server

    raise typer.Exit(run_tracking_server(root, host=host, port=port))


@app.command()
def train(
    trials: Annotated[int, typer.Option(min=0, help="Optuna trials (0: conf/training.yaml)")] = 0,
    metric: Annotated[str, typer.Option(help="validation metric: pr_auc, roc_auc, log_loss, brier")] = "",
    model_name: Annotated[str, typer.Option(help="registered model name (default: settings)")] = "",
    force: Annotated[bool, typer.Option("--force", help="promote even if the candidate loses")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train, evaluate, register and promote the churn model on gold_churn_features."""
    from wikichurn.core.settings import load_settings
    from wikichurn.training.config import load_training_settings
    from wikichurn.training.main import run_main

    tuning = {k: v for k, v in {"trials": trials, "metric": metric}.items() if v}
    overrides: dict[str, object] = {"tuning": tuning} if tuning else {}
    if model_name:
        overrides["model_name"] = model_name
    summary = run_main(load_training_settings(**overrides), load_settings(), force=force).summary()
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        console.print_json(json.dumps(summary, default=str))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default: serving.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (default: serving.port, 8000)")] = None,
    access_log: Annotated[bool, typer.Option(help="log one line per request")] = False,
) -> None:
    """Serve the churn model over HTTP (FastAPI + uvicorn, one worker) until Ctrl-C."""
    import os

    from wikichurn.core.settings import load_settings
    from wikichurn.serving.config import load_serving_settings
    from wikichurn.serving.main import run

    tracking_uri = load_settings().mlflow_tracking_uri
    if tracking_uri:
        # Through the environment: importing mlflow here would load pyspark before the service blocks it.
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    run(host, port, settings=load_serving_settings(), access_log=access_log)


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8501,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    lake: Annotated[str | None, typer.Option(help="lake folder or s3:// URI (default: settings lake_uri)")] = None,
    mlflow_root: Annotated[
        Path | None, typer.Option(help="start a local MLflow server on this folder (e.g. data/demo/mlflow)")
    ] = None,
) -> None:
    """Open the BI dashboard (Streamlit): at-risk domains, engagement, data quality, the model."""
    from wikichurn.core.settings import load_settings, tracking_uri
    from wikichurn.dashboard.launch import run_dashboard

    console.print(f"dashboard at http://{host}:{port}  (Ctrl-C to stop)")
    uri = None if mlflow_root else tracking_uri(load_settings())
    raise typer.Exit(run_dashboard(host=host, port=port, lake_uri=lake, tracking_uri=uri, mlflow_root=mlflow_root))


def _emit(result: Any, as_json: bool) -> None:
    """A command's result: its JSON form with --json, else its description."""
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        console.print(result.describe())


def _print_pipeline(counts: dict[str, int], text: str) -> None:
    table = Table(title="lakehouse tables")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(text)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its mirror, raw zone and lake")] = Path(
        "data/demo"
    ),
    days: Annotated[int, typer.Option(min=14, help="days of simulated traffic")] = 60,
    domains: Annotated[int, typer.Option(min=10, help="simulated domain codes")] = 500,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials of the training step")] = 10,
    open_dashboard: Annotated[bool, typer.Option("--dashboard", help="then open the dashboard on the demo")] = False,
) -> None:
    """The end-to-end demo, offline: simulate -> ingest over HTTP -> lake -> EDA -> train and promote."""
    from wikichurn.cli.demo import run_demo

    run_demo(workdir, days=days, domains=domains, seed=seed, trials=trials, console=console)
    if open_dashboard:
        from wikichurn.dashboard.launch import run_dashboard

        console.print("dashboard at http://127.0.0.1:8501  (Ctrl-C to stop)")
        raise typer.Exit(run_dashboard(lake_uri=str(workdir / "lake"), mlflow_root=workdir / "mlflow"))


def main() -> None:
    """Console-script entry point."""
    app()
