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

`run_asgi` and `send` come from a meter: the compiled `_meter.Meter` (C, built at install)
or its pure-Python twin `PythonMeter`, which does the same at about twice the cost per
request (docs/metrics.md has the figures). The compiled one is used whenever it was built,
unless ASGISCALE_NO_EXTENSIONS is set.

The app sees uvicorn's `send` and `receive` methods and nothing else: exceptions, lifespan
state, `root_path`, streaming and background tasks are untouched. A request whose
response never completes is found on the worker's next tick (100 ms): if its connection is
gone it is recorded as a 500 when the response had started (the app failed mid-way, or the
response broke off), as a 499 when it had not (the client left first). WebSocket sessions
are counted through a subclass of the WebSocket protocol, never as HTTP requests. A request
uvicorn's HTTP parser refuses (malformed) never reaches a cycle: uvicorn answers it 400
itself, and a subclass of the HTTP protocol counts it then, straight into the slot.

With admission control (`Admission`), `run_asgi` also decides whether the request runs
now, waits in a bounded FIFO queue for a free place, or is refused at once with `503` and
`Retry-After` (counted as shed). The check is built into the cycle class only when a limit
is set, so a worker without one pays nothing for it.

This relies on uvicorn internals (the module-level `RequestResponseCycle` name of both HTTP
implementations, the `send`, `receive` and `run_asgi` methods of a cycle, and the protocols'
`send_400_response`); `install` checks them and fails loudly if a uvicorn release changes them.

    >>> instrumentation = Instrumentation(Recorder(slot))  # doctest: +SKIP
    >>> uninstall = instrumentation.install(config)  # a loaded uvicorn.Config  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import uvicorn

from asgiscale.config import NO_EXTENSIONS
from asgiscale.runtime.metrics import BOUNDS_NS, Recorder
from asgiscale.runtime.shm import BUCKETS, Field

if TYPE_CHECKING:
    from asgiscale.runtime._meter import Meter

_now = time.monotonic_ns  # CLOCK_MONOTONIC, as the compiled meter reads it
STATUS_CLIENT_GONE = 499  # the client closed the connection before any response
STATUS_SHED = 503
_SHED_BODY = b"Service Unavailable: the server is at capacity, retry later.\n"


@dataclasses.dataclass(frozen=True)
class Admission:
    """Per-worker admission control: at most `limit` requests run at once, at most `queue`
    more wait (first come, first served) up to `timeout` seconds; the rest get 503 at once."""

    limit: int
    queue: int
    timeout: float

    @property
    def retry_after(self) -> bytes:
        """Seconds a refused client is told to wait: about one queue's worth of patience."""
        return str(max(1, round(self.timeout))).encode()


def _nothing() -> None:
    pass


class PythonMeter:
    """The per-request step in plain Python, the same as the compiled `_meter.Meter` does it.

    Used where the C extension was not built (no compiler at install time) or is turned off
    with ASGISCALE_NO_EXTENSIONS=1; it costs about twice as much per request
    (benchmarks/request_path.py). `run_asgi` and `send` are plain functions, so they bind as
    the cycle's methods; everything they touch is a local of the closure.
    """

    def __init__(
        self,
        base_run: Any,
        base_send: Any,
        open_: dict[Any, int],
        recorder: Recorder,
        waiting: deque[asyncio.Future[bool]],
        admit_next: Callable[[], None],
    ) -> None:
        self.open = open_
        self.response_bytes = 0
        busy = self._busy = [0, 0]  # time busy so far, start of the current busy stretch (ns)
        series, counts_of = recorder.series, recorder.counts
        bisect, bounds, total, now, meter = bisect_left, BOUNDS_NS, BUCKETS, _now, self

        def count(method: str, status: int, duration: int) -> None:
            try:
                counts = series[method][status]
            except KeyError:
                counts = counts_of(method, status)
            counts[bisect(bounds, duration)] += 1
            counts[total] += duration

        def finish(cycle: Any, status: int, started: int) -> None:
            end = now()
            if not open_:
                busy[0] += end - busy[1]
            count(cycle.scope["method"], status, end - started)
            if waiting:
                admit_next()

        # Plain functions returning uvicorn's own coroutines: no frame added per call.
        def run_asgi(cycle: Any, app: Any) -> Any:
            started = now()
            if not open_:
                busy[1] = started
            open_[cycle] = started
            return base_run(cycle, app)

        def send(cycle: Any, message: Any) -> Any:
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body")
                if body:
                    meter.response_bytes += len(body)
                if not message.get("more_body"):
                    started = open_.pop(cycle, None)
                    if started is not None:
                        finish(cycle, cycle.status, started)
            elif kind == "http.response.start":
                cycle.status = message["status"]
            return base_send(cycle, message)

        self.count, self.finish, self.run_asgi, self.send = count, finish, run_asgi, send

    def begin(self, cycle: Any, started: int, since: int) -> None:
        """Note `cycle` as open since `since` (ns); the worker is busy from `started`."""
        if not self.open:
            self._busy[1] = started
        self.open[cycle] = since

    def busy_ns(self) -> int:
        busy, since = self._busy
        return busy + _now() - since if self.open else busy


