"""Settings of the scoring service: ``Settings.serving`` (``serving:`` in ``conf/*.yaml``,
``WIKICHURN_SERVING__<FIELD>`` variables, e.g. ``WIKICHURN_SERVING__MAX_BATCH=500``).

Where the model comes from is MLflow's own configuration (``MLFLOW_TRACKING_URI``), as for
:func:`wikichurn.training.model.download_model`.
"""

from __future__ import annotations

from typing import Any

from wikichurn.core.settings import ServingSettings, load_settings

__all__ = ["ServingSettings", "load_serving_settings"]


def load_serving_settings(**overrides: Any) -> ServingSettings:
    """``load_settings().serving`` (files + environment, read now), then ``overrides``."""
    return ServingSettings.model_validate({**load_settings().serving.model_dump(), **overrides})
