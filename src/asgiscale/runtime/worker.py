"""A worker: uvicorn's `Server` on the inherited listener, reporting into its slot.

Differences from a plain uvicorn server, each for one lifecycle promise:

* it writes READY into its slot once listening, and on every tick (100 ms) an event-loop
  heartbeat, the requests served and the requests in flight, read from uvicorn's own
  server state: nothing is added to the per-request path;
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
import faulthandler
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
from asgiscale.runtime.shm import Field, Slot, WorkerState

logger = logging.getLogger("asgiscale.error")


class WorkerServer(uvicorn.Server):
    """uvicorn's server with a slot, a heartbeat and a drain that drops no request."""

    def __init__(self, config: uvicorn.Config, slot: Slot, supervisor_pid: int, graceful_timeout: float) -> None:
        super().__init__(config)
        self.slot = slot
        self.supervisor_pid = supervisor_pid
        self.graceful_timeout = graceful_timeout

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

    async def on_tick(self, counter: int) -> bool:
        self.slot.set(Field.HEARTBEAT_NS, time.monotonic_ns())
        self.slot.set(Field.REQUESTS, self.server_state.total_requests)
        self.slot.set(Field.IN_FLIGHT, len(self.server_state.tasks))
        if os.getppid() != self.supervisor_pid and not self.should_exit:
            logger.warning("The supervisor is gone; worker [%d] stops.", os.getpid())
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.slot.set(Field.STATE, WorkerState.DRAINING)
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


def serve(
    config: uvicorn.Config,
    sockets: list[socket.socket],
    slot: Slot,
    supervisor_pid: int,
    graceful_timeout: float,
) -> NoReturn:
    """The body of a freshly forked worker process; never returns."""
    code = 0
    try:
        # Signal handling is already the pre-loaded process's (see detach_from_supervisor).
        # The supervisor sends SIGUSR1 before killing a blocked worker: show where it was stuck.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        _wait_for_adoption(supervisor_pid)
        slot.set(Field.PID, os.getpid())
        slot.set(Field.STATE, WorkerState.BOOTING)
        server = WorkerServer(config, slot, supervisor_pid, graceful_timeout)
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
