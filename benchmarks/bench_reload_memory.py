"""Memory of ``wikichurn serve`` over many hot reloads: does RSS grow with every model swap?

Two versions of the synthetic 200-tree model (the test suite's generator) in a sqlite registry; the
alias is moved to the other version and ``POST /admin/reload`` swaps it in, ``--reloads`` times;
the server's RSS is read after each. Run with and without ``MALLOC_ARENA_MAX`` to see glibc's
per-thread arenas (each reload loads the model in a fresh daemon thread).

    python benchmarks/bench_reload_memory.py --reloads 24 [--malloc-arena-max 2]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import httpx
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import _register_second_version  # noqa: E402
from bench_serving import BIN, _free_port, _prepare, _rss_mb, _server  # noqa: E402


def main(
    reloads: int = 24,
    malloc_arena_max: Annotated[int | None, typer.Option(help="MALLOC_ARENA_MAX of the server")] = None,
) -> None:
    """Print the server's RSS (MB) after start and after every reload, as JSON."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="wikichurn-reload-") as tmp:
        work = Path(tmp)
        uri, snapshot, _info = _prepare(work, "wikichurn", "production", 200)
        versions = ["1", _register_second_version(uri, work, "wikichurn")]
        port = _free_port()
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
        env["WIKICHURN_SERVING__SNAPSHOT_PATH"] = str(snapshot)
        if malloc_arena_max:
            env["MALLOC_ARENA_MAX"] = str(malloc_arena_max)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        command = [str(BIN / "wikichurn"), "serve", "--port", str(port)]
        with _server(command, env, f"http://127.0.0.1:{port}/ready", work / "serve.log") as server:
            rss = [round(_rss_mb(server["pid"]), 1)]
            for k in range(reloads):
                client.set_registered_model_alias("wikichurn", "production", versions[(k + 1) % 2])
                httpx.post(f"http://127.0.0.1:{port}/admin/reload", timeout=60).raise_for_status()
                rss.append(round(_rss_mb(server["pid"]), 1))
    typer.echo(json.dumps({"malloc_arena_max": malloc_arena_max, "reloads": reloads, "rss_mb": rss}))


if __name__ == "__main__":
    typer.run(main)
