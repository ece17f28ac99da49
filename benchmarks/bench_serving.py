"""Benchmark of the scoring service against ``mlflow models serve`` on the same registered model.

Batches of 1, 10 and 100 instances (``--batch``), in both request forms of this service (uvicorn,
one worker): (a) domains of the feature snapshot (``{"instances": [{"domain_code": ...}]}``) and (b)
the same domains with their 70-day histories (``{"domain_code": ..., "daily_views": [...]}``); and
the same model version served by ``mlflow models serve -m models:/wikichurn@production
--env-manager local -w 1`` with the same number of feature rows (``{"dataframe_records": [...]}``
to ``/invocations``: a pyfunc model takes feature rows, so for mlflow the client computes the
features of form (b) itself and both forms are the same request). Each at concurrency 1 (and form
(a) of one instance also at the other ``--concurrency`` values), with ``wrk`` (or ``hey``) on
127.0.0.1 for a fixed duration, keep-alive connections as a client library would use them. The
service's own compute time per request (parsing excluded: scoring + encoding) is read from its
``Server-Timing`` header over ``--samples`` sequential requests.

The model is trained here on synthetic histories with the exact FEATURE_COLUMNS (the test suite's
generator) and registered in a temporary sqlite store, unless ``--tracking-uri`` names a registry
that already has ``<name>@<alias>`` and ``--snapshot`` a feature snapshot.

    python benchmarks/bench_serving.py run --duration 10
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (mlflow serve runs uvicorn in a child)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.is_file():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        status = Path(f"/proc/{p}/status")
        if status.is_file():
            match = re.search(r"VmRSS:\s+(\d+) kB", status.read_text())
            total += int(match.group(1)) / 1024 if match else 0.0
    return round(total, 1)


# -- the model and the snapshot ---------------------------------------------------------------


def _prepare(workdir: Path, name: str, alias: str, rounds: int) -> tuple[str, Path, dict[str, Any]]:
    """Train and register a synthetic model; write a snapshot. Returns (tracking URI, snapshot, info)."""
    import mlflow
    from mlflow import MlflowClient

    if str(ROOT) not in sys.path:  # the synthetic model of the test suite (tests/ is not installed)
        sys.path.insert(0, str(ROOT))
    from tests.utils.serving import feature_frame, synthetic_histories, train_model, write_snapshot
    from wikichurn.training.model import log_churn_model, model_input_example, write_model_dir

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    histories = synthetic_histories(n_domains=60, seed=5)
    frame = feature_frame(histories)
    booster, meta = train_model(frame, seed=1, rounds=rounds)
    experiment = mlflow.create_experiment("bench-serving", artifact_location=(workdir / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        meta["run_id"] = run.info.run_id
        model_dir = write_model_dir(workdir / "model", booster, meta)
        info = log_churn_model(model_dir, model_input_example(frame, meta))
    version = mlflow.register_model(info.model_uri, name)
    MlflowClient().set_registered_model_alias(name, alias, version.version)
    snapshot = workdir / "features_snapshot.parquet"
    write_snapshot(snapshot, histories)
    domain = next(code for code, h in histories.items() if min(h) == min(min(x) for x in histories.values()))
    history = [{"date": d.isoformat(), "views": v} for d, v in histories[domain].items()]
    domains = [domain, *(code for code in histories if code != domain)]
    histories_payload = {
        code: [{"date": d.isoformat(), "views": v} for d, v in histories[code].items()] for code in domains
    }
    info = {"trees": booster.num_trees(), "domain": domain, "history": history, "domains": domains}
    return uri, snapshot, {**info, "histories": histories_payload}


def _feature_rows(snapshot: Path, domains: list[str]) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_parquet(snapshot).drop(columns=["event_date"]).set_index("domain_code", drop=False)
    rows = []
    for domain in domains:
        row = frame.loc[domain].to_dict()
        rows.append({k: (None if v != v else v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return rows


def _server_timing(url: str, body: str, samples: int) -> dict[str, float]:
    """p50 / p99 of the service's own ``Server-Timing`` (ms) over sequential requests."""
    values = []
    with httpx.Client(timeout=30) as client:
        for _ in range(samples):
            reply = client.post(url, content=body, headers={"content-type": "application/json"})
            reply.raise_for_status()
            values.append(float(reply.headers["server-timing"].split("dur=")[1]))
    values.sort()
    return {"p50": statistics.median(values), "p99": values[max(0, int(len(values) * 0.99) - 1)]}


# -- servers ----------------------------------------------------------------------------------


