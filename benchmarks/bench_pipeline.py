"""Benchmark of the data platform on one simulated year (issue: ingest, cold run, incremental day).

Each phase runs in its own process so its peak memory (RSS, Sail's engine included: it runs
in-process) is its own. Results go to a JSON file and a markdown section of docs/benchmarks.md.

    python benchmarks/bench_pipeline.py run --days 365 --domains 1000
    python benchmarks/bench_pipeline.py run --baseline 46bcc11   # + the cold run of an older commit
    python benchmarks/bench_pipeline.py compare --baseline 46bcc11 --days 31   # same tables?

With ``--baseline REV`` the cold run of commit REV's code (exported with ``git archive``) runs in
the same benchmark, on the same raw files, next to the DuckDB reference and the current code, so
before/after ratios come from one run on one machine load. Each cold run reports where its time
went: the current code from ``PipelineResult.phases``, older code from the gaps between its log
lines.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)
START = date(2023, 1, 1)
SEED = 11


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): less sensitive to busy neighbours
    than wall time, which waits while they hold the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settings(workdir: Path, lake: str = "lake") -> Any:
    from wikichurn.core.settings import Settings

    return Settings(raw_uri=str(workdir / "raw"), lake_uri=str(workdir / lake))


def _load() -> str:
    """The machine's load averages (1, 5, 15 min): neighbours share the cores."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class _LogGaps(logging.Handler):
    """Times the gaps between a run's log lines (wall and process CPU): a profile that reads the
    same for code with and without step timers, and CPU time that busy neighbours barely move."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last, self.last_cpu = time.monotonic(), _cpu_seconds()
        self.gaps: dict[str, list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        now, cpu = time.monotonic(), _cpu_seconds()
        # "bronze: appended 2000 files" -> "bronze: appended"; the run summary is "run ...".
        words = [w for w in record.getMessage().split() if not w[0].isdigit()]
        label = " ".join(words[:2]) if words and words[0].endswith(":") else words[0] if words else "?"
        wall_cpu = self.gaps.setdefault(label, [0.0, 0.0])
        wall_cpu[0] += now - self.last
        wall_cpu[1] += cpu - self.last_cpu
        self.last, self.last_cpu = now, cpu


def _phase_simulate(workdir: Path, days: int, domains: int) -> dict[str, Any]:
    from wikichurn.sim.simulate import simulate

    end = START + timedelta(days=days - 1)
    summary = simulate(workdir / "mirror", START, end, domains=domains, seed=SEED)
    nxt = end + timedelta(days=1)
    # The "next day" a daily incremental run would see, from the same domain catalogue.
    simulate(workdir / "mirror_next", nxt, nxt, domains=domains, seed=SEED)
    return {"files": summary.hourly_files, "lines": summary.lines, "bytes": summary.bytes_written}


def _ingest(workdir: Path, mirror: str, start: date, end: date) -> dict[str, Any]:
    from wikichurn.pipeline.ingest.land import ingest
    from wikichurn.sim.mirror import serve_mirror

    settings = _settings(workdir)
    with serve_mirror(workdir / mirror) as url:
        summary = ingest(url, settings.raw_uri, start, end, settings)
    if summary.failed:
        raise RuntimeError(summary.describe())
    return {"downloaded": summary.downloaded, "bytes": summary.bytes_downloaded, "listed": summary.listed}


def _pipeline(workdir: Path, lake: str) -> dict[str, Any]:
    from wikichurn.pipeline.lakehouse.run import run_pipeline
    from wikichurn.pipeline.spark import build_spark

    settings = _settings(workdir, lake)
    gaps = _LogGaps()
    logger = logging.getLogger("wikichurn.pipeline.lakehouse")
    logger.setLevel(logging.INFO)
    logger.addHandler(gaps)
    with build_spark(settings) as spark:
        started = gaps.last = time.monotonic()
        gaps.last_cpu = _cpu_seconds()
        result = run_pipeline(spark, settings, features=False)
        seconds = time.monotonic() - started
    return {
        "files_new": result.files_new,
        "bronze_rows": result.bronze_rows,
        "clean_rows": result.clean_rows,
        "quarantined_rows": result.quarantined_rows,
        "job_seconds": seconds,
        # Wall and CPU seconds between log lines (older code has no step timers), and the run's
        # own step timers where it has them.
        "log_gaps": gaps.gaps,
        "phases": getattr(result, "phases", None),
        "code": str(Path(sys.modules["wikichurn"].__file__ or "").parent),
    }


def _features(workdir: Path) -> dict[str, Any]:
    from wikichurn.pipeline.lakehouse.features import run_features
    from wikichurn.pipeline.spark import build_spark

    settings = _settings(workdir)
    with build_spark(settings) as spark:
        started = time.monotonic()
        result = run_features(spark, settings)
        seconds = time.monotonic() - started
    return {
        "rows": result.rows,
        "labelled_rows": result.labelled_rows,
        "positive_rate": result.positive_rate,
        "job_seconds": seconds,
    }


def _features_numpy(workdir: Path) -> dict[str, Any]:
    """The numpy compilation of the same feature spec over the same lake (no Spark): every domain's
    features and labels from ``gold_daily_projectviews`` and the ledger, read with ``deltalake``."""
    from deltalake import DeltaTable

    from wikichurn.core import tables
    from wikichurn.core.columnar import domain_frame

    settings = _settings(workdir)
    started = time.monotonic()
    gold = DeltaTable(f"{settings.lake_uri}/{tables.GOLD_DAILY}").to_pandas(
        columns=["domain_code", "event_date", "count_views"]
    )
    ledger = DeltaTable(f"{settings.lake_uri}/{tables.BRONZE_LEDGER}").to_pandas(
        columns=["event_date", "event_timestamp"]
    )
    hours = ledger.dropna(subset=["event_date"]).groupby("event_date")["event_timestamp"].nunique().to_dict()
    read = time.monotonic() - started
    end = max(hours)
    rows = labelled = 0
    for code, group in gold.groupby("domain_code", sort=False):
        views = dict(zip(group["event_date"], group["count_views"], strict=True))
        frame = domain_frame(views, settings.churn, domain_code=str(code), end_date=end, day_hours=hours)
        rows += len(frame)
        labelled += int(frame["label_available"].sum()) if len(frame) else 0
    return {"rows": rows, "labelled_rows": labelled, "read_seconds": read, "job_seconds": time.monotonic() - started}


def _score(workdir: Path) -> dict[str, Any]:
    """Batch scoring (``gold_churn_scores``) of every complete day of the year with a registered
    model: the test suite's synthetic LightGBM over the exact feature columns, in a sqlite registry
    (the model's quality does not matter here, its size and the rows do)."""
    import mlflow
    from mlflow import MlflowClient

    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:  # the synthetic model of the test suite (tests/ is not installed)
        sys.path.insert(0, str(root))
    from tests.utils.serving import feature_frame, synthetic_histories, train_model
    from wikichurn.pipeline.spark import build_spark
    from wikichurn.serving.batch import mlflow_pointed_at, run_scoring
    from wikichurn.training.model import log_churn_model, model_input_example, write_model_dir

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    settings = _settings(workdir).model_copy(update={"mlflow_tracking_uri": uri})
    frame = feature_frame(synthetic_histories(n_domains=60, seed=5))
    booster, meta = train_model(frame, seed=1, rounds=200)
    with mlflow_pointed_at(uri):
        experiment = mlflow.create_experiment("bench-scoring", artifact_location=(workdir / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            meta["run_id"] = run.info.run_id
            info = log_churn_model(write_model_dir(workdir / "model", booster, meta), model_input_example(frame, meta))
        version = mlflow.register_model(info.model_uri, settings.serving.model_name)
        MlflowClient().set_registered_model_alias(
            settings.serving.model_name, settings.serving.model_alias, version.version
        )
    with build_spark(settings) as spark:
        started = time.monotonic()
        result = run_scoring(spark, settings)
        seconds = time.monotonic() - started
    return {"rows": result.rows, "days": len(result.days), "trees": booster.num_trees(), "job_seconds": seconds}


def _duckdb(workdir: Path) -> dict[str, Any]:
    """The same parse-and-aggregate, straight from the raw files, as a reference."""
    import duckdb

    out = workdir / "duckdb_gold.parquet"
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    pattern = str(workdir / "raw" / "*" / "*" / "projectviews-*")
    # Whole lines in (a delimiter that never occurs), then the same field checks as silver.
    con.execute(
        f"""
        COPY (
            WITH lines AS (
                SELECT line, filename
                FROM read_csv('{pattern}', delim='\x01', header=false, quote='', escape='',
                              columns={{'line': 'VARCHAR'}}, filename=true, auto_detect=false)
                WHERE line IS NOT NULL AND line <> ''
            ),
            fields AS (
                SELECT string_split(line, ' ') AS f, filename FROM lines
            ),
            parsed AS (
                SELECT f[1] AS domain_code, TRY_CAST(f[3] AS BIGINT) AS views,
                       strptime(regexp_extract(filename, 'projectviews-(\\d{{8}})', 1), '%Y%m%d')::DATE AS event_date,
                       filename
                FROM fields
                WHERE len(f) = 4 AND f[1] <> '' AND f[2] = '-'
            )
            SELECT domain_code, event_date, SUM(views) AS count_views, COUNT(DISTINCT filename) AS hours_present
            FROM parsed WHERE views >= 0
            GROUP BY ALL
        ) TO '{out}' (FORMAT parquet)
        """
    )
    rows = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()
    return {"gold_rows": int(rows[0]) if rows else 0}


@app.command()
def phase(
    name: str,
    workdir: Path,
    days: int = 365,
    domains: int = 1000,
) -> None:
    """Run one phase and print its measurements as JSON (used by ``run``)."""
    end = START + timedelta(days=days - 1)
    started = time.monotonic()
    if name == "simulate":
        data = _phase_simulate(workdir, days, domains)
    elif name == "ingest":
        data = _ingest(workdir, "mirror", START, end)
    elif name == "ingest_next":
        data = _ingest(workdir, "mirror_next", end + timedelta(days=1), end + timedelta(days=1))
    elif name in ("pipeline_cold", "pipeline_incremental"):
        data = _pipeline(workdir, "lake")
    elif name == "pipeline_cold_baseline":
        data = _pipeline(workdir, "lake_baseline")
    elif name == "features":
        data = _features(workdir)
    elif name == "features_numpy":
        data = _features_numpy(workdir)
    elif name == "score":
        data = _score(workdir)
    elif name == "duckdb":
        data = _duckdb(workdir)
    else:
        raise typer.BadParameter(f"unknown phase {name}")
    data.update(
        seconds=time.monotonic() - started, cpu_seconds=_cpu_seconds(), peak_rss_mb=_peak_rss_mb(), load_after=_load()
    )
    typer.echo(json.dumps(data))


# The baseline's cold run, DuckDB and the current cold run are neighbours, so the machine's load
# (shared with other jobs) is as alike as it can be for the ratios between them.
PHASES = (
    "simulate",
    "ingest",
    "pipeline_cold_baseline",
    "duckdb",
    "pipeline_cold",
    "features",
    "features_numpy",
    "score",
    "ingest_next",
    "pipeline_incremental",
)


def _export_baseline(rev: str, target: Path) -> Path:
    """The ``src/`` tree of commit ``rev`` of the repository in the working directory."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


def _run_phase(name: str, workdir: Path, days: int, domains: int, src: Path | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "phase", name, str(workdir), "--days", str(days), "--domains", str(domains)]
    env = {**os.environ, "RUST_LOG": "warn"}
    if src is not None:
        env["PYTHONPATH"] = str(src)  # ahead of the installed (editable) package
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise typer.Exit(1)
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


@app.command()
def run(
    workdir: Annotated[Path, typer.Option(help="scratch folder (deleted first)")] = Path("/tmp/wikichurn-bench"),
    days: int = 365,
    domains: int = 1000,
    results: Annotated[Path, typer.Option(help="JSON results file")] = Path("docs/benchmarks-pipeline.json"),
    baseline: Annotated[str | None, typer.Option(help="also time the cold run of this git commit")] = None,
    skip: Annotated[list[str] | None, typer.Option(help="phases to leave out (e.g. duckdb on a long run)")] = None,
) -> None:
    """Run every phase in order, each in a fresh process, and save the measurements."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    src = _export_baseline(baseline, workdir / "baseline") if baseline else None
    measured: dict[str, Any] = {}
    load_before = _load()
    for name in PHASES:
        if name in (skip or []) or (name == "pipeline_cold_baseline" and src is None):
            continue
        measured[name] = _run_phase(name, workdir, days, domains, src if name == "pipeline_cold_baseline" else None)
        typer.echo(f"{name:22s} {json.dumps(measured[name])}")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "days": days,
        "domains": domains,
        "baseline": baseline,
        "load_before": load_before,
        "load_after": _load(),
    }
    results.write_text(json.dumps({"meta": meta, "phases": measured}, indent=2) + "\n")
    typer.echo(f"results written to {results}")
    typer.echo(markdown(meta, measured))


def _row(phases: dict[str, Any], name: str, label: str, note: str) -> str | None:
    data = phases.get(name)
    if data is None:
        return None
    cells = (label, f"{data['seconds']:.1f}", f"{data['peak_rss_mb']:,.0f}", note.format(**data), data["load_after"])
    return "| " + " | ".join(cells) + " |"


def markdown(meta: dict[str, Any], phases: dict[str, Any]) -> str:
    """The results as the markdown tables of docs/benchmarks.md."""
    lines = phases.get("simulate", {}).get("lines", 0)
    notes = {
        "simulate": ("simulate the mirror", "{files:,} files, {lines:,} lines"),
        "ingest": ("ingest from the local HTTP mirror", "{downloaded:,} files"),
        "pipeline_cold_baseline": ("pipeline, cold, baseline code", "{bronze_rows:,} lines (job {job_seconds:.1f} s)"),
        "duckdb": ("DuckDB reference (parse + aggregate)", "{gold_rows:,} gold rows"),
        "pipeline_cold": (
            "pipeline, cold (bronze -> silver -> gold)",
            "{bronze_rows:,} lines (job {job_seconds:.1f} s)",
        ),
        "features": ("features (`gold_churn_features`)", "{rows:,} rows (job {job_seconds:.1f} s)"),
        "features_numpy": (
            "features, numpy compilation (same spec, same lake, no Spark)",
            "{rows:,} rows (job {job_seconds:.1f} s, of which reading {read_seconds:.1f} s)",
        ),
        "score": (
            "batch scoring (`gold_churn_scores`, every complete day)",
            "{rows:,} rows, {days} days, {trees} trees (job {job_seconds:.1f} s)",
        ),
        "ingest_next": ("ingest one new day", "{downloaded} files"),
        "pipeline_incremental": ("pipeline, incremental day", "{bronze_rows:,} lines (job {job_seconds:.1f} s)"),
    }
    out = [
        f"{meta['days']} days x {meta['domains']} domains ({lines:,} lines), {meta['machine']}, {meta['date']}; "
        f"load average before {meta.get('load_before', '?')}, after {meta.get('load_after', '?')}",
        "",
        "| phase | wall s (process) | peak RSS MB | notes | load after (1/5/15 min) |",
        "|---|---:|---:|---|---|",
    ]
    out += [row for name, (label, note) in notes.items() if (row := _row(phases, name, label, note))]
    duck = phases.get("duckdb")
    colds = [(n, phases[n]) for n in ("pipeline_cold_baseline", "pipeline_cold") if n in phases]
    if duck and colds:
        out += [
            "",
            "| cold run | job s | DuckDB s | job / DuckDB | process CPU s | DuckDB CPU s | CPU / DuckDB CPU |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, cold in colds:
            who = f"baseline `{meta.get('baseline')}`" if name.endswith("baseline") else "this code"
            ratio, cpu = cold["job_seconds"] / duck["seconds"], cold["cpu_seconds"] / duck["cpu_seconds"]
            out.append(
                f"| {who} | {cold['job_seconds']:.1f} | {duck['seconds']:.1f} | **{ratio:.1f}x** "
                f"| {cold['cpu_seconds']:.1f} | {duck['cpu_seconds']:.1f} | {cpu:.1f}x |"
            )
    for name, cold in colds:
        out += [
            "",
            f"Where the time of `{name}` went (the gap before each log line of the run):",
            "",
            "| up to the log line | wall s | CPU s | CPU share |",
            "|---|---:|---:|---:|",
        ]
        # The run's closing "phases: ..." line comes after the summary: nothing happens before it.
        gaps = {k: v for k, v in cold["log_gaps"].items() if not k.startswith("phases")}
        total = sum(cpu for _wall, cpu in gaps.values()) or 1.0
        out += [f"| {step} | {wall:.1f} | {cpu:.1f} | {cpu / total:.0%} |" for step, (wall, cpu) in gaps.items()]
        if cold.get("phases"):
            out += ["", "Its own step timers (wall s): " + ", ".join(f"{k} {v:.1f}" for k, v in cold["phases"].items())]
    return "\n".join(out)


def _table_rows(lake: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` without the columns that differ between runs by design."""
    run_specific = {"_ingested_at", "run_id", "run_at", "bronze_watermark"}
    df = lake.read(table)
    df = df.select(*sorted(c for c in df.columns if c not in run_specific))
    rows = []
    for row in df.collect():
        data = row.asDict()
        if "report" in data:  # the DQ report's JSON holds the run id and time
            report = json.loads(data["report"])
            report.pop("run_id")
            report.pop("run_at")
            data["report"] = json.dumps(report, sort_keys=True)
        rows.append(tuple(sorted(data.items())))
    return sorted(rows, key=repr)


@app.command()
def compare(
    baseline: Annotated[str, typer.Option(help="git commit whose code builds the reference lake")],
    workdir: Annotated[Path, typer.Option(help="scratch folder (deleted first)")] = Path("/tmp/wikichurn-compare"),
    days: int = 31,
    domains: int = 1000,
) -> None:
    """Build the lake with commit ``baseline`` and with this code from the same raw files, and check
    that every table holds the same rows (run ids and ingestion times aside)."""
    from wikichurn.core import tables
    from wikichurn.core.settings import Settings
    from wikichurn.pipeline.lakehouse.lake import Lake
    from wikichurn.pipeline.spark import build_spark

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    src = _export_baseline(baseline, workdir / "baseline")
    for name in ("simulate", "ingest"):
        _run_phase(name, workdir, days, domains)
    old = _run_phase("pipeline_cold_baseline", workdir, days, domains, src)
    new = _run_phase("pipeline_cold", workdir, days, domains)
    typer.echo(f"baseline job {old['job_seconds']:.1f} s, this code {new['job_seconds']:.1f} s")
    with build_spark(Settings()) as spark:
        lakes = [Lake(spark, _settings(workdir, name)) for name in ("lake_baseline", "lake")]
        differ = []
        for table in tables.PIPELINE_TABLES:
            before, after = (_table_rows(lake, table) for lake in lakes)
            same = before == after
            typer.echo(f"{table:34s} {len(before):>10,} rows  {'identical' if same else 'DIFFERENT'}")
            if not same:
                differ.append(table)
    if differ:
        raise typer.Exit(1)


@app.command()
def report(results: Path = Path("docs/benchmarks-pipeline.json")) -> None:
    """Print the markdown table of a results file."""
    data = json.loads(results.read_text())
    typer.echo(markdown(data["meta"], data["phases"]))


if __name__ == "__main__":
    app()
