"""A worker: uvicorn's `Server` on the inherited listener, reporting into its slot.

Differences from a plain uvicorn server, each for one lifecycle promise:

* it measures every request inside uvicorn's request cycle (unless --no-metrics; see
  `asgiscale.runtime.instrument`), writes READY into its slot once listening, and on every
  tick (100 ms) an event-loop heartbeat and the in-flight and busy figures;
* with --readiness, it runs the app's readiness check every second and publishes the
  answer in its slot (a failing check makes the service unready; it never kills a worker);
* SIGTERM drains: the listener closes at once (the other workers keep accepting on the
  shared socket), every further response carries `Connection: close`, and idle keep-alive
  connections are left to their keep-alive timeout instead of being cut while a request
  may be on the wire; then uvicorn's own graceful shutdown runs with what is left of the
  budget;
* SIGINT is ignored (Ctrl-C belongs to the supervisor) and no signal is re-raised after
  shutdown, so a drained worker exits 0;
* it stops by itself if the supervisor disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import faulthandler
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any, NoReturn

import uvicorn

from asgiscale.config import EXIT_STARTUP_FAILURE
from asgiscale.runtime.instrument import Admission, Instrumentation
from asgiscale.runtime.metrics import Recorder
from asgiscale.runtime.shm import Field, Slot, WorkerState

logger = logging.getLogger("asgiscale.error")

READINESS_PERIOD = 1.0
READINESS_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs from the Config besides uvicorn's own settings."""

    graceful_timeout: float = 30.0
    metrics: bool = True
    readiness: Callable[[], Any] | None = None
    generation: int = 0
    admission: Admission | None = None


class WorkerServer(uvicorn.Server):
    """uvicorn's server with a slot, a heartbeat and a drain that drops no request."""

    def __init__(self, config: uvicorn.Config, slot: Slot, supervisor_pid: int, settings: WorkerSettings) -> None:
        super().__init__(config)
        self.slot = slot
        self.supervisor_pid = supervisor_pid
        self.graceful_timeout = settings.graceful_timeout
        self.readiness = settings.readiness
        self.metrics: Instrumentation | None = None
        self._uninstall: Callable[[], None] | None = None
        # Admission control lives in the same request hook, so it brings the counts with it.
        if settings.metrics or settings.admission is not None:
            if not config.loaded:
                config.load()
            self.metrics = Instrumentation(Recorder(slot), settings.admission)
            self._uninstall = self.metrics.install(config)
        self._readiness_task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle_exit)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.slot.set(Field.HEARTBEAT_NS, time.monotonic_ns())
            self.slot.set(Field.STATE, WorkerState.READY)
            if self.readiness is not None:
                self._readiness_task = asyncio.create_task(self._check_readiness(self.readiness))

    async def on_tick(self, counter: int) -> bool:
        slot = self.slot
        slot.set(Field.HEARTBEAT_NS, time.monotonic_ns())
        slot.set(Field.REQUESTS, self.server_state.total_requests)
        metrics = self.metrics
        if metrics is None:
            slot.set(Field.IN_FLIGHT, len(self.server_state.tasks))
        else:
            metrics.flush()
            # Requests waiting for admission count too: demand beyond --max-concurrency must show.
            slot.set(Field.IN_FLIGHT, metrics.active + len(metrics.waiting))
            slot.set(Field.WS_ACTIVE, metrics.websockets)
            slot.set(Field.WS_TOTAL, metrics.websockets_total)
            slot.set(Field.BUSY_NS, metrics.busy_ns())
            slot.set(Field.QUEUED, metrics.queued)
            slot.set(Field.QUEUE_WAIT_NS, metrics.queue_wait_ns)
            slot.set(Field.SHED, metrics.shed)
        if os.getppid() != self.supervisor_pid and not self.should_exit:
            logger.warning("The supervisor is gone; worker [%d] stops.", os.getpid())
            self.should_exit = True
        return await super().on_tick(counter)

    async def _check_readiness(self, check: Callable[[], Any]) -> None:
        """Publish the app's own readiness answer, once a second; a failure is logged when it starts."""
        passing: bool | None = None
        is_async = inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(type(check).__call__)
        while not self.should_exit:
            problem = ""
            try:
                if is_async:
                    answer = await asyncio.wait_for(check(), READINESS_TIMEOUT)
                else:
                    answer = await asyncio.wait_for(asyncio.to_thread(check), READINESS_TIMEOUT)
                if not answer:
                    problem = f"it returned {answer!r}"
            except asyncio.TimeoutError:
                problem = f"it did not answer within {READINESS_TIMEOUT:g}s"
            except Exception as exc:
                problem = f"it raised {type(exc).__name__}: {exc}"
            if passing is not (not problem):
                if problem:
                    logger.warning("Worker [%d] is not ready: the --readiness check failed (%s).", os.getpid(), problem)
                elif passing is not None:
                    logger.info("Worker [%d] is ready again: the --readiness check passes.", os.getpid())
            passing = not problem
            self.slot.set(Field.APP_READY, int(passing))
            await asyncio.sleep(READINESS_PERIOD)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.slot.set(Field.STATE, WorkerState.DRAINING)
        if self._readiness_task is not None:
            self._readiness_task.cancel()
        self.config.loaded_app = _closing(self.config.loaded_app)
        for server in self.servers:
            server.close()
        for connection in self.server_state.connections:
            # uvicorn's HTTP protocols read `app` for every request they start.
            if hasattr(connection, "app"):
                connection.app = self.config.loaded_app
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + min(self.config.timeout_keep_alive + 1, self.graceful_timeout)
        while self.server_state.connections and not self.force_exit and loop.time() < deadline:
            await asyncio.sleep(0.05)
        remaining = max(0.0, self.graceful_timeout - (loop.time() - started))
        self.config.timeout_graceful_shutdown = remaining  # type: ignore[assignment]  # uvicorn accepts a float
        await super().shutdown(sockets)
        if self.metrics is not None:
            self.metrics.flush()  # the last counts, before the worker exits
        if self._uninstall is not None:
            self._uninstall()  # only matters when the server ran inside another program (tests)


def serve(
    config: uvicorn.Config,
    sockets: list[socket.socket],
    slot: Slot,
    supervisor_pid: int,
    settings: WorkerSettings,
) -> NoReturn:
    """The body of a freshly forked worker process; never returns."""
    code = 0
    try:
        # Signal handling is already the pre-loaded process's (see detach_from_supervisor).
        # The supervisor sends SIGUSR1 before killing a blocked worker: show where it was stuck.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        _wait_for_adoption(supervisor_pid)
        slot.set(Field.STARTED_NS, time.time_ns())
        slot.set(Field.GENERATION, settings.generation)
        slot.set(Field.PID, os.getpid())
        slot.set(Field.STATE, WorkerState.BOOTING)
        server = WorkerServer(config, slot, supervisor_pid, settings)
        server.run(sockets=sockets)
        if not server.started:
            code = EXIT_STARTUP_FAILURE
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait_for_adoption(supervisor_pid: int, timeout: float = 5.0) -> None:
    """Wait until the intermediate parent has exited and the supervisor adopted us.

    From then on a parent other than the supervisor means the supervisor is gone.
    """
    deadline = time.monotonic() + timeout
    while os.getppid() != supervisor_pid and time.monotonic() < deadline:
        time.sleep(0.0005)


ASGIApp = Callable[
    [MutableMapping[str, Any], Any, Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]
]


def _closing(app: ASGIApp) -> ASGIApp:
    """`app`, with `Connection: close` on every HTTP response: clients reconnect elsewhere."""

    async def closing_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_close(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_with_close)

    return closing_app
