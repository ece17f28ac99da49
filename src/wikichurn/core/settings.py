"""The one settings object of wikichurn.

Values come, from lowest to highest precedence, from the defaults below, ``conf/base.yaml``,
``conf/<WIKICHURN_ENV>.yaml`` (when ``WIKICHURN_ENV`` is set), ``conf/local.yaml`` (git-ignored),
environment variables ``WIKICHURN_*`` (nested with ``__``, e.g. ``WIKICHURN_INGEST__CONCURRENCY``),
and finally keyword arguments. S3 settings also honour the standard ``AWS_*`` variables.

How to build them: :func:`load_settings` (``load_settings(lake_uri=..., churn={"window_days": 5})``)
reads the files and the environment every time it is called and puts the keyword overrides on top
(nested ones merged, not replaced). There is no cache and no module-level instance: each entry
point (a CLI command, the scoring server's start, the Lambda handler, a test) builds the settings
once and passes them down, so what a function sees is what its caller gave it. ``Settings`` is the
type; ``Settings(**values)`` is the same as ``load_settings(**values)``.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "WIKICHURN_"


def conf_dir() -> Path:
    """The folder holding the YAML files: ``WIKICHURN_CONF_DIR``, else the defaults shipped in the package.

    The package's ``conf/`` is what the repository's top-level ``conf/`` links to, so a source checkout
    and an installed wheel read the same files.
    """
    explicit = os.environ.get("WIKICHURN_CONF_DIR")
    if explicit:
        return Path(explicit)
    return Path(str(resources.files("wikichurn") / "conf"))


def _yaml_files() -> list[Path]:
    folder = conf_dir()
    names = ["training.yaml", "base.yaml"]
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
    # Sail drops a session idle this long (its default: 900 s). The embedded server has one client,
    # this process, so a long idle spell (a training, a test that runs no query) must not kill it.
    session_timeout_s: int = Field(default=7 * 24 * 3600, ge=1)


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
    # Writer lease on the lake (pipeline/lakehouse/lock.py): expires this long after its last renewal.
    lock_ttl_s: float = Field(default=60.0, ge=1)
    # Files naming an earlier hour are quarantined (file_date_out_of_range): projectviews start in
    # May 2015. A replay of older daily totals (the real backtest) sets it to its first day.
    first_file_hour: datetime = datetime(2015, 5, 1)


class WarehouseSettings(BaseModel):
    """``wikichurn warehouse export``: the PostgreSQL database (Redshift-style DDL) the gold tables go to."""

    url: str | None = Field(default=None, description="postgresql://user:password@host:5432/db")
    db_schema: str = Field(default="wikichurn", min_length=1, description="schema the tables are created in")


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


MetricName = Literal["pr_auc", "roc_auc", "log_loss", "brier"]


class SplitSettings(BaseModel):
    """The time split: train < validation < test by ``event_date``, never shuffled.

    Either fractions (of labelled rows, chosen so each set gets close to its share after the
    gaps are cut out) or explicit cut dates (``train_end`` and ``validation_end``, inclusive).
    """

    train_fraction: float = Field(default=0.6, gt=0, lt=1)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    # Dates dropped between two sets; must be >= the label horizon (checked at split time)
    # so that no label of one set looks at the days of the next.
    gap_days: int = Field(default=7, ge=0)
    train_end: date | None = None
    validation_end: date | None = None

    @model_validator(mode="after")
    def _check(self) -> SplitSettings:
        total = self.train_fraction + self.validation_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1 (got {total:.3f})")
        if (self.train_end is None) != (self.validation_end is None):
            raise ValueError("give both split.train_end and split.validation_end, or neither")
        if self.train_end and self.validation_end and self.validation_end <= self.train_end:
            raise ValueError("split.validation_end must be after split.train_end")
        return self


class TuningSettings(BaseModel):
    """The Optuna study over LightGBM hyper-parameters."""

    trials: int = Field(default=30, ge=1)
    metric: MetricName = "pr_auc"  # validation metric the study optimises
    timeout_s: float | None = Field(default=None, gt=0)
    num_boost_round: int = Field(default=1000, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)
    pruning: bool = True
    pruning_warmup_steps: int = Field(default=20, ge=0)
    startup_trials: int = Field(default=5, ge=0)  # trials before TPE and the pruner kick in


class CVSettings(BaseModel):
    """Rolling-origin (walk-forward) cross-validation over the development dates (before test).

    Each fold trains on every date before its validation block minus ``split.gap_days`` and
    validates on the block; the blocks tile the dates after the first ``min_train_fraction``.
    """

    folds: int = Field(default=4, ge=1)
    min_train_fraction: float = Field(default=0.7, gt=0, lt=1)  # of development dates, before fold 1
    # Boosting rounds of a refit on n rows = median over folds of best_iteration x (n / fold rows) ** exponent.
    rounds_exponent: float = Field(default=1.0, ge=0, le=1)
    prune_after_folds: int = Field(default=1, ge=1)  # folds a trial runs before the pruner may stop it


class ThresholdSettings(BaseModel):
    """How the decision threshold is picked on validation predictions (never on test)."""

    objective: Literal["f1", "fbeta", "cost"] = "f1"
    beta: float = Field(default=1.0, gt=0)  # for objective=fbeta (beta > 1 favours recall)
    # For objective=cost: cost of a missed churn (false negative) per false alarm (false positive).
    fn_cost: float = Field(default=5.0, gt=0)


class EvaluationSettings(BaseModel):
    """Test-set evaluation and explanation."""

    shap_sample_rows: int = Field(default=2000, ge=10)
    calibration_bins: int = Field(default=10, ge=2)


class PromotionSettings(BaseModel):
    """When a registered candidate becomes ``production``."""

    metric: MetricName = "pr_auc"  # compared on the candidate's test rows
    min_delta: float = Field(default=0.0, ge=0)  # the candidate must beat production by more than this
    production_alias: str = "production"
    challenger_alias: str = "challenger"
    require_beat_baseline: bool = True  # must also beat baseline_seed_features on test


class TrainingSettings(BaseModel):
    """Every setting of the training stage."""

    experiment_name: str = "wikichurn"
    model_name: str = "wikichurn"
    # None: MLFLOW_TRACKING_URI, else a local sqlite store under ``data/mlflow``.
    tracking_uri: str | None = None
    # Artifact folder of experiments created on a local (sqlite) store; servers choose their own.
    artifact_root: str = "./data/mlflow/artifacts"
    feature_table: str = "gold_churn_features"
    seed: int = 42
    num_threads: int = Field(default=0, ge=0)  # LightGBM threads; 0 = its default
    split: SplitSettings = Field(default_factory=SplitSettings)
    tuning: TuningSettings = Field(default_factory=TuningSettings)
    cv: CVSettings = Field(default_factory=CVSettings)
    threshold: ThresholdSettings = Field(default_factory=ThresholdSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)


class ServingSettings(BaseModel):
    """The scoring service: which model, which feature snapshot, limits and the listening address."""

    # Fields named model_* are ours, not pydantic's.
    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(default="wikichurn", min_length=1, description="registered model name")
    model_alias: str = Field(default="production", min_length=1, description="registry alias served")
    snapshot_path: str = Field(
        default="./data/serving/features_snapshot.parquet",
        description="feature snapshot written by `wikichurn features export` (+ its .json sidecar)",
    )
    max_batch: int = Field(default=1000, ge=1, description="most instances per /score request (more: 413)")
    # Computing features from a history costs ~30 ms per instance (pandas), a snapshot lookup ~0.1 ms.
    max_history_batch: int = Field(
        default=100, ge=1, description="most instances with daily_views per /score request (more: 413)"
    )
    reload_interval_s: float = Field(
        default=0.0, ge=0, description="seconds between checks of the alias for a new version; 0 = off"
    )
    explain_top_k: int = Field(default=5, ge=1, description="contributions listed per explanation")
    model_cache_dir: str | None = Field(
        default=None, description="where model versions are downloaded (default: a temporary folder)"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Not in the first list of fields: how long start-up waits for the first model load before the
    # server accepts connections anyway (it keeps loading in the background; /ready says when).
    startup_timeout_s: float = Field(default=30.0, ge=0)
    # Back-off between attempts when the registry or the model is unavailable.
    retry_min_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    # The longest history (first to last date, in days) accepted by the daily_views form.
    max_history_days: int = Field(default=4000, ge=2)
    # Request bodies above this many bytes are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # A request body stalling longer than this between two chunks is answered 408 (slowloris bodies).
    body_timeout_s: float = Field(default=10.0, gt=0)


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
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    churn: ChurnSettings = Field(default_factory=ChurnSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
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


def load_settings(**overrides: Any) -> Settings:
    """The settings as the files and the environment say now, with ``overrides`` on top.

    Args:
        overrides: fields of :class:`Settings`; nested models as dicts are merged into the
            configured values (``churn={"window_days": 5}`` keeps the other churn settings).

    Returns:
        Validated settings, built fresh (call it once per entry point and pass the result down).
    """
    return Settings(**overrides)


def tracking_uri(settings: Settings) -> str | None:
    """The MLflow tracking/registry URI of these settings (``MLFLOW_TRACKING_URI`` included), if any."""
    return settings.mlflow_tracking_uri or settings.training.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
