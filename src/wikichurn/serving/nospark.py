"""Keep pyspark out of the scoring process.

The service imports only :mod:`wikichurn.core` and :mod:`wikichurn.training.model`, none of which
needs Spark. MLflow, however, imports ``pyspark`` whenever it is installed (``try: import pyspark``
in ``mlflow.types.schema``, ``mlflow.pyfunc`` and ``mlflow.models.utils``) and falls back cleanly on
``ImportError``. :func:`forbid_pyspark` makes that import fail, so the service never loads the Spark
client (its imports, memory and exit hooks).
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

BLOCKED = "pyspark"


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:  # noqa: ANN401 - importlib's own signature
        if fullname == BLOCKED or fullname.startswith(BLOCKED + "."):
            raise ModuleNotFoundError(f"{fullname} is not importable in the wikichurn scoring service", name=fullname)
        return None


def forbid_pyspark() -> bool:
    """Make ``import pyspark`` fail in this process from now on.

    Does nothing (and returns False) when pyspark is already imported, as in a test process that
    also runs Spark: blocking it there would break that process's own Spark code.

    Returns:
        True when the guard is in place.
    """
    if any(isinstance(finder, _Blocker) for finder in sys.meta_path):
        return True
    if BLOCKED in sys.modules:
        log.debug("pyspark is already imported in this process; not blocking it")
        return False
    sys.meta_path.insert(0, _Blocker())
    return True
