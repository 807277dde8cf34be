"""One request-size policy, enforced while the body streams in.

A declared ``Content-Length`` over the limit is answered 413 before a byte of the body is read; a
body without one (chunked) is counted as it arrives and refused the moment it passes the limit.
Either way the gateway never holds more than the limit of any request in memory. Each route
class has its own limit: JSON bodies are small, batch uploads large.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside body parsing; FastAPI passes HTTPExceptions through to the
                    # error handlers, which answer in the common error shape.
                    raise HTTPException(status_code=413, detail=_too_large(limit))
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"error": {"code": "payload_too_large", "message": _too_large(limit)}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            # The client may still be sending; closing tells it to stop instead of waiting for us.
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
