"""A bound on how slowly a client may send its request body (slowloris-style bodies).

uvicorn limits idle keep-alive connections but not a body that trickles in: without a bound, a
client sending one byte a second holds a request (and its memory) for as long as it likes. This
ASGI middleware gives every chunk of a body ``timeout_s`` to arrive; past that the request is
answered ``408 Request Timeout`` and the connection closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTimeoutMiddleware:
    """Answer 408 when a request body stalls for more than ``timeout_s`` between chunks."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = answered = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:  # the 408 went out: whatever the app says afterwards is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def bounded_receive() -> Message:
            nonlocal answered
            try:
                # asyncio.timeout, not wait_for: no task per chunk (a tenth of a small request's time).
                async with asyncio.timeout(self.timeout_s):
                    return await receive()
            except TimeoutError:
                if not started and not answered:
                    answered = True
                    await _answer_408(send, self.timeout_s)
                # To the app the client is gone (Starlette raises ClientDisconnect for this).
                return {"type": "http.disconnect"}

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not answered:
                raise


async def _answer_408(send: Send, timeout_s: float) -> None:
    body = json.dumps({"detail": f"request body not received within {timeout_s:g} s"}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": body})
