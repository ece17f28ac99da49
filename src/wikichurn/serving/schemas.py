"""Request and response bodies of the scoring API (separate models for what comes in and goes out)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from typing_extensions import TypedDict

# A hard bound on one history, so a single instance cannot ask for unbounded work. The served
# span (first to last date) is bounded separately by ServingSettings.max_history_days.
MAX_HISTORY_ENTRIES = 10_000
MAX_DOMAIN_CODE_LENGTH = 200


# -- requests ------------------------------------------------------------------------------------


class DailyViews(TypedDict):
    """Views of one day. The date is checked per instance, so a bad one fails only its instance.

    A TypedDict, not a model: a history is validated into plain dicts, about ten times cheaper per
    day than model instances (the same JSON schema and the same 422s).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    date: Annotated[str, Field(max_length=64, description="YYYY-MM-DD", examples=["2024-03-01"])]
    views: Annotated[StrictInt, Field(description="views that day (>= 0)", examples=[1200])]


class ScoreInstance(BaseModel):
    """A domain to score: from the feature snapshot (domain only) or from its daily views."""

    model_config = ConfigDict(extra="forbid")

    domain_code: str = Field(
        min_length=1, max_length=MAX_DOMAIN_CODE_LENGTH, description="e.g. de.m", examples=["de.m"]
    )
    daily_views: list[DailyViews] | None = Field(
        default=None,
        max_length=MAX_HISTORY_ENTRIES,
        description=(
            "Optional history. Without it the domain's row of the feature snapshot is scored. With it the "
            "features are computed from this history as of its last date; dates may come in any order and "
            "a date missing inside the range counts as a day with zero views."
        ),
    )


class ScoreRequest(BaseModel):
    """A batch of instances; results come back in the same order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [{"domain_code": "de.m"}], "explain": False}]},
    )

    instances: list[ScoreInstance] = Field(description="at most max_batch instances (more: 413)")
    explain: bool = Field(default=False, description="add per-feature contributions (log-odds)")


# -- responses -----------------------------------------------------------------------------------


class Contribution(BaseModel):
    feature: str
    value: float | str | None = Field(description="the feature's value (null: missing)")
    contribution: float = Field(description="contribution to the log-odds of the risk score")


class Explanation(BaseModel):
    """``base_value + sum(contributions) + other == logit(risk_score)``."""

    base_value: float = Field(description="the model's expected log-odds")
    contributions: list[Contribution] = Field(description="the top features by |contribution|")
    other: float = Field(description="sum of the contributions of all features not listed")


class ScoreResult(BaseModel):
    domain_code: str
    as_of: date | None = Field(description="the day the features describe")
    risk_score: float = Field(description="probability of a traffic collapse within the horizon")
    churn: bool = Field(description="risk_score >= threshold")
    threshold: float
    model_version: str
    explanation: Explanation | None = Field(default=None, description="only when explain is requested")


ErrorCode = Literal[
    "unknown_domain",
    "snapshot_unavailable",
    "invalid_date",
    "invalid_views",
    "duplicate_date",
    "history_too_short",
    "history_too_long",
    "no_views",
    "feature_error",
]


class ItemError(BaseModel):
    code: ErrorCode
    message: str


class ScoreError(BaseModel):
    """An instance that could not be scored; the rest of the batch is unaffected."""

    domain_code: str
    error: ItemError


class ScoreResponse(BaseModel):
    results: list[ScoreResult | ScoreError] = Field(description="one per instance, in request order")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model_loaded: bool


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str
    snapshot_as_of: date | None


class NotReadyResponse(BaseModel):
    status: Literal["loading", "unavailable"]
    detail: str
    attempts: int


class SnapshotInfo(BaseModel):
    path: str
    as_of: date | None
    domains: int
    loaded_at: datetime


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    alias: str
    model_uri: str
    run_id: str | None
    threshold: float
    test_metrics: dict[str, Any] = Field(description="meta['metrics']['test'] of the model")
    features: list[str]
    loaded_at: datetime
    snapshot: SnapshotInfo | None
    snapshot_as_of: date | None
    snapshot_error: str | None = None
    registry_error: str | None = Field(
        default=None, description="why the last registry check failed (the loaded model keeps serving)"
    )


class ReloadResponse(BaseModel):
    changed: bool = Field(description="true when a model was loaded and swapped in (a new version, or force)")
    previous_version: str | None
    model_version: str
    snapshot_as_of: date | None
    snapshot_domains: int
    snapshot_error: str | None = None


class ErrorBody(BaseModel):
    detail: str
    request_id: str | None = None
