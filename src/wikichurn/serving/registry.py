"""Where the served model comes from: the MLflow registry alias ``models:/<name>@<alias>``.

A loader does two things, so that checking for a newly promoted version is cheap:

- ``resolve()``: which version the alias points at now (one registry call);
- ``load(ref)``: download that exact version (``models:/<name>/<version>``, so a move of the
  alias between the two calls cannot mix versions) and build a :class:`ChurnScorer`.

MLflow and :mod:`wikichurn.training.model` are imported inside the methods: importing this module stays
cheap and :func:`wikichurn.serving.nospark.forbid_pyspark` can act before MLflow is first imported.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wikichurn.core.churn import feature_columns
from wikichurn.core.settings import ChurnSettings

if TYPE_CHECKING:
    from wikichurn.training.model import ChurnScorer

log = logging.getLogger(__name__)

_COMPLETE_MARKER = ".download-complete"


class ModelUnavailableError(RuntimeError):
    """The registry cannot be reached, the alias is unset, or the model cannot be loaded."""


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, as the alias resolved it."""

    name: str
    alias: str
    version: str
    run_id: str | None = None
    source: str | None = None

    @property
    def uri(self) -> str:
        """The version's own URI (never moves, unlike the alias)."""
        return f"models:/{self.name}/{self.version}"

    @property
    def alias_uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


@dataclass(frozen=True)
class LoadedModel:
    """A scorer ready for the hot path plus what the API reports about it."""

    ref: ModelRef
    scorer: ChurnScorer
    churn: ChurnSettings
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def meta(self) -> dict[str, Any]:
        return self.scorer.meta


class ModelLoader(Protocol):
    """What the service needs from a model source (the registry, or a stub in tests)."""

    def resolve(self) -> ModelRef:
        """The version the alias points at now. Raises on any failure."""
        ...

    def load(self, ref: ModelRef) -> ChurnScorer:
        """A scorer for exactly ``ref``. Raises on any failure."""
        ...


class RegistryModelLoader:
    """Resolve ``models:/<name>@<alias>`` with ``MlflowClient`` and load it with ``ChurnScorer``.

    Uses MLflow's configured tracking/registry URI (``MLFLOW_TRACKING_URI``).

    Args:
        name: registered model name.
        alias: alias to serve.
        cache_dir: where versions are downloaded (``<cache>/<name>/<version>``; a completed download
            is reused, registered versions being immutable). None: a temporary folder removed by
            :meth:`close`.
    """

    def __init__(self, name: str, alias: str, cache_dir: str | Path | None = None) -> None:
        self.name = name
        self.alias = alias
        self._own_cache = cache_dir is None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None

    def resolve(self) -> ModelRef:
        from mlflow import MlflowClient

        try:
            version = MlflowClient().get_model_version_by_alias(self.name, self.alias)
        except Exception as exc:  # MlflowException, connection errors, sqlite errors...
            raise ModelUnavailableError(f"cannot resolve models:/{self.name}@{self.alias}: {_short(exc)}") from exc
        return ModelRef(
            name=self.name,
            alias=self.alias,
            version=str(version.version),
            run_id=version.run_id,
            source=version.source,
        )

    def load(self, ref: ModelRef) -> ChurnScorer:
        from wikichurn.training.model import ChurnScorer, download_model

        folder = self._version_folder(ref)
        if not (folder / _COMPLETE_MARKER).is_file():
            staging = Path(tempfile.mkdtemp(prefix=f".{_safe(ref.version)}-", dir=folder.parent))
            try:
                download_model(ref.uri, staging)
                (staging / _COMPLETE_MARKER).touch()
                shutil.rmtree(folder, ignore_errors=True)
                staging.rename(folder)
            except Exception as exc:
                raise ModelUnavailableError(f"cannot download {ref.uri}: {_short(exc)}") from exc
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        try:
            # One thread: a request scores a handful of rows, where OpenMP start-up costs more than it saves.
            return ChurnScorer.from_dir(folder, num_threads=1)
        except Exception as exc:
            raise ModelUnavailableError(f"cannot load {ref.uri} from {folder}: {_short(exc)}") from exc

    def close(self) -> None:
        """Remove the temporary download folder, if this loader made one."""
        if self._own_cache and self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None

    def _version_folder(self, ref: ModelRef) -> Path:
        if self._cache_dir is None:
            self._cache_dir = Path(tempfile.mkdtemp(prefix="wikichurn-serving-"))
        parent = self._cache_dir / _safe(ref.name)
        parent.mkdir(parents=True, exist_ok=True)
        return parent / _safe(ref.version)


def build_loaded_model(ref: ModelRef, scorer: ChurnScorer, base_churn: ChurnSettings) -> LoadedModel:
    """Check that the service can compute every feature of the model, and attach its churn definition.

    Raises:
        ModelUnavailableError: the model needs features that :mod:`wikichurn.core.churn` does not compute.
    """
    churn = churn_settings_for(scorer.meta, base_churn)
    computable = feature_columns(churn)  # the past-window names follow the model's window_days
    unknown = [name for name in scorer.features if name not in computable]
    if unknown:
        raise ModelUnavailableError(f"{ref.uri} needs features the service cannot compute: {unknown}")
    return LoadedModel(ref=ref, scorer=scorer, churn=churn)


def churn_settings_for(meta: dict[str, Any], base: ChurnSettings) -> ChurnSettings:
    """``base`` with the label definition the model was trained with (``meta["label"]``).

    The history features (the past-window mean, the threshold) depend on ``window_days`` and
    ``factor``: the daily_views form must compute them as training did.
    """
    label = meta.get("label") or {}
    update = {key: label[key] for key in ("horizon_days", "window_days", "factor") if label.get(key) is not None}
    return ChurnSettings.model_validate({**base.model_dump(), **update}) if update else base


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", part) or "_"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
