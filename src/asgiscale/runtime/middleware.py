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

    def __init__(self) -> None:
        self.slot: Slot | None = None
        self.draining = False
        self._words: memoryview | None = None
        self._requests = 0
        self._in_flight = 0

    def attach(self, slot: Slot) -> None:
        self.slot = slot
        self._words = slot.words
        self._requests = slot.position(Field.REQUESTS)
        self._in_flight = slot.position(Field.IN_FLIGHT)


class RuntimeMiddleware:
    """Counts requests into the worker's slot and closes connections while draining."""

    def __init__(self, app: ASGIApp, context: WorkerContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = self.context
        words = context._words
        if words is None or scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        # Plain index arithmetic: this runs on every request.
        words[context._requests] += 1
        words[context._in_flight] += 1
        try:
            if context.draining and scope["type"] == "http":
                await self.app(scope, receive, _closing(send))
            else:
                await self.app(scope, receive, send)
        finally:
            words[context._in_flight] -= 1


def _closing(send: Send) -> Send:
    async def send_with_close(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return send_with_close
