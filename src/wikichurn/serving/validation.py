"""422 answers that cannot fail and stay small, whatever the request held.

FastAPI's default handler echoes every error with its ``input``: a ``NaN`` or ``1e999`` view count
then makes the 422 itself unserialisable (``allow_nan=False``), and the client gets a 500; a body of
600,000 bad instances yields 600,000 error objects that take a minute to encode. This handler keeps
the default shape (``{"detail": [{"loc", "msg", "type", "input"?}]}``) for at most
:data:`MAX_ERRORS` errors, drops inputs that are not small JSON values, and counts the rest in a header.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_ERRORS = 20
_MAX_INPUT_CHARS = 200


def _safe_input(value: Any) -> tuple[bool, Any]:
    if value is None or isinstance(value, bool | int):
        return (not isinstance(value, int) or abs(value) < 2**63), value
    if isinstance(value, float):
        return math.isfinite(value), value
    if isinstance(value, str):
        return len(value) <= _MAX_INPUT_CHARS, value
    return False, None


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """The first :data:`MAX_ERRORS` validation errors as a 422, JSON-safe."""
    errors = exc.errors()
    detail = []
    for error in errors[:MAX_ERRORS]:
        item: dict[str, Any] = {
            "loc": [part if isinstance(part, int | str) else str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        keep, value = _safe_input(error.get("input"))
        if keep:
            item["input"] = value
        detail.append(item)
    return JSONResponse(
        {"detail": detail},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        headers={"X-Validation-Errors": str(len(errors))},
    )
