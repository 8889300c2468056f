"""The instrumentation middleware every worker wraps around the app.

It is transparent: scopes, messages, lifespan state and exceptions pass through
unchanged; it only watches. For each HTTP request it records the method, the status, the
duration (from the call of the app to the moment it hands over the last body message, so
background tasks after the response do not count as latency) and the body sizes into the worker's slot.
An exception before the response was complete is recorded as a 500 and raised again.
WebSocket sessions are counted on their own and never appear as long requests.

Requests in flight, open WebSockets and busy time are kept in plain attributes and copied
into the slot by the worker's 100 ms tick: nothing shared is touched twice per request.

    >>> app = MetricsMiddleware(app, Recorder(slot))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

from asgiscale.runtime.metrics import Recorder

_now = time.perf_counter_ns


class MetricsMiddleware:
    def __init__(self, app: Any, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder
        self.active = 0  # HTTP requests in flight
        self.websockets = 0
        self.websockets_total = 0
        self._busy_ns = 0
        self._busy_since = 0

    def busy_ns(self) -> int:
        """Time spent with at least one HTTP request in flight, up to now."""
        if self.active:
            return self._busy_ns + _now() - self._busy_since
        return self._busy_ns

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # One function for the HTTP path, on purpose: each extra call costs on every request.
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app never starts a response
        received = sent = finished = 0

        async def receive_counted() -> Any:
            nonlocal received
            message = await receive()
            body = message.get("body")
            if body:
                received += len(body)
            return message

        # Not a coroutine function: it hands back `send`'s own awaitable, which saves a frame
        # per message. The duration therefore ends as the last body message is handed over.
        def send_counted(message: Any) -> Any:
            nonlocal status, sent, finished
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body")
                if body:
                    sent += len(body)
                if not message.get("more_body"):
                    finished = _now()
            elif kind == "http.response.start":
                status = message["status"]
            return send(message)

        start = _now()
        if not self.active:
            self._busy_since = start
        self.active += 1
        try:
            await self.app(scope, receive_counted, send_counted)
        except BaseException:
            if not finished:
                status = 500
            raise
        finally:
            end = _now()
            self.active -= 1
            if not self.active:
                self._busy_ns += end - self._busy_since
            self.recorder.record(scope["method"], status, (finished or end) - start, received, sent)

    async def _websocket(self, scope: Any, receive: Any, send: Any) -> None:
        self.websockets += 1
        self.websockets_total += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.websockets -= 1
