"""The dashboard process never loads Spark, even though MLflow would import pyspark if it could."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import wikichurn.dashboard.common  # blocks pyspark, as every page does first
import mlflow  # noqa: F401  (imports pyspark when it can)
from wikichurn.dashboard import charts, data, registry  # noqa: F401
assert "pyspark" not in sys.modules, sorted(m for m in sys.modules if m.startswith("pyspark"))
print("ok")
"""


def test_dashboard_modules_and_mlflow_load_without_pyspark() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
