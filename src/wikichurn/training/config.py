"""Training settings: ``Settings.training`` (``conf/training.yaml`` key ``training:`` plus
``WIKICHURN_TRAINING__*`` variables, with the same overlays as every other setting).

The classes live in :mod:`wikichurn.core.settings` (the one settings object); this module re-exports
them and adds keyword overrides for the stage commands.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from wikichurn.core.settings import (
    CVSettings,
    EvaluationSettings,
    MetricName,
    PromotionSettings,
    Settings,
    SplitSettings,
    ThresholdSettings,
    TrainingSettings,
    TuningSettings,
    get_settings,
)

__all__ = [
    "CVSettings",
    "EvaluationSettings",
    "MetricName",
    "PromotionSettings",
    "SplitSettings",
    "ThresholdSettings",
    "TrainingSettings",
    "TuningSettings",
    "get_training_settings",
    "load_training_settings",
]


def load_training_settings(**overrides: Any) -> TrainingSettings:
    """Build the training settings now (files + environment), with ``overrides`` on top.

    Args:
        overrides: top-level fields of :class:`TrainingSettings` (nested ones as dicts or models).

    Returns:
        Validated settings.
    """
    base = Settings().training
    if not overrides:
        return base
    merged = _deep_merge(base.model_dump(), {k: _dump(v) for k, v in overrides.items()})
    return TrainingSettings.model_validate(merged)


def _dump(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def get_training_settings() -> TrainingSettings:
    """The process-wide training settings (``get_settings().training``)."""
    return get_settings().training
