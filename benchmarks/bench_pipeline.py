"""Benchmark of the data platform on one simulated year (issue: ingest, cold run, incremental day).

Each phase runs in its own process so its peak memory (RSS, Sail's engine included: it runs
in-process) is its own. Results go to a JSON file and a markdown section of docs/benchmarks.md.

    python benchmarks/bench_pipeline.py run --days 365 --domains 1000
"""

from __future__ import annotations

import json
import os
import platform
import resource
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


def _settings(workdir: Path) -> Any:
    from wikichurn.core.settings import Settings

    return Settings(raw_uri=str(workdir / "raw"), lake_uri=str(workdir / "lake"))


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


def _pipeline(workdir: Path) -> dict[str, Any]:
    from wikichurn.pipeline.lakehouse.run import run_pipeline
    from wikichurn.pipeline.spark import build_spark

    settings = _settings(workdir)
    with build_spark(settings) as spark:
        started = time.monotonic()
        result = run_pipeline(spark, settings, features=False)
        seconds = time.monotonic() - started
    return {"files_new": result.files_new, "bronze_rows": result.bronze_rows, "job_seconds": seconds}


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
        data = _pipeline(workdir)
    elif name == "features":
        data = _features(workdir)
    elif name == "duckdb":
        data = _duckdb(workdir)
    else:
        raise typer.BadParameter(f"unknown phase {name}")
    data.update(seconds=time.monotonic() - started, peak_rss_mb=_peak_rss_mb())
    typer.echo(json.dumps(data))


PHASES = ("simulate", "ingest", "pipeline_cold", "features", "duckdb", "ingest_next", "pipeline_incremental")


@app.command()
def run(
    workdir: Annotated[Path, typer.Option(help="scratch folder (deleted first)")] = Path("/tmp/wikichurn-bench"),
    days: int = 365,
    domains: int = 1000,
    results: Annotated[Path, typer.Option(help="JSON results file")] = Path("docs/benchmarks-pipeline.json"),
) -> None:
    """Run every phase in order, each in a fresh process, and save the measurements."""
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    measured: dict[str, Any] = {}
    for name in PHASES:
        cmd = [sys.executable, __file__, "phase", name, str(workdir), "--days", str(days), "--domains", str(domains)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "RUST_LOG": "warn"})
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise typer.Exit(1)
        measured[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        typer.echo(f"{name:22s} {json.dumps(measured[name])}")
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "days": days,
        "domains": domains,
    }
    results.write_text(json.dumps({"meta": meta, "phases": measured}, indent=2) + "\n")
    typer.echo(f"results written to {results}")
    typer.echo(markdown(meta, measured))


def markdown(meta: dict[str, Any], phases: dict[str, Any]) -> str:
    """The results as the markdown table of docs/benchmarks.md."""
    cold, duck = phases["pipeline_cold"], phases["duckdb"]
    ing, inc = phases["ingest"], phases["pipeline_incremental"]
    lines = phases["simulate"]["lines"]
    job = cold["job_seconds"]
    rows = [
        (
            "simulate one year (mirror)",
            phases["simulate"]["seconds"],
            phases["simulate"]["peak_rss_mb"],
            f"{phases['simulate']['files']:,} files, {lines:,} lines",
        ),
        (
            "ingest from the local HTTP mirror",
            phases["ingest"]["seconds"],
            phases["ingest"]["peak_rss_mb"],
            f"{ing['downloaded']:,} files, {ing['downloaded'] / ing['seconds']:.0f} files/s",
        ),
        (
            "pipeline, cold (bronze -> silver -> gold)",
            cold["seconds"],
            cold["peak_rss_mb"],
            f"{cold['bronze_rows']:,} lines, {cold['bronze_rows'] / job:,.0f} lines/s (job {job:.1f} s)",
        ),
        (
            "DuckDB reference (parse + aggregate)",
            duck["seconds"],
            duck["peak_rss_mb"],
            f"{lines / duck['seconds']:,.0f} lines/s; pipeline job / DuckDB = {job / duck['seconds']:.1f}x",
        ),
        (
            "features (gold_churn_features)",
            phases["features"]["seconds"],
            phases["features"]["peak_rss_mb"],
            f"{phases['features']['rows']:,} rows (job {phases['features']['job_seconds']:.1f} s), "
            f"base rate {phases['features']['positive_rate']:.1%}",
        ),
        (
            "ingest one new day",
            phases["ingest_next"]["seconds"],
            phases["ingest_next"]["peak_rss_mb"],
            f"{phases['ingest_next']['downloaded']} files",
        ),
        (
            "pipeline, incremental day",
            phases["pipeline_incremental"]["seconds"],
            phases["pipeline_incremental"]["peak_rss_mb"],
            f"{inc['bronze_rows']:,} lines (job {inc['job_seconds']:.1f} s)",
        ),
    ]
    out = [
        f"{meta['days']} days x {meta['domains']} domains, {meta['machine']}, {meta['date']}",
        "",
        "| phase | wall s (process) | peak RSS MB | notes |",
        "|---|---:|---:|---|",
    ]
    out += [f"| {name} | {sec:.1f} | {rss:,.0f} | {note} |" for name, sec, rss, note in rows]
    return "\n".join(out)


@app.command()
def report(results: Path = Path("docs/benchmarks-pipeline.json")) -> None:
    """Print the markdown table of a results file."""
    data = json.loads(results.read_text())
    typer.echo(markdown(data["meta"], data["phases"]))


if __name__ == "__main__":
    app()