@contextmanager
def _server(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[dict[str, Any]]:
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = started + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready after 180 s")
            time.sleep(0.1)
        yield {"pid": process.pid, "ready_s": round(time.monotonic() - started, 2)}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- load generators --------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(url: str, body: str, concurrency: int, duration: int, workdir: Path) -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    threads = min(concurrency, 2)
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout

    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        assert match, text
        return float(match.group(1)) * _UNITS[match.group(2)]

    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def _hey(url: str, body: str, concurrency: int, duration: int, workdir: Path) -> dict[str, Any]:
    payload = workdir / "body.json"
    payload.write_text(body)
    done = subprocess.run(
        ["hey", "-z", f"{duration}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json"]
        + ["-D", str(payload), url],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout

    def latency(pct: str) -> float:
        return float(re.search(rf"{pct}%% in ([\d.]+) secs", text).group(1)) * 1e3  # type: ignore[union-attr]

    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", text))
    return {
        "requests": sum(int(n) for n in codes.values()),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": sum(int(n) for code, n in codes.items() if not code.startswith("2")),
        "socket_errors": "",
    }


def _load(
    tool: str, url: str, body: str, concurrency: int, duration: int, workdir: Path, repeat: int
) -> dict[str, Any]:
    """``repeat`` runs after a 1 s warm-up; the medians, and each run (the machine may be shared)."""
    runner = _wrk if tool == "wrk" else _hey
    runner(url, body, concurrency, 1, workdir)  # connections, caches, lazy imports
    runs = [runner(url, body, concurrency, duration, workdir) for _ in range(repeat)]
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "repeat": repeat,
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "p99_ms_range": [min(r["p99_ms"] for r in runs), max(r["p99_ms"] for r in runs)],
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "runs": runs,
    }


# -- the benchmark ----------------------------------------------------------------------------


@app.callback()
def _main() -> None:
    """Scoring service benchmarks."""


@app.command()
def run(
    duration: Annotated[int, typer.Option(help="seconds per load run")] = 10,
    concurrency: Annotated[list[int], typer.Option(help="connections (repeat the option)")] = [1, 8],  # noqa: B006
    batch: Annotated[list[int], typer.Option(help="instances per request (repeat the option)")] = [1, 10, 100],  # noqa: B006
    samples: Annotated[int, typer.Option(help="sequential requests read for Server-Timing")] = 300,
    repeat: Annotated[int, typer.Option(min=1, help="runs per configuration (medians are reported)")] = 3,
    tool: Annotated[str, typer.Option(help="wrk | hey | auto")] = "auto",
    rounds: Annotated[int, typer.Option(help="boosting rounds of the synthetic model")] = 200,
    name: Annotated[str, typer.Option(help="registered model name")] = "wikichurn",
    alias: Annotated[str, typer.Option(help="alias to serve")] = "production",
    tracking_uri: Annotated[str | None, typer.Option(help="existing registry (skips training)")] = None,
    snapshot: Annotated[Path | None, typer.Option(help="feature snapshot (with --tracking-uri)")] = None,
    domain: Annotated[str | None, typer.Option(help="domain to score (with --tracking-uri)")] = None,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("data/bench/serving.json"),
) -> None:
    """Run the benchmark and print a markdown table."""
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "hey" if shutil.which("hey") else ""
    if tool not in ("wrk", "hey") or not shutil.which(tool):
        raise typer.BadParameter("install wrk or hey (apt-get install -y wrk)", param_hint="--tool")
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        results = _run(
            workdir,
            duration,
            concurrency,
            batch,
            samples,
            repeat,
            tool,
            rounds,
            name,
            alias,
            tracking_uri,
            snapshot,
            domain,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nresults: {out}")


def _run(
    workdir: Path,
    duration: int,
    concurrencies: list[int],
    batches: list[int],
    samples: int,
    repeat: int,
    tool: str,
    rounds: int,
    name: str,
    alias: str,
    tracking_uri: str | None,
    snapshot: Path | None,
    domain: str | None,
) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if tracking_uri is None:
        tracking_uri, snapshot, info = _prepare(workdir, name, alias, rounds)
    elif snapshot is None or domain is None:
        raise typer.BadParameter("--tracking-uri needs --snapshot and --domain")
    else:
        info = {"domain": domain}
    domain = info["domain"]
    domains = info.get("domains", [domain])
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIKICHURN_")}
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_REGISTRY_URI=tracking_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    ours_port, mlflow_port = _free_port(), _free_port()
    ours_env = {
        **env,
        "WIKICHURN_SERVING__MODEL_NAME": name,
        "WIKICHURN_SERVING__MODEL_ALIAS": alias,
        "WIKICHURN_SERVING__SNAPSHOT_PATH": str(snapshot),
        "WIKICHURN_SERVING__MODEL_CACHE_DIR": str(workdir / "cache"),
        "WIKICHURN_SERVING__PORT": str(ours_port),
    }
    ours_url = f"http://127.0.0.1:{ours_port}"
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"

    def pick(n: int) -> list[str]:
        return [domains[i % len(domains)] for i in range(n)]

    def body(form: str, n: int) -> str:
        if form == "a":
            return json.dumps({"instances": [{"domain_code": d} for d in pick(n)]})
        return json.dumps({"instances": [{"domain_code": d, "daily_views": info["histories"][d]} for d in pick(n)]})

    forms = ["a", "b"] if "histories" in info else ["a"]
    rows = {n: _feature_rows(snapshot, pick(n)) for n in batches}
    runs: list[dict[str, Any]] = []
    servers: dict[str, Any] = {}

    def configs() -> list[tuple[int, int]]:
        """(batch, concurrency): every batch at concurrency 1, one instance at the others too."""
        return [(n, 1) for n in batches] + [(1, c) for c in concurrencies if c != 1]

    ours_cmd = [sys.executable, "-c", "from wikichurn.serving.main import run; run()"]
    ours_scores: dict[str, float] = {}
    with _server(ours_cmd, ours_env, f"{ours_url}/ready", workdir / "ours.log") as ours:
        for form in forms:
            reply = httpx.post(f"{ours_url}/score", content=body(form, 1), headers={"content-type": "application/json"})
            ours_scores[form] = reply.json()["results"][0]["risk_score"]
            for n, c in configs():
                if form == "b" and c != 1:
                    continue
                url = f"{ours_url}/score"
                load = _load(tool, url, body(form, n), c, duration, workdir, repeat)
                timing = _server_timing(url, body(form, n), samples) if c == 1 else None
                runs.append({"server": "wikichurn", "form": form, "batch": n, **load, "server_ms": timing})
        servers["wikichurn"] = {**ours, "rss_mb_after": _rss_mb(ours["pid"])}

    mlflow_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@{alias}", "--env-manager", "local"]
    mlflow_cmd += ["-h", "127.0.0.1", "-p", str(mlflow_port), "-w", "1"]
    with _server(mlflow_cmd, env, f"{mlflow_url}/ping", workdir / "mlflow.log") as served:
        url = f"{mlflow_url}/invocations"
        reply = httpx.post(
            url,
            content=json.dumps({"dataframe_records": rows[batches[0]][:1]}),
            headers={"content-type": "application/json"},
        )
        mlflow_score = reply.json()["predictions"][0]["risk_score"]
        for n, c in configs():
            load = _load(tool, url, json.dumps({"dataframe_records": rows[n]}), c, duration, workdir, repeat)
            runs.append({"server": "mlflow models serve", "form": "rows", "batch": n, **load, "server_ms": None})
        servers["mlflow models serve"] = {**served, "rss_mb_after": _rss_mb(served["pid"])}

    ours_score = ours_scores["a"]
    if "b" in ours_scores and abs(ours_scores["b"] - ours_score) > 1e-9:
        raise RuntimeError(f"history and snapshot forms disagree: {ours_scores['b']} != {ours_score}")
    if abs(ours_score - mlflow_score) > 1e-12:
        raise RuntimeError(f"the two servers disagree: {ours_score} != {mlflow_score}")
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "tool": tool,
        "model": {"name": name, "alias": alias, "trees": info.get("trees"), "domain": domain},
        "same_score": ours_score,
        "servers": servers,
        "runs": runs,
    }


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown section (for docs/benchmarks.md)."""
    rows = results["runs"]
    base = {(r["batch"], r["concurrency"]): r for r in rows if r["server"] == "mlflow models serve"}
    lines = [
        "| server | request | batch | concurrency | req/s | instances/s | p50 ms | p99 ms | p99 range ms "
        "| server p50 / p99 ms | non-2xx | vs mlflow |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"a": "snapshot (a)", "b": "70-day history (b)", "rows": "dataframe_records"}
    for r in rows:
        ref = base.get((r["batch"], r["concurrency"]))
        ratio = f"{r['rps'] / ref['rps']:.1f}x" if ref and r["server"] == "wikichurn" else ""
        low, high = r["p99_ms_range"]
        timing = r.get("server_ms")
        server = f"{timing['p50']:.2f} / {timing['p99']:.2f}" if timing else ""
        lines.append(
            f"| {r['server']} | {names[r['form']]} | {r['batch']} | {r['concurrency']} | {r['rps']:,.0f} | "
            f"{r['rps'] * r['batch']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {low:.2f}-{high:.2f} | "
            f"{server} | {r['non_2xx']} | {ratio} |"
        )
    servers = results["servers"]
    model = results["model"]
    lines += [
        "",
        f"{results['tool']}, medians of {results['runs'][0]['repeat']} runs of {results['runs'][0]['duration_s']} s "
        "after a 1 s warm-up, keep-alive, 127.0.0.1; "
        f"{results['machine']['cpus']} CPUs, Python {results['machine']['python']}. Model: {model['trees']} trees, "
        f"same version for both servers (same score: {results['same_score']:.12f}).",
        "Start-up to ready: "
        + ", ".join(
            f"{name} {s['ready_s']} s (RSS {s['rss_mb_after']} MB after the runs)" for name, s in servers.items()
        )
        + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    app()
