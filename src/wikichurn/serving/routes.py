"""The API: one router per resource (health, model, score, admin)."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from wikichurn.serving.config import ServingSettings
from wikichurn.serving.deps import ServiceDep, StateDep, current_state, not_ready_message
from wikichurn.serving.fastroute import RawJsonBodyRoute
from wikichurn.serving.registry import ModelUnavailableError
from wikichurn.serving.schemas import (
    ErrorBody,
    HealthResponse,
    ModelInfo,
    NotReadyResponse,
    ReadyResponse,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
    SnapshotInfo,
)
from wikichurn.serving.scoring import score_instances

log = logging.getLogger(__name__)

# Batches this small (snapshot look-ups, and a few histories at ~0.2 ms of features each) are
# scored on the event loop: a thread hop would cost more than the scoring. Anything else runs in
# the thread pool so the loop stays free.
INLINE_MAX_INSTANCES = 64
INLINE_MAX_HISTORIES = 4

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody, "description": "no model loaded yet"}}

health_router = APIRouter(tags=["health"])
model_router = APIRouter(tags=["model"])
# The body of /score is validated from its raw bytes (see wikichurn.serving.fastroute).
score_router = APIRouter(tags=["score"], route_class=RawJsonBodyRoute)
admin_router = APIRouter(prefix="/admin", tags=["admin"])


@health_router.get("/health", response_model=HealthResponse)
async def health(service: ServiceDep) -> HealthResponse:
    """The process is up (whether or not a model is loaded)."""
    return HealthResponse(model_loaded=service.current is not None)


@health_router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": NotReadyResponse, "description": "no model loaded yet"}},
)
async def ready(service: ServiceDep) -> Any:
    """A model is loaded and /score answers."""
    state = service.current
    if state is None:
        body = NotReadyResponse(
            status="unavailable" if service.last_error else "loading",
            detail=not_ready_message(service),
            attempts=service.attempts,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    snapshot = state.snapshot
    return ReadyResponse(model_version=state.model.version, snapshot_as_of=snapshot.as_of if snapshot else None)


@model_router.get("/model", response_model=ModelInfo, responses=_UNAVAILABLE)
async def model_info(state: StateDep, service: ServiceDep) -> ModelInfo:
    """The served model version, the feature snapshot, and whether the registry answers."""
    model, snapshot = state.model, state.snapshot
    meta = model.meta
    return ModelInfo(
        name=model.ref.name,
        version=model.version,
        alias=model.ref.alias,
        model_uri=model.ref.uri,
        run_id=model.ref.run_id or meta.get("run_id"),
        threshold=model.scorer.threshold,
        test_metrics=dict((meta.get("metrics") or {}).get("test") or {}),
        features=list(model.scorer.features),
        loaded_at=model.loaded_at,
        snapshot=(
            SnapshotInfo(path=snapshot.path, as_of=snapshot.as_of, domains=len(snapshot), loaded_at=snapshot.loaded_at)
            if snapshot is not None
            else None
        ),
        snapshot_as_of=snapshot.as_of if snapshot is not None else None,
        snapshot_error=state.snapshot_error,
        registry_error=service.registry_error,
    )


@score_router.post(
    "/score",
    response_model=ScoreResponse,
    response_model_exclude_unset=True,
    responses={
        400: {"model": ErrorBody, "description": "the body is not decodable (not UTF-8)"},
        413: {
            "model": ErrorBody,
            "description": "more instances than max_batch (or max_history_batch), or a body over max_body_bytes",
        },
        **_UNAVAILABLE,
    },
)
async def score(
    body: ScoreRequest,
    request: Request,
    explain: Annotated[bool, Query(description="same as explain in the body")] = False,
) -> Any:
    """Risk scores for a batch of domains, in request order; bad instances get an error in place."""
    # No Depends() here: each dependency costs FastAPI about as much as scoring a row (~70 us).
    started = time.perf_counter()
    state = current_state(request.app.state.service)
    settings: ServingSettings = request.app.state.settings
    instances = body.instances
    if len(instances) > settings.max_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"{len(instances)} instances in one request; at most {settings.max_batch} (split the batch)",
        )
    with_history = sum(1 for i in instances if i.daily_views is not None)
    if with_history > settings.max_history_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=(
                f"{with_history} instances with daily_views in one request; at most {settings.max_history_batch} "
                "(each costs a feature computation: split the batch)"
            ),
        )
    scorer = partial(
        score_instances,
        explain=explain or body.explain,
        top_k=settings.explain_top_k,
        max_history_days=settings.max_history_days,
    )
    if len(instances) <= INLINE_MAX_INSTANCES and with_history <= INLINE_MAX_HISTORIES:
        results = scorer(state, instances)
    else:
        results = await run_in_threadpool(scorer, state, instances)
    # The results are built to ScoreResponse's shape by score_instances (and tested against it):
    # encoded here with orjson, they skip FastAPI's response-model validation and JSON encoder,
    # which cost more than the scoring itself. Server-Timing: scoring + encoding, in ms.
    content = orjson.dumps({"results": results})
    elapsed = (time.perf_counter() - started) * 1e3
    return Response(content, media_type="application/json", headers={"Server-Timing": f"score;dur={elapsed:.3f}"})


@admin_router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={503: {"model": ErrorBody, "description": "the registry or the model is unavailable"}},
)
async def reload(
    service: ServiceDep,
    force: Annotated[bool, Query(description="reload the model even if the alias did not move")] = False,
) -> ReloadResponse:
    """Re-resolve the alias and re-read the snapshot; swap atomically (in-flight requests keep the old model)."""
    try:
        outcome = await service.reload(force_model=force)
    except Exception as exc:  # ModelUnavailableError, or whatever a custom loader raises
        if not isinstance(exc, ModelUnavailableError):
            log.warning("reload failed", exc_info=True)
        still = f"; still serving version {service.version}" if service.version else ""
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"reload failed: {exc}{still}") from exc
    snapshot = outcome.state.snapshot
    return ReloadResponse(
        changed=outcome.changed,
        previous_version=outcome.previous_version,
        model_version=outcome.state.model.version,
        snapshot_as_of=snapshot.as_of if snapshot else None,
        snapshot_domains=len(snapshot) if snapshot else 0,
        snapshot_error=outcome.state.snapshot_error,
    )
