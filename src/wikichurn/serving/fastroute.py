"""A route class that validates a JSON body straight from its bytes (``POST /score``'s hot path).

FastAPI decodes a body with ``json.loads`` and then validates the Python objects against the
model, about 1 us per day of history. Here a clean request (``Content-Type: application/json``,
no query string, a body the model accepts) is validated in one pass by pydantic-core
(``model_validate_json``, in Rust) and handed to the endpoint. Anything else, including every
body the fast pass refuses, goes to FastAPI's own handler, which reads the cached body again and
answers exactly as before (the same 400s and 422s, the same error shapes). The route, its
parameters and its OpenAPI schema are FastAPI's, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

_JSON = "application/json"


class RawJsonBodyRoute(APIRoute):
    """An :class:`APIRoute` whose one body parameter, a pydantic model, is validated from raw JSON.

    The endpoint must take the body as ``body`` and the request as ``request``; its other
    parameters keep their defaults on the fast path (a request with a query string takes
    FastAPI's path, which validates them).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind the raw-bytes fast path."""
        slow = super().get_route_handler()
        field = self.body_field
        model = field.field_info.annotation if field is not None else None
        if self._embed_body_fields or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return slow  # nothing to speed up: not one model as the whole body
        endpoint = self.endpoint
        validate = model.model_validate_json

        async def handler(request: Request) -> Response:
            scope = request.scope
            content_type = request.headers.get("content-type", "")
            if scope["query_string"] or not (content_type == _JSON or content_type.startswith(_JSON + ";")):
                return await slow(request)
            try:
                raw = await request.body()
            except HTTPException:  # the body limit's 413, as FastAPI lets it through
                raise
            except Exception as exc:  # a client gone mid-body, as FastAPI maps it
                raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc
            try:
                body = validate(raw)
            except ValidationError:
                return await slow(request)  # the exact 4xx of FastAPI's path (the body is cached)
            response: Response = await endpoint(body=body, request=request)
            return response

        return handler
