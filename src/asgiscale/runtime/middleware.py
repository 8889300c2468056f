"""The ASGI middleware every worker wraps around the app.

It keeps the worker's slot current (requests started, requests in flight) and, once the
worker drains, asks each client to reconnect elsewhere by answering `Connection: close`:
a keep-alive connection is then closed by the client after a complete response, never
under a request the client is sending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiscale.runtime.shm import Field, Slot

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WorkerContext:
    """What the middleware, created before the fork, learns in the worker after it."""

    slot: Slot | None = None
    draining: bool = False


class RuntimeMiddleware:
    """Counts requests into the worker's slot and closes connections while draining."""

    def __init__(self, app: ASGIApp, context: WorkerContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = self.context.slot
        if scope["type"] == "lifespan" or slot is None:
            await self.app(scope, receive, send)
            return
        slot.add(Field.REQUESTS, 1)
        slot.add(Field.IN_FLIGHT, 1)
        try:
            if self.context.draining and scope["type"] == "http":
                await self.app(scope, receive, _closing(send))
            else:
                await self.app(scope, receive, send)
        finally:
            slot.add(Field.IN_FLIGHT, -1)


def _closing(send: Send) -> Send:
    async def send_with_close(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return send_with_close