def compiled_meter() -> type[Meter] | None:
    """The compiled `Meter` class, or None where it was not built or ASGISCALE_NO_EXTENSIONS is set."""
    if os.environ.get(NO_EXTENSIONS):
        return None
    try:
        from asgiscale.runtime._meter import Meter
    except ImportError:
        return None
    return Meter


class Instrumentation:
    """One worker's request accounting; `install` puts it into a loaded uvicorn config.

    `compiled` picks the meter: the C one when it is built (the default), or `PythonMeter`.
    """

    def __init__(self, recorder: Recorder, admission: Admission | None = None, *, compiled: bool | None = None) -> None:
        self.recorder = recorder
        self.admission = admission
        self.meter_class = compiled_meter() if compiled is not False else None
        if compiled and self.meter_class is None:
            raise RuntimeError("the compiled meter is not built (or ASGISCALE_NO_EXTENSIONS is set)")
        self.meter: Meter | PythonMeter | None = None  # set by install
        self.waiting: deque[asyncio.Future[bool]] = deque()  # requests queued for admission
        self.queued = 0  # requests that waited in the queue and were admitted
        self.queue_wait_ns = 0  # their total wait
        self.shed = 0  # requests refused
        self.open: dict[Any, int] = {}  # cycles started and not yet recorded -> start (ns)
        self.websockets = 0
        self.websockets_total = 0

    @property
    def compiled(self) -> bool:
        return self.meter_class is not None

    @property
    def active(self) -> int:
        """HTTP requests whose response is not complete yet."""
        return len(self.open)

    def busy_ns(self) -> int:
        """Time spent with at least one HTTP response in progress, up to now."""
        return 0 if self.meter is None else int(self.meter.busy_ns())

    def install(self, config: uvicorn.Config) -> Callable[[], None]:
        """Measure every request `config`'s server runs; returns the function that undoes it."""
        http_class = config.http_protocol_class
        module = sys.modules[http_class.__module__]
        base = getattr(module, "RequestResponseCycle", None)
        missing = [name for name in ("run_asgi", "send", "receive") if not hasattr(base, name)]
        if base is None or missing or not hasattr(http_class, "send_400_response"):
            raise RuntimeError(f"this uvicorn ({uvicorn.__version__}) has no request cycle to instrument")
        module.RequestResponseCycle = self.cycle_class(base)  # type: ignore[attr-defined]
        config.http_protocol_class = self._http_class(http_class)
        ws_class = config.ws_protocol_class
        if ws_class is not None:
            config.ws_protocol_class = self._websocket_class(ws_class)

        def uninstall() -> None:
            module.RequestResponseCycle = base  # type: ignore[attr-defined]
            config.http_protocol_class = http_class
            config.ws_protocol_class = ws_class

        return uninstall

    def flush(self) -> None:
        """Record the requests whose connection was lost before their response completed, then
        copy the counts into the slot (the worker's tick calls this every 100 ms)."""
        meter = self.meter
        if meter is None:
            return
        for cycle in [c for c in self.open if c.disconnected or c.transport.is_closing()]:
            meter.finish(cycle, 500 if cycle.response_started else STATUS_CLIENT_GONE, self.open.pop(cycle))
        self.recorder.response_bytes = meter.response_bytes
        self.recorder.flush()

    def cycle_class(self, base: Any) -> type:
        """The measured subclass of `base`, a request cycle class with uvicorn's `run_asgi(app)`,
        `send(message)` and `receive()`; this instrumentation's meter is the one it feeds."""
        base_run, base_send, base_receive = base.run_asgi, base.send, base.receive
        admit_next, run_admitted = self._admission(base_run) if self.admission else (_nothing, None)
        recorder = self.recorder
        meter: Meter | PythonMeter
        if self.meter_class is not None:
            meter = self.meter_class(
                base_run, base_send, self.open, recorder.words, recorder.place, BOUNDS_NS, self.waiting, admit_next
            )
        else:
            meter = PythonMeter(base_run, base_send, self.open, recorder, self.waiting, admit_next)
        self.meter = meter

        class MeasuredCycle(base):  # type: ignore[misc]
            status = 500
            run_asgi = meter.run_asgi
            send = meter.send

            async def receive(self) -> Any:
                message = await base_receive(self)
                body = message.get("body")
                if body:
                    recorder.request_bytes += len(body)
                return message

        if run_admitted is None:
            return MeasuredCycle

        class AdmittedCycle(MeasuredCycle):
            run_asgi = run_admitted  # type: ignore[assignment]

        return AdmittedCycle

    def _live_meter(self) -> Meter | PythonMeter:
        if self.meter is None:
            raise RuntimeError("the instrumentation is not installed")
        return self.meter

    def _admission(self, base_run: Any) -> tuple[Callable[[], None], Callable[[Any, Any], Any]]:
        """`admit_next` (called when a request finishes) and the `run_asgi` that admits, queues or sheds."""
        assert self.admission is not None
        limit, capacity, timeout = self.admission.limit, self.admission.queue, self.admission.timeout
        refusal = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_SHED_BODY)).encode()),
            (b"retry-after", self.admission.retry_after),
        ]
        open_, waiting, now = self.open, self.waiting, _now
        handed_over = [0]  # places given to queued requests that have not started yet

        def admit_next() -> None:
            while waiting and len(open_) + handed_over[0] < limit:
                future = waiting.popleft()
                if not future.done():
                    handed_over[0] += 1
                    future.set_result(True)

        def start(cycle: Any, arrived: int) -> None:
            # The recorded duration includes the wait, as the client saw it.
            self._live_meter().begin(cycle, now(), arrived)

        def run_asgi(cycle: Any, app: Any) -> Any:
            # Decided here, when uvicorn has parsed the request, not when its task first runs:
            # a worker busy with CPU-bound requests parses many before it runs any task.
            arrived = now()
            if not waiting and len(open_) + handed_over[0] < limit:
                start(cycle, arrived)
                return base_run(cycle, app)
            if len(waiting) >= capacity:
                return shed(cycle, arrived)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[bool] = loop.create_future()
            waiting.append(future)
            return wait(cycle, app, arrived, future, loop.call_later(timeout, expire, future))

        async def wait(
            cycle: Any, app: Any, arrived: int, future: asyncio.Future[bool], expiry: asyncio.TimerHandle
        ) -> None:
            try:
                admitted = await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled() and future.result():
                    handed_over[0] -= 1  # our place goes to the next in line
                    admit_next()
                elif future in waiting:
                    waiting.remove(future)
                raise
            finally:
                expiry.cancel()
            if not admitted:
                return await shed(cycle, arrived)
            handed_over[0] -= 1
            self.queued += 1
            self.queue_wait_ns += now() - arrived
            start(cycle, arrived)
            await base_run(cycle, app)

        def expire(future: asyncio.Future[bool]) -> None:
            if not future.done():
                waiting.remove(future)
                future.set_result(False)

        async def refuse(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": STATUS_SHED, "headers": refusal})
            await send({"type": "http.response.body", "body": _SHED_BODY})

        async def shed(cycle: Any, arrived: int) -> None:
            self.shed += 1
            await base_run(cycle, refuse)  # uvicorn's own send writes the 503
            self._live_meter().count(cycle.scope["method"], STATUS_SHED, now() - arrived)

        return admit_next, run_asgi

    def _http_class(self, base: type) -> type:
        slot = self.recorder.slot

        class MeasuredHTTP(base):  # type: ignore[misc]
            def send_400_response(self, msg: str) -> None:
                # Rare, so written at once: even a worker killed outright has counted it.
                slot.set(Field.MALFORMED, slot.get(Field.MALFORMED) + 1)
                super().send_400_response(msg)

        return MeasuredHTTP

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
