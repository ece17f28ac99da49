"""The one settings object of wikichurn.

Values come, from lowest to highest precedence, from the defaults below, ``conf/base.yaml``,
``conf/<WIKICHURN_ENV>.yaml`` (when ``WIKICHURN_ENV`` is set), ``conf/local.yaml`` (git-ignored),
environment variables ``WIKICHURN_*`` (nested with ``__``, e.g. ``WIKICHURN_INGEST__CONCURRENCY``),
and finally keyword arguments. S3 settings also honour the standard ``AWS_*`` variables.

Nothing is read at import time: call :func:`get_settings` (cached) or build ``Settings(...)``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "WIKICHURN_"


def conf_dir() -> Path:
    """The folder holding the YAML files: ``WIKICHURN_CONF_DIR`` or the repository's ``conf/``."""
    explicit = os.environ.get("WIKICHURN_CONF_DIR")
    if explicit:
        return Path(explicit)
    repo_conf = Path(__file__).resolve().parents[1] / "conf"
    return repo_conf if repo_conf.is_dir() else Path.cwd() / "conf"


def _yaml_files() -> list[Path]:
    folder = conf_dir()
    names = ["base.yaml"]
    env = os.environ.get("WIKICHURN_ENV")
    if env:
        names.append(f"{env}.yaml")
    names.append("local.yaml")
    return [folder / name for name in names if (folder / name).is_file()]


class S3Settings(BaseModel):
    """Connection to S3 or an S3-compatible server. Empty values fall back to boto3's own chain."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    # Local S3-compatible servers usually speak plain HTTP.
    allow_http: bool = True
    # Unsigned requests, for servers without authentication.
    anonymous: bool = False


class SparkSettings(BaseModel):
    """How to reach JVM Spark when ``engine: spark``."""

    remote: str | None = Field(default=None, description="Spark Connect URL, e.g. sc://host:15002")
    master: str | None = Field(default=None, description="classic master, e.g. local[2] or yarn")
    app_name: str = "wikichurn"
    conf: dict[str, str] = Field(default_factory=dict, description="extra spark.* options")


class SailSettings(BaseModel):
    """The embedded Sail server (in-process Spark Connect, no JVM)."""

    port: int = 0  # 0 = pick a free port


class IngestSettings(BaseModel):
    """Downloading projectviews files from the dumps site."""

    concurrency: int = Field(default=4, ge=1, le=32)
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=4, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0)
    # Real projectviews files are tens of KB; anything far larger is not one.
    max_file_bytes: int = Field(default=5_000_000, gt=0)


class PipelineSettings(BaseModel):
    """The medallion pipeline."""

    # Raw files read per bronze write: bounds memory on a cold start over a long history.
    bronze_batch_files: int = Field(default=2000, ge=1)
    # Where `wikichurn features export` writes the scoring service's feature snapshot.
    snapshot_path: str = "./data/serving/features_snapshot.parquet"


class ChurnSettings(BaseModel):
    """The churn definition: churn on day t if, within ``horizon_days``, daily views fall to
    ``factor`` x the mean of the ``window_days`` days before t."""

    horizon_days: int = Field(default=7, ge=1)
    window_days: int = Field(default=3, ge=1)
    factor: float = Field(default=0.3, gt=0, lt=1)
    # A day is complete when it has at least this many hourly files.
    min_hours_complete: int = Field(default=24, ge=1, le=24)
    # What a label does with incomplete days in its window or horizon:
    # "strict"  - the label is unavailable;
    # "rescale" - days with at least `min_hours_rescale` files count as complete, their views
    #             scaled by 24 / files present; days with fewer are gaps (label unavailable);
    # "ignore"  - labels are used as they are.
    incomplete_policy: Literal["strict", "rescale", "ignore"] = "strict"
    min_hours_rescale: int = Field(default=20, ge=1, le=24)

    def gap_hours(self) -> int:
        """Days with fewer hourly files than this are data gaps for the labels."""
        return self.min_hours_rescale if self.incomplete_policy == "rescale" else self.min_hours_complete


class Settings(BaseSettings):
    """Every setting of wikichurn, typed and validated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
    )

    source_url: str = "https://dumps.wikimedia.org/other/pageviews"
    raw_uri: str = "./data/raw"
    lake_uri: str = "./data/lake"
    engine: Literal["sail", "spark"] = "sail"
    table_format: Literal["delta", "parquet"] = "delta"
    spark: SparkSettings = Field(default_factory=SparkSettings)
    sail: SailSettings = Field(default_factory=SailSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    churn: ChurnSettings = Field(default_factory=ChurnSettings)
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("WIKICHURN_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
    )

    @field_validator("raw_uri", "lake_uri", "source_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/") or value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_sources = tuple(YamlConfigSettingsSource(settings_cls, yaml_file=path) for path in reversed(_yaml_files()))
        return (init_settings, _AwsEnvSource(settings_cls), env_settings, *yaml_sources)

    def is_s3(self, uri: str) -> bool:
        """True when ``uri`` names an S3 location."""
        return uri.startswith(("s3://", "s3a://"))


class _AwsEnvSource(PydanticBaseSettingsSource):
    """Maps the standard AWS variables onto ``s3.*`` so tools configured for AWS just work."""

    _MAP = {
        "AWS_ENDPOINT_URL": "endpoint_url",
        "AWS_ENDPOINT_URL_S3": "endpoint_url",
        "AWS_REGION": "region",
        "AWS_DEFAULT_REGION": "region",
        "AWS_ACCESS_KEY_ID": "access_key_id",
        "AWS_SECRET_ACCESS_KEY": "secret_access_key",
    }

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        s3: dict[str, str] = {}
        for var, key in self._MAP.items():
            value = os.environ.get(var)
            if value and key not in s3:
                s3[key] = value
        # WIKICHURN_S3__* variables win over AWS_* ones: drop what they set.
        for key in list(s3):
            if os.environ.get(f"{ENV_PREFIX}S3__{key.upper()}"):
                del s3[key]
        return {"s3": s3} if s3 else {}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return Settings()
