"""Load benchmark of the scoring service: sustained runs, a hot reload in each, memory before and after.

For each concurrency (1, 8, 32) and batch size (1 and 100 domains of the feature snapshot), one
``wrk`` run of ``--duration`` seconds (60 by default) of keep-alive ``POST /score`` on 127.0.0.1
against ``wikichurn serve`` (uvicorn, one worker). Halfway through every run the registry alias is
moved to the other of two registered versions and ``POST /admin/reload`` swaps it in: the run must
still have zero non-2xx answers and zero socket errors. RSS of the server is read before the first
run and after each one; the 1-minute load average of the machine is recorded too (the machine is
shared: neighbours' work shows up in the latencies).

    python benchmarks/bench_load.py --duration 60 --out docs/benchmarks-load.json

Reuses the model/snapshot preparation, server and wrk helpers of ``bench_serving.py``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import BIN, ROOT, _free_port, _prepare, _rss_mb, _server, _wrk  # noqa: E402

CONCURRENCY = (1, 8, 32)
BATCHES = (1, 100)


def _register_second_version(uri: str, workdir: Path, name: str) -> str:
    """Another version of the same model (other seed), so a reload really swaps models."""
    import mlflow

    from tests.utils.serving import feature_frame, synthetic_histories, train_model
    from wikichurn.training.model import log_churn_model, model_input_example, write_model_dir

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    frame = feature_frame(synthetic_histories(n_domains=60, seed=5))
    booster, meta = train_model(frame, seed=2, rounds=40)
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("bench-serving").experiment_id) as run:
        meta["run_id"] = run.info.run_id
        info = log_churn_model(write_model_dir(workdir / "model2", booster, meta), model_input_example(frame, meta))
    return str(mlflow.register_model(info.model_uri, name).version)


def _reload_midway(base: str, uri: str, name: str, alias: str, version: str, delay_s: float, out: dict) -> None:
    from mlflow import MlflowClient

    time.sleep(delay_s)
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(name, alias, version)
    began = time.monotonic()
    answer = httpx.post(f"{base}/admin/reload", timeout=60)
    out.update(status=answer.status_code, seconds=round(time.monotonic() - began, 3), body=answer.json())


def main(
    duration: Annotated[int, typer.Option(min=5, help="seconds per run")] = 60,
    out: Annotated[Path, typer.Option(help="JSON results")] = ROOT / "docs" / "benchmarks-load.json",
    name: str = "wikichurn",
    alias: str = "production",
) -> None:
    """Run the load matrix and write the results."""
    if shutil.which("wrk") is None:
        raise typer.BadParameter("wrk is not installed (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    uri, snapshot, info = _prepare(workdir, name, alias, rounds=200)
    versions = ["1", _register_second_version(uri, workdir, name)]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIKICHURN_")}
    env.update(
        MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri, MLFLOW_DISABLE_TELEMETRY="true",
        WIKICHURN_SERVING__SNAPSHOT_PATH=str(snapshot), WIKICHURN_SERVING__MODEL_CACHE_DIR=str(workdir / "cache"),
        WIKICHURN_SERVING__MAX_BATCH="1000",
    )  # fmt: skip
    import pandas as pd

    domains = list(pd.read_parquet(snapshot)["domain_code"])
    bodies = {
        b: json.dumps({"instances": [{"domain_code": domains[i % len(domains)]} for i in range(b)]}) for b in BATCHES
    }
    command = [str(BIN / "wikichurn"), "serve", "--port", str(port)]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "tool": "wrk"},
        "trees": info["trees"],
        "duration_s": duration,
        "runs": [],
    }
    with _server(command, env, f"{base}/ready", workdir / "serve.log") as server:
        _wrk(f"{base}/score", bodies[1], 8, 2, workdir)  # warm-up: connections, lazy imports
        results["ready_s"] = server["ready_s"]
        results["rss_mb_start"] = _rss_mb(server["pid"])
        served = 0
        for batch in BATCHES:
            for concurrency in CONCURRENCY:
                served = 1 - served
                reload: dict[str, Any] = {}
                mover = threading.Thread(
                    target=_reload_midway,
                    args=(base, uri, name, alias, versions[served], duration / 2, reload),
                )
                load_before = os.getloadavg()[0]
                mover.start()
                run = _wrk(f"{base}/score", bodies[batch], concurrency, duration, workdir)
                mover.join()
                model = httpx.get(f"{base}/model", timeout=10).json()
                run.update(
                    batch=batch, concurrency=concurrency, rows_per_s=round(run["rps"] * batch),
                    reload=reload, served_version_after=model["version"], rss_mb_after=_rss_mb(server["pid"]),
                    load_avg_1m=[round(load_before, 2), round(os.getloadavg()[0], 2)],
                )  # fmt: skip
                results["runs"].append(run)
                typer.echo(
                    json.dumps({k: v for k, v in run.items() if k != "reload"} | {"reload_s": reload.get("seconds")})
                )
        results["rss_mb_end"] = _rss_mb(server["pid"])
    out.write_text(json.dumps(results, indent=2) + "\n")
    typer.echo(markdown(results))
    shutil.rmtree(workdir, ignore_errors=True)


def markdown(results: dict[str, Any]) -> str:
    """The results as the table of docs/reliability.md."""
    lines = [
        "| batch | concurrency | req/s | domains/s | p50 ms | p99 ms | non-2xx | socket errors | reload (s, status) "
        "| RSS after MB | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in results["runs"]:
        reload = r["reload"]
        lines.append(
            f"| {r['batch']} | {r['concurrency']} | {r['rps']:,.0f} | {r['rows_per_s']:,} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['non_2xx']} | {r['socket_errors'] or 'none'} "
            f"| {reload.get('seconds')} s, {reload.get('status')} -> v{r['served_version_after']} "
            f"| {r['rss_mb_after']} | {r['load_avg_1m'][0]} -> {r['load_avg_1m'][1]} |"
        )
    lines.append(f"\nRSS {results['rss_mb_start']} MB after warm-up, {results['rss_mb_end']} MB at the end.")
    return "\n".join(lines)


if __name__ == "__main__":
    typer.run(main)
