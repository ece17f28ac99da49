"""Checks of the running docker-compose stack, from the host (run by scripts/stack-test).

Every check talks to a published port, as a user would: the raw zone and the Delta tables on the s3
service (read with the independent ``deltalake`` reader), the registry of the mlflow service, the
api's ``POST /score`` for domains the lake knows, and the warehouse tables in the db service.
Prints one JSON summary (also written to ``--out``); exits 1 with the failed check's message.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from wikichurn.core import tables

# The data tables (the DQ reports hold run stamps), from the data contract.
TABLES = (*(t for t in tables.PIPELINE_TABLES if t != tables.SILVER_DQ_REPORTS), tables.GOLD_FEATURES)
RAW_NAME = re.compile(r"^raw/\d{4}/\d{4}-\d{2}/projectviews-\d{8}-\d{6}$")


class CheckFailed(Exception):
    """One check of the stack did not hold."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def check_s3(endpoint: str, bucket: str, key_id: str, secret: str, region: str) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from deltalake import DeltaTable

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}),
    )
    raw = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/")
        for obj in page.get("Contents", [])
    ]
    _require(len(raw) > 0, f"no raw files under s3://{bucket}/raw/")
    strangers = [k for k in raw if not RAW_NAME.match(k)]
    _require(not strangers, f"unexpected keys in the raw zone: {strangers[:5]}")

    options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": region,
        "AWS_ALLOW_HTTP": "true",
    }
    rows: dict[str, int] = {}
    for table in TABLES:
        uri = f"s3://{bucket}/lake/{table}"
        try:
            rows[table] = DeltaTable(uri, storage_options=options).to_pyarrow_dataset().count_rows()
        except Exception as err:
            raise CheckFailed(f"cannot read the Delta table {uri}: {err}") from err
    _require(all(rows[t] > 0 for t in TABLES if t != "silver_projectviews_quarantine"), f"empty tables: {rows}")
    kept = rows["silver_projectviews_clean"] + rows["silver_projectviews_quarantine"]
    _require(rows["bronze_projectviews"] == kept, f"bronze rows != clean + quarantined: {rows}")
    _require(rows["bronze_file_ledger"] == len(raw), f"ledger has {rows['bronze_file_ledger']} files, raw {len(raw)}")
    gold = DeltaTable(f"s3://{bucket}/lake/gold_daily_projectviews", storage_options=options).to_pyarrow_table()
    return {"raw_files": len(raw), "rows": rows, "domains": sorted(set(gold.column("domain_code").to_pylist()))}


def check_registry(tracking_uri: str, model: str, alias: str) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    try:
        version = MlflowClient(tracking_uri).get_model_version_by_alias(model, alias)
    except Exception as err:
        raise CheckFailed(f"no {model}@{alias} in the registry at {tracking_uri}: {err}") from err
    return {"model": model, "alias": alias, "version": version.version, "run_id": version.run_id}


def check_score(api: str, domains: list[str]) -> dict[str, Any]:
    import httpx

    ready = httpx.get(f"{api}/ready", timeout=10)
    _require(ready.status_code == 200, f"GET /ready answered {ready.status_code}: {ready.text[:200]}")
    started = time.monotonic()
    answer = httpx.post(f"{api}/score", json={"instances": [{"domain_code": d} for d in domains]}, timeout=60)
    seconds = time.monotonic() - started
    _require(answer.status_code == 200, f"POST /score answered {answer.status_code}: {answer.text[:300]}")
    results = answer.json()["results"]
    _require([r["domain_code"] for r in results] == domains, f"results for other domains: {results}")
    errors = [r for r in results if "error" in r]
    _require(not errors, f"known domains were not scored: {errors}")
    scores = {r["domain_code"]: r["risk_score"] for r in results}
    _require(all(0.0 <= s <= 1.0 for s in scores.values()), f"risk scores outside [0, 1]: {scores}")
    return {"scores": scores, "model_version": results[0].get("model_version"), "seconds": round(seconds, 3)}


def check_dashboard(url: str, wait_s: float = 120.0) -> dict[str, Any]:
    """The dashboard service answers its health check and serves the Streamlit app page."""
    import httpx

    deadline, last = time.monotonic() + wait_s, "no answer"
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/_stcore/health", timeout=5)
            if health.status_code == 200 and health.text.strip() == "ok":
                page = httpx.get(url, timeout=10)
                _require(page.status_code == 200, f"GET / on the dashboard answered {page.status_code}")
                _require("<title>Streamlit</title>" in page.text or "streamlit" in page.text.lower(),
                         "the dashboard's page is not the Streamlit app")  # fmt: skip
                return {"health": "ok", "page_bytes": len(page.content)}
            last = f"{health.status_code} {health.text[:80]}"
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(2)
    raise CheckFailed(f"the dashboard at {url} is not healthy after {wait_s:.0f} s: {last}")


def check_warehouse(url: str, expected_gold_rows: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        counts = {
            table: conn.execute(f'SELECT count(*) FROM wikichurn."{table}"').fetchone()[0]  # type: ignore[index]
            for table in ("gold_daily_projectviews", "gold_churn_features", "gold_kpis_daily")
        }
    _require(
        counts["gold_daily_projectviews"] == expected_gold_rows,
        f"warehouse gold rows {counts['gold_daily_projectviews']} != lake {expected_gold_rows}",
    )
    _require(all(n > 0 for n in counts.values()), f"empty warehouse tables: {counts}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--s3", required=True, help="published S3 endpoint, http://127.0.0.1:PORT")
    parser.add_argument("--mlflow", required=True, help="published MLflow URL")
    parser.add_argument("--api", required=True, help="published scoring API URL")
    parser.add_argument("--dashboard", help="published dashboard URL (checked when given)")
    parser.add_argument("--db", required=True, help="postgresql:// URL of the warehouse database")
    parser.add_argument("--bucket", default="wikichurn")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "wikichurn")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "wikichurn-local-secret")
    region = os.environ.get("AWS_REGION", "us-east-1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    summary: dict[str, Any] = {}
    try:
        lake = check_s3(args.s3, args.bucket, key_id, secret, region)
        summary["s3"] = {k: v for k, v in lake.items() if k != "domains"}
        summary["registry"] = check_registry(args.mlflow, "wikichurn", "production")
        known = [d for d in ("en", "de.m", "fr.d", "ja", "commons.m") if d in lake["domains"]] or lake["domains"][:3]
        summary["score"] = check_score(args.api, known)
        summary["score_at"] = time.time()
        summary["warehouse"] = check_warehouse(args.db, lake["rows"]["gold_daily_projectviews"])
        if args.dashboard:
            summary["dashboard"] = check_dashboard(args.dashboard)
    except CheckFailed as err:
        print(f"stack check failed: {err}", file=sys.stderr)
        return 1
    text = json.dumps(summary, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
