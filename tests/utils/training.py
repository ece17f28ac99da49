"""Training test helpers: the end-to-end run's experiment and model names, small fast settings."""

from __future__ import annotations

from typing import Any

from wikichurn.training.config import TrainingSettings, load_training_settings
from wikichurn.training.server import TrackingServer

E2E_EXPERIMENT = "e2e"
E2E_MODEL = "wikichurn"


def training_settings(server: TrackingServer, **overrides: Any) -> TrainingSettings:
    """Small, fast training settings pointed at ``server``."""
    defaults: dict[str, Any] = {
        "tracking_uri": server.url,
        "tuning": {"trials": 3},
        "num_threads": 1,  # OpenMP threads spin against busy neighbours: 1 thread is far faster on shared CI
        "evaluation": {"shap_sample_rows": 300},
    }
    return load_training_settings(**{**defaults, **overrides})
