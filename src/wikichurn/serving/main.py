"""The wikichurn scoring service: ``create_app()`` and ``run()``.

Run it with ``wikichurn serve``, with :func:`run`, or with uvicorn's factory mode::

    uvicorn wikichurn.serving.main:create_app --factory --host 127.0.0.1 --port 8000 --workers 1

One worker per process: the model is small and scoring is CPU-bound, and several workers on a
two-core machine make keep-alive requests much slower (see docs/serving.md). Settings come from
``WIKICHURN_SERVING__*`` variables and the model from MLflow's ``MLFLOW_TRACKING_URI``.

The process never imports pyspark (:func:`wikichurn.serving.nospark.forbid_pyspark`).
"""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from wikichurn.core.settings import ChurnSettings
from wikichurn.serving.config import ServingSettings, load_serving_settings
from wikichurn.serving.nospark import forbid_pyspark
from wikichurn.serving.registry import ModelLoader, RegistryModelLoader
from wikichurn.serving.routes import admin_router, health_router, model_router, score_router
from wikichurn.serving.service import ScoringService
from wikichurn.serving.timeouts import BodyTimeoutMiddleware
from wikichurn.serving.validation import validation_error

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"

# Built on first access by the module __getattr__ below (for `uvicorn wikichurn.serving.main:app`).
app: FastAPI


def create_app(
    settings: ServingSettings | None = None,
    scorer_loader: ModelLoader | None = None,
    *,
    churn: ChurnSettings | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the scoring app.

    The model is resolved once in the lifespan (and again on ``POST /admin/reload`` or by the
    periodic alias check); if the registry is unavailable the app starts anyway, ``/ready`` and
    ``/score`` answer 503, and loading is retried in the background.

    Args:
        settings: service settings (default: :func:`wikichurn.serving.config.load_serving_settings`).
        scorer_loader: where models come from (default: the MLflow registry alias
            ``models:/<model_name>@<model_alias>``).
        churn: the churn definition for the daily_views form; the model's ``meta["label"]``
            overrides its horizon, window and factor (default: ``load_settings().churn``).
        freeze_heap: once the first model is loaded, move every live object out of the cycle
            collector's reach (``gc.freeze``), as :func:`run` does for its one app per process.
    """
    forbid_pyspark()
    settings = settings or load_serving_settings()
    if churn is None:
        from wikichurn.core.settings import load_settings

        churn = load_settings().churn
    loader = scorer_loader or RegistryModelLoader(settings.model_name, settings.model_alias, settings.model_cache_dir)
    service = ScoringService(settings, loader, churn)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        if freeze_heap and service.current is not None:
            # The imports (MLflow, pandas, pyarrow ...) and the model are ~1M objects: a full pass of
            # the cycle collector over them stalls a request for ~0.2 s, the p99 of large batches
            # (whose thousands of small dicts trigger full passes). Frozen, the passes skip them.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="wikichurn scoring service",
        summary="Risk that a Wikimedia domain's traffic collapses, per domain.",
        version="1",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
    )
    app.state.settings = settings
    app.state.service = service
    for router in (health_router, model_router, score_router, admin_router):
        app.include_router(router)
    app.add_exception_handler(Exception, _unhandled_error)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]  # Starlette types the handler for Exception
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    return app


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    log.error("unhandled error in %s %s [request_id=%s]", request.method, request.url.path, request_id, exc_info=exc)
    return JSONResponse(
        {"detail": "internal error; quote the request_id when reporting it", "request_id": request_id},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        headers={REQUEST_ID_HEADER: request_id},
    )


def run(
    host: str | None = None,
    port: int | None = None,
    *,
    settings: ServingSettings | None = None,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Serve the app with uvicorn: one worker, blocking until interrupted.

    Args:
        host: address to bind (default: ``settings.host``, 127.0.0.1).
        port: port (default: ``settings.port``, 8000).
        settings: service settings (default: from the environment).
        access_log: log one line per request (off: it costs about as much as scoring).
        log_level: uvicorn's log level.
    """
    import uvicorn

    if not logging.getLogger().handlers:  # the CLI configures logging; a bare run() gets this
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings or load_serving_settings()
    app = create_app(settings, freeze_heap=True)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        workers=1,
        access_log=access_log,
        log_level=log_level,
    )


def __getattr__(name: str) -> Any:
    # `uvicorn wikichurn.serving.main:app` works too; the app is built on first access, not at import.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
