"""Outages survived: the dumps source, the S3 server and the MLflow registry going away and back.

Every server here is started by the test on 127.0.0.1 and stopped (SIGKILL: an outage, not a
clean shutdown) in the middle of the work, then started again on the same ports and data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import pytest

from tests.fixtures.mirror import SMALL_MIRROR_END, SMALL_MIRROR_START
from tests.fixtures.s3 import DUMMY_KEY_ID, DUMMY_SECRET, REGION
from tests.reliability.faults import FaultyFront, restartable_weed
from tests.reliability.helpers import cli_env, copy_raw, start_wikichurn, wikichurn
from tests.utils.serving import (
    MODEL_NAME,
    Registry,
    feature_frame,
    free_port,
    mlflow_pointed_at,
    synthetic_histories,
    write_snapshot,
)
from wikichurn.core.settings import IngestSettings, Settings
from wikichurn.pipeline.ingest.land import ingest
from wikichurn.training.server import tracking_server

pytestmark = pytest.mark.slow

DAY = date(2024, 1, 3)


def mirror_files(mirror: Path, day: date | None = None) -> dict[str, bytes]:
    stamp = f"{day:%Y%m%d}" if day else ""
    return {str(p.relative_to(mirror)): p.read_bytes() for p in sorted(mirror.glob(f"*/*/projectviews-{stamp}*"))}


def landed(raw: Path) -> dict[str, bytes]:
    return {str(p.relative_to(raw)): p.read_bytes() for p in sorted(raw.glob("*/*/projectviews-*"))}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- the dumps source answering 503 ------------------------------------------------------------


def test_source_503_for_a_while_is_ridden_out(small_mirror: Path, mirror_url: str, tmp_path: Path) -> None:
    settings = Settings(ingest=IngestSettings(retries=4, backoff_s=0.2, concurrency=4))
    with FaultyFront(mirror_url) as front:
        front.fail_for(1.5)  # shorter than the retry budget (0.2 + 0.4 + 0.8 + 1.6 s)
        summary = ingest(front.url, str(tmp_path / "raw"), DAY, DAY, settings)
    assert front.refused > 0
    assert (summary.listed, summary.downloaded, summary.failed) == (24, 24, 0), summary.failures
    assert landed(tmp_path / "raw") == mirror_files(small_mirror, DAY)


def test_source_503_beyond_the_budget_is_reported_then_completed(
    small_mirror: Path, mirror_url: str, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    env = cli_env(raw, tmp_path / "lake", WIKICHURN_INGEST__RETRIES="2", WIKICHURN_INGEST__BACKOFF_S="0.1")
    with FaultyFront(mirror_url, delay_s=0.05) as front:
        # The listing gets through; the outage starts while files are being fetched and outlasts the budget.
        args = ("ingest", "--source", front.url, "--start", f"{DAY}", "--end", f"{DAY}", "--dest", str(raw))
        proc = start_wikichurn(*args, env=env, cwd=tmp_path)
        wait_until(lambda: front.served >= 6, 30, "the first downloads")
        front.fail_for(30)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        report = " ".join((out + err).split())
        failed = int(report.split(" failed")[0].rsplit(" ", 1)[-1])
        assert failed > 0 and "FAILED projectviews-20240103-" in report and "HTTP 503" in report
        assert "Traceback" not in report
        assert len(landed(raw)) == 24 - failed  # what landed is whole; the rest is named
        front.fail_for(0)
        again = wikichurn(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{failed} downloaded" in " ".join(again.stdout.split())
    assert landed(raw) == mirror_files(small_mirror, DAY)


# -- S3 down mid-ingest and mid-run ------------------------------------------------------------


def s3_env(endpoint: str, raw: str, lake: str, **extra: str) -> dict[str, str]:
    return cli_env(
        raw, lake, AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION, AWS_ACCESS_KEY_ID=DUMMY_KEY_ID,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET, **extra,
    )  # fmt: skip


@pytest.mark.s3
def test_s3_outage_mid_ingest_and_mid_run(small_mirror: Path, mirror_url: str, tmp_path: Path) -> None:
    with restartable_weed(tmp_path / "weed") as weed, FaultyFront(mirror_url, delay_s=0.03) as front:
        weed.client.create_bucket(Bucket="lake")
        raw, lake = "s3://lake/raw", "s3://lake/lake"
        env = s3_env(weed.endpoint_url, raw, lake, WIKICHURN_INGEST__RETRIES="1", WIKICHURN_INGEST__BACKOFF_S="0.1")
        args = ("ingest", "--source", front.url, "--start", f"{SMALL_MIRROR_START}", "--end", f"{SMALL_MIRROR_END}")

        # 1. The S3 server dies while files are being written.
        proc = start_wikichurn(*args, env=env, cwd=tmp_path)
        wait_until(lambda: front.served >= 30, 60, "the first uploads")
        weed.stop()
        out, err = proc.communicate(timeout=180)
        report = " ".join((out + err).split())
        assert proc.returncode == 1 and "Traceback" not in report, report[-3000:]
        weed.start()
        done = wikichurn(*args, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        expected = mirror_files(small_mirror)
        pages = weed.client.get_paginator("list_objects_v2").paginate(Bucket="lake", Prefix="raw/")
        stored = {o["Key"][4:]: o["Size"] for page in pages for o in page.get("Contents", [])}
        assert stored == {key: len(data) for key, data in expected.items()}  # every file whole, none twice

        # 2. The S3 server dies in the middle of a pipeline run.
        run = start_wikichurn("pipeline", "run", env=env, cwd=tmp_path)
        # Aimed by the run's own log line, not a sleep (a fast machine finished the run first):
        # the lease is on S3 and the session is up; listing and bronze come next, against no S3.
        assert run.stderr is not None
        seen = []
        for line in run.stderr:
            seen.append(line)
            if "sail server listening" in line:
                break
        weed.stop()
        began = time.monotonic()
        out, err = run.communicate(timeout=400)
        failed_after_s = time.monotonic() - began
        message = " ".join(("".join(seen) + out + err).split())
        weed.start()
        assert run.returncode != 0, message[-2000:]
        assert "Traceback" not in message and "pipeline run failed" in message, message[-3000:]
        again = wikichurn("pipeline", "run", "--json", env=env, cwd=tmp_path, timeout=400)
        assert again.returncode == 0, again.stderr[-3000:]
        counts = json.loads(again.stdout)["table_counts"]

    # Nothing lost, nothing twice: the same tables as an uninterrupted run on a folder lake.
    reference = wikichurn(
        "pipeline", "run", "--json", env=cli_env(copy_raw(small_mirror, tmp_path / "ref-raw"), tmp_path / "ref-lake"),
        cwd=tmp_path,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert counts == json.loads(reference.stdout)["table_counts"]
    print(f"\npipeline run failed {failed_after_s:.1f} s after the S3 server went down")


# -- the MLflow registry down while the API serves -----------------------------------------------


def test_api_keeps_serving_through_a_registry_outage(tmp_path: Path) -> None:
    histories = synthetic_histories()
    snapshot = tmp_path / "features_snapshot.parquet"
    write_snapshot(snapshot, {code: histories[code] for code in list(histories)[:12]})
    domain = next(iter(histories))
    port = free_port()
    root = tmp_path / "mlflow"
    outage = tracking_server(root, port=port)
    server = outage.__enter__()
    api = None
    try:
        with mlflow_pointed_at(server.url):
            registry = Registry(uri=server.url, root=tmp_path, frame=feature_frame(histories), histories=histories)
            registry.register(MODEL_NAME, seed=1)
            api_port = free_port()
            env = registry.subprocess_env()
            env.update(
                WIKICHURN_SERVING__SNAPSHOT_PATH=str(snapshot),
                WIKICHURN_SERVING__MODEL_CACHE_DIR=str(tmp_path / "cache"),
                WIKICHURN_SERVING__RELOAD_INTERVAL_S="1",
                # A registry call fails fast instead of retrying for minutes.
                MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                MLFLOW_HTTP_REQUEST_TIMEOUT="3",
            )
            api = start_wikichurn("serve", "--port", str(api_port), env=env, cwd=tmp_path)
            base = f"http://127.0.0.1:{api_port}"
            http = httpx.Client(base_url=base, timeout=10)

            def up() -> bool:
                try:
                    return http.get("/ready").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(up, 90, "the API")
            body = {"instances": [{"domain_code": domain}]}
            assert http.post("/score", json=body).status_code == 200

            outage.__exit__(None, None, None)  # the registry goes away
            deadline = time.monotonic() + 30
            statuses: list[int] = []
            model: dict = {}
            while time.monotonic() < deadline:
                statuses.append(http.post("/score", json=body).status_code)
                statuses.append(http.get("/ready").status_code)
                model = http.get("/model").json()
                if model.get("registry_error") and len(statuses) > 20:
                    break
                time.sleep(0.1)
            assert set(statuses) == {200}, statuses
            assert model["version"] == "1" and "unreachable" in model["registry_error"]
            assert api.poll() is None

            # Back: the next periodic check resumes, and a newly promoted version is picked up.
            with tracking_server(root, port=port):
                registry.register(MODEL_NAME, seed=2)
                wait_until(lambda: http.get("/model").json()["version"] == "2", 60, "the new version")
                assert http.get("/model").json()["registry_error"] is None
                assert http.post("/score", json=body).status_code == 200
    finally:
        if api is not None and api.poll() is None:
            api.terminate()
            api.wait(timeout=20)
        outage.__exit__(None, None, None)
