"""The scoring process never imports pyspark, even after loading a model through MLflow.

MLflow imports pyspark whenever it is installed; the service blocks that import
(wikichurn.serving.nospark). Checked in fresh interpreters, since this test process runs Spark too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.utils.serving import Registry

SERVE_AND_REPORT = """
import json, sys
import wikichurn.serving.main
after_import = sorted(m for m in sys.modules if m.split(".")[0] == "pyspark")
from fastapi.testclient import TestClient
from wikichurn.serving.config import ServingSettings
app = wikichurn.serving.main.create_app(ServingSettings(snapshot_path=sys.argv[1], model_cache_dir=sys.argv[2]))
with TestClient(app) as client:
    ready = client.get("/ready").status_code
    score = client.post("/score", json={"instances": [{"domain_code": sys.argv[3]}]}).json()["results"][0]
print(json.dumps({
    "after_import": after_import,
    "pyspark": sorted(m for m in sys.modules if m.split(".")[0] == "pyspark"),
    "mlflow": "mlflow" in sys.modules,
    "wikichurn.training.model": "wikichurn.training.model" in sys.modules,
    "spark_modules": sorted(m for m in sys.modules if m.startswith(("wikichurn.pipeline.", "wikichurn.sim."))),
    "ready": ready,
    "score": score,
}))
"""


def test_serving_process_never_imports_pyspark(registry: Registry, snapshot: Path, tmp_path: Path) -> None:
    domain = next(iter(registry.histories))
    script = tmp_path / "serve_and_report.py"
    script.write_text(SERVE_AND_REPORT)
    done = subprocess.run(
        [sys.executable, str(script), str(snapshot), str(tmp_path / "cache"), domain],
        env=registry.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ready"] == 200
    assert report["score"]["model_version"] == "1" and 0 < report["score"]["risk_score"] < 1
    assert report["mlflow"] and report["wikichurn.training.model"]  # the model really came through MLflow
    assert report["after_import"] == []
    assert report["pyspark"] == []
    assert report["spark_modules"] == []


def test_pyspark_import_fails_inside_the_service() -> None:
    code = (
        "from wikichurn.serving.nospark import forbid_pyspark\n"
        "assert forbid_pyspark()\n"
        "try:\n    import pyspark.sql\nexcept ImportError as exc:\n    print('blocked:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "blocked: pyspark is not importable in the wikichurn scoring service" in done.stdout
