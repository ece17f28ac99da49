"""The Lambda deployment: the SAM template passes cfn-lint, and the packaged zip runs the handler.

The zip is unpacked on a clean path and the handler is called in a fresh interpreter that sees only
the standard library and the zip (no site-packages: the zip must carry everything it imports), with
a real event against the simulated mirror over HTTP and the S3 test server. ``LAMBDA_ZIP`` names a
zip built beforehand (CI builds the real one, for the Lambda platform, with ``make lambda-zip``);
without it the test builds one offline from this interpreter's packages (``--from-env``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.mirror import SMALL_MIRROR_START
from tests.fixtures.s3 import DUMMY_KEY_ID, DUMMY_SECRET, S3Server

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "lambda" / "template.yaml"

# Runs inside the clean interpreter: only the stdlib and the unpacked zip are importable.
INVOKE = """
import json, sys
sys.path.insert(0, sys.argv[1])
try:
    import pyspark  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("not a clean path: pyspark is importable")
import wikichurn.pipeline.ingest as ingest
assert ingest.__file__.startswith(sys.argv[1]), ingest.__file__
print(json.dumps([ingest.lambda_handler(json.loads(event), None) for event in sys.argv[2:]]))
"""


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


def _construct_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _construct_tag)


def _template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # a SafeLoader subclass


def test_sam_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_schedules_the_handler_with_least_privilege() -> None:
    function = _template()["Resources"]["IngestFunction"]["Properties"]
    module, _, name = function["Handler"].rpartition(".")
    assert importlib.util.find_spec(module) is not None
    assert callable(getattr(__import__(module, fromlist=[name]), name))
    assert function["Runtime"] == "python3.11"
    (event,) = function["Events"].values()
    assert event["Type"] in ("Schedule", "ScheduleV2")
    assert _template()["Parameters"]["ScheduleExpression"]["Default"] == "rate(1 hour)"
    statements = [s for policy in function["Policies"] for s in policy["Statement"]]
    actions = sorted(a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert actions == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]  # no delete, no wildcard
    assert all("*" not in a for a in actions)
    assert all(s["Effect"] == "Allow" for s in statements)
    assert function["CodeUri"] == "../../build/lambda/wikichurn-ingest.zip"


@pytest.fixture(scope="module")
def lambda_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("LAMBDA_ZIP")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("lambda") / "wikichurn-ingest.zip"
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "lambda" / "package.py"), "--from-env", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _invoke(unpacked: Path, env: dict[str, str], *events: dict[str, Any]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", INVOKE, str(unpacked), *(json.dumps(e) for e in events)],
        capture_output=True,
        text=True,
        env=env,
        cwd=unpacked,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.s3
def test_packaged_handler_lands_files_from_the_mirror_in_s3(
    lambda_zip: Path, tmp_path: Path, mirror_url: str, s3_server: S3Server
) -> None:
    with zipfile.ZipFile(lambda_zip) as archive:
        names = archive.namelist()
        assert "wikichurn/conf/base.yaml" in names  # the settings' defaults travel with the code
        assert not any(n.startswith(("pyspark/", "mlflow/", "lightgbm/")) for n in names)
        archive.extractall(tmp_path / "task")
    bucket = s3_server.make_bucket("lambda")
    # What Lambda gives a function: its environment variables, a HOME-less, read-only task folder.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "WIKICHURN_SOURCE_URL": mirror_url,
        "WIKICHURN_RAW_URI": f"s3://{bucket}/raw",
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_REGION": s3_server.region,
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    day = SMALL_MIRROR_START.isoformat()
    first, again, bad = _invoke(tmp_path / "task", env, {"start": day}, {"start": day}, {"start": "2024-13-01"})

    assert first["statusCode"] == 200, first
    summary = first["summary"]
    assert summary["listed"] > 0 and summary["downloaded"] == summary["listed"] and summary["failed"] == 0
    objects = s3_server.client.list_objects_v2(Bucket=bucket, Prefix="raw/")["Contents"]
    keys = sorted(o["Key"] for o in objects)
    assert len(keys) == summary["listed"]
    assert all(k.startswith("raw/2024/2024-01/projectviews-20240101-") for k in keys)
    assert sum(o["Size"] for o in objects) == summary["bytes_downloaded"]

    assert again["statusCode"] == 200 and again["summary"]["skipped"] == summary["listed"]  # idempotent
    assert again["summary"]["downloaded"] == 0
    assert bad["statusCode"] == 400 and "start" in bad["error"]
