"""Request metrics taken inside uvicorn's own request cycle, with no ASGI layer around the app.

An ASGI middleware that records each request costs more than the 3 % budget on a fast app:
every request pays for an extra call of the app, two wrapped `send` calls and the closures
(measured in docs/benchmarks.md). So the worker instead gives uvicorn a subclass of its
`RequestResponseCycle` (the object that runs one request and whose `send` the app calls):

* `run_asgi` notes the start time and hands back uvicorn's own coroutine, so no frame is
  added around the app;
* `send` notes the status and the body sizes, and records the request into the slot when
  the app hands over the last body message; it too returns uvicorn's own awaitable;
* `receive` (called only when the app reads the body) counts the request body.

The app sees uvicorn's `send` and `receive` methods and nothing else: exceptions, lifespan
state, `root_path`, streaming and background tasks are untouched. A request whose
response never completes is found on the worker's next tick (100 ms): if its connection is
gone it is recorded as a 500 when the response had started (the app failed mid-way, or the
response broke off), as a 499 when it had not (the client left first). WebSocket sessions
are counted through a subclass of the WebSocket protocol, never as HTTP requests.

This relies on uvicorn internals (the module-level `RequestResponseCycle` name of both HTTP
implementations, and the `send`, `receive` and `run_asgi` methods of a cycle); `install`
checks them and fails loudly if a uvicorn release changes them.

    >>> instrumentation = Instrumentation(Recorder(slot))  # doctest: +SKIP
    >>> uninstall = instrumentation.install(config)  # a loaded uvicorn.Config  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import uvicorn

from asgiscale.runtime.metrics import BOUNDS_NS, Recorder
from asgiscale.runtime.shm import BUCKETS

_now = time.perf_counter_ns
STATUS_CLIENT_GONE = 499  # the client closed the connection before any response


class Instrumentation:
    """One worker's request accounting; `install` puts it into a loaded uvicorn config."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.open: dict[Any, int] = {}  # cycles started and not yet recorded -> start (ns)
        self.websockets = 0
        self.websockets_total = 0
        self._busy = [0, 0]  # time busy so far, start of the current busy stretch (ns)
        self._finish: Callable[[Any, int], None] = lambda cycle, status: None  # set by install

    @property
    def active(self) -> int:
        """HTTP requests whose response is not complete yet."""
        return len(self.open)

    def busy_ns(self) -> int:
        """Time spent with at least one HTTP response in progress, up to now."""
        busy, since = self._busy
        return busy + _now() - since if self.open else busy

    def install(self, config: uvicorn.Config) -> Callable[[], None]:
        """Measure every request `config`'s server runs; returns the function that undoes it."""
        module = sys.modules[config.http_protocol_class.__module__]
        base = getattr(module, "RequestResponseCycle", None)
        missing = [name for name in ("run_asgi", "send", "receive") if not hasattr(base, name)]
        if base is None or missing:
            raise RuntimeError(f"this uvicorn ({uvicorn.__version__}) has no request cycle to instrument")
        module.RequestResponseCycle = self._cycle_class(base)  # type: ignore[attr-defined]
        ws_class = config.ws_protocol_class
        if ws_class is not None:
            config.ws_protocol_class = self._websocket_class(ws_class)

        def uninstall() -> None:
            module.RequestResponseCycle = base  # type: ignore[attr-defined]
            config.ws_protocol_class = ws_class

        return uninstall

    def flush(self) -> None:
        """Record the requests whose connection was lost before their response completed, then
        copy the counts into the slot (the worker's tick calls this every 100 ms)."""
        for cycle in [c for c in self.open if c.disconnected or c.transport.is_closing()]:
            self._finish(cycle, 500 if cycle.response_started else STATUS_CLIENT_GONE)
        self.recorder.flush()

    def _cycle_class(self, base: Any) -> type:
        # Everything the hot path touches is a local of this closure, and nothing is added to
        # the cycle but its status: this is the whole per-request cost, so it is kept small.
        base_run, base_send, base_receive = base.run_asgi, base.send, base.receive
        open_, busy, recorder = self.open, self._busy, self.recorder
        counts_of = recorder.counts
        bisect, bounds, total = bisect_left, BOUNDS_NS, BUCKETS
        now = _now

        def finish(cycle: Any, status: int) -> None:
            end = now()
            duration = end - open_.pop(cycle)
            if not open_:
                busy[0] += end - busy[1]
            counts = counts_of(cycle.scope["method"], status)
            counts[bisect(bounds, duration)] += 1
            counts[total] += duration

        self._finish = finish

        class MeasuredCycle(base):  # type: ignore[misc]
            status = 500

            # Plain functions returning uvicorn's own coroutines: no frame added per call.
            def run_asgi(self, app: Any) -> Any:
                started = now()
                if not open_:
                    busy[1] = started
                open_[self] = started
                return base_run(self, app)

            def send(self, message: Any) -> Any:
                kind = message["type"]
                if kind == "http.response.body":
                    body = message.get("body")
                    if body:
                        recorder.response_bytes += len(body)
                    if not message.get("more_body") and self in open_:
                        finish(self, self.status)
                elif kind == "http.response.start":
                    self.status = message["status"]
                return base_send(self, message)

            async def receive(self) -> Any:
                message = await base_receive(self)
                body = message.get("body")
                if body:
                    recorder.request_bytes += len(body)
                return message

        return MeasuredCycle

    def _websocket_class(self, base: type) -> type:
        instrumentation = self

        class MeasuredWebSocket(base):  # type: ignore[misc]
            async def run_asgi(self) -> None:
                instrumentation.websockets += 1
                instrumentation.websockets_total += 1
                try:
                    await super().run_asgi()
                finally:
                    instrumentation.websockets -= 1

        return MeasuredWebSocket
