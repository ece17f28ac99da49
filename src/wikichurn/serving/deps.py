"""FastAPI dependencies, as ``Annotated`` aliases for the route signatures.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool,
and those hops cost more than scoring a row. ``POST /score`` uses none at all (see
:func:`wikichurn.serving.routes.score`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from wikichurn.serving.scoring import ServingState
from wikichurn.serving.service import ScoringService


async def get_service(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.service
    return service


async def get_state(service: Annotated[ScoringService, Depends(get_service)]) -> ServingState:
    """The model and snapshot this request uses from start to end (503 while none is loaded)."""
    return current_state(service)


def current_state(service: ScoringService) -> ServingState:
    """``service.current``, read once, or a 503 while no model is loaded."""
    state = service.current
    if state is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=not_ready_message(service))
    return state


def not_ready_message(service: ScoringService) -> str:
    target = f"models:/{service.settings.model_name}@{service.settings.model_alias}"
    if service.last_error:
        return f"no model loaded yet: {service.last_error} (attempt {service.attempts}; retrying in the background)"
    return f"no model loaded yet: loading {target}"


ServiceDep = Annotated[ScoringService, Depends(get_service)]
StateDep = Annotated[ServingState, Depends(get_state)]
