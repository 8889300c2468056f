"""The admin server: probes, metrics, status and the dashboard, in a process of its own.

The supervisor forks it once its sockets are bound. It never touches the app: it reads
the shared table (workers' slots, the retired totals, the supervisor's block), /proc for
CPU and memory, and the supervisor's lifecycle events from a pipe. Running apart keeps
a slow scrape or a busy dashboard away from the supervisor loop, and lets `/healthz`
notice a supervisor loop that stopped turning.

    GET /          the live dashboard (one self-contained page)
    GET /healthz   200 while the supervisor loop runs and a worker is alive
    GET /readyz    200 while a worker is ready and the service is not stopping
    GET /metrics   Prometheus text (OpenMetrics if asked), summed over workers
    GET /status    JSON: workers, totals, rates, latency, events (?history=SECONDS)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.resources
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Generator
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from asgiscale import __version__
from asgiscale.config import Config
from asgiscale.runtime import _procfs, metrics, status
from asgiscale.runtime._process import run_forked
from asgiscale.runtime.shm import Field, SlotTable

logger = logging.getLogger("asgiscale.error")

SAMPLE_PERIOD = 1.0
MAX_HISTORY_QUERY = status.HISTORY_SECONDS
EVENTS_KEPT = 200


class AdminProcess:
    """The supervisor's handle on the admin process."""

    def __init__(self, pid: int, events_fd: int) -> None:
        self.pid = pid
        self.events_fd = events_fd  # write end of the pipe of lifecycle events

    @classmethod
    def start(
        cls, config: Config, table: SlotTable, sock: socket.socket, log_config: dict[str, Any], close_fds: list[int]
    ) -> AdminProcess:
        read_end, write_end = os.pipe()
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            run_forked(
                [*close_fds, write_end], lambda: _serve(config, table, sock, read_end, log_config, supervisor_pid)
            )
        os.close(read_end)
        os.set_blocking(write_end, False)
        return cls(pid, write_end)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.events_fd)

    def stop(self, timeout: float) -> None:
        """Ask it to stop and wait `timeout` seconds at most (then SIGKILL); reaps it."""
        self.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not os.waitpid(self.pid, os.WNOHANG)[0]:
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.01)


class Observer:
    """The admin process's view of the service: fresh readings, history, events."""

    def __init__(self, config: Config, table: SlotTable) -> None:
        self.table = table
        self.app_check = config.readiness is not None
        self.history = status.History()
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self.info: dict[str, Any] = {"version": __version__, "app": config.app, "listen": config.bind_description}
        if config.autoscale:
            self.info["scaling"] = {
                "policy": config.scale_policy,
                "min_workers": config.min_workers or 1,
                "max_workers": config.max_workers,
                "targets": [str(t) for t in config.targets],
            }
        self._last_cpu: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, monotonic)
        self._processes: dict[int, status.Process] = {}

    def read(self) -> metrics.Reading:
        return metrics.read(self.table)

    def sample(self) -> None:
        reading = self.read()
        now = time.monotonic()
        processes: dict[int, status.Process] = {}
        last_cpu: dict[int, tuple[float, float]] = {}
        for pid, (cpu, rss) in _cpu_and_rss(reading).items():
            percent = None
            if pid in self._last_cpu:
                before, at = self._last_cpu[pid]
                percent = 100.0 * (cpu - before) / max(now - at, 1e-9)
            processes[pid] = status.Process(cpu, rss, percent)
            last_cpu[pid] = (cpu, now)
        self._last_cpu = last_cpu
        self._processes = processes
        self.history.add(status.sample_of(reading, processes, time.time()))

    def scrape(self) -> tuple[metrics.Reading, dict[int, status.Process], bool]:
        reading = self.read()
        procs = {pid: status.Process(cpu, rss) for pid, (cpu, rss) in _cpu_and_rss(reading).items()}
        return reading, procs, status.probe_readiness(reading, app_check=self.app_check)[0]

    def status(self, history_seconds: float) -> dict[str, Any]:
        return status.status(
            self.read(),
            self.history,
            procs=self._processes,
            events=list(self.events),
            info={**self.info, "wall": time.time()},
            app_check=self.app_check,
            history_seconds=history_seconds,
        )

    def on_event_line(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self.events.append(event)


def _cpu_and_rss(reading: metrics.Reading) -> dict[int, tuple[float, int]]:
    """CPU seconds and resident bytes of every worker process in `reading` that is still there."""
    found = {}
    for words in reading.workers.values():
        pid = words[Field.PID]
        facts = _procfs.cpu_and_rss(pid) if pid else None
        if facts is not None:
            found[pid] = facts
    return found


class AdminApp:
    """The ASGI app of the admin server."""

    def __init__(self, observer: Observer) -> None:
        # Imported here, in the admin process only: the supervisor and the workers forked
        # from it do not carry the exposition code.
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        from asgiscale.runtime.exposition import TableCollector

        self.observer = observer
        self.choose_encoder = choose_encoder
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TableCollector(observer.scrape))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", extra=[(b"allow", b"GET, HEAD")])
            return
        path = scope["path"]
        observer = self.observer
        if path == "/healthz":
            ok, reason = status.probe_health(observer.read())
            await _respond(send, 200 if ok else 503, (("ok: " if ok else "unhealthy: ") + reason + "\n").encode())
        elif path == "/readyz":
            ok, reason = status.probe_readiness(observer.read(), app_check=observer.app_check)
            await _respond(send, 200 if ok else 503, (("ready: " if ok else "not ready: ") + reason + "\n").encode())
        elif path == "/metrics":
            accept = _header(scope, b"accept")
            encoder, content_type = self.choose_encoder(accept or "")
            await _respond(send, 200, encoder(self.registry), content_type=content_type.encode())
        elif path == "/status":
            query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
            try:
                seconds = min(float(query.get("history", ["0"])[0]), MAX_HISTORY_QUERY)
            except ValueError:
                await _respond(send, 400, b"history must be a number of seconds\n")
                return
            body = json.dumps(observer.status(seconds)).encode()
            await _respond(send, 200, body, content_type=b"application/json")
        elif path in ("/", "/index.html"):
            page = importlib.resources.files("asgiscale.runtime").joinpath("dashboard.html").read_bytes()
            await _respond(send, 200, page, content_type=b"text/html; charset=utf-8")
        else:
            await _respond(send, 404, b"not found: try /, /healthz, /readyz, /metrics or /status\n")


async def _respond(
    send: Any,
    code: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"cache-control", b"no-store"), *(extra or [])]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class AdminServer(uvicorn.Server):
    """uvicorn serving the admin app, plus the sampler and the event reader; stops if orphaned."""

    def __init__(self, config: uvicorn.Config, observer: Observer, events_fd: int, supervisor_pid: int) -> None:
        super().__init__(config)
        self.observer = observer
        self.events_fd = events_fd
        self.supervisor_pid = supervisor_pid
        self._pending = b""
        self._sampler: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle_exit)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's; we report the drain
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        os.set_blocking(self.events_fd, False)
        asyncio.get_running_loop().add_reader(self.events_fd, self._read_events)
        self._sampler = asyncio.create_task(self._sample())
        await super().startup(sockets)

    async def on_tick(self, counter: int) -> bool:
        if os.getppid() != self.supervisor_pid:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        await super().shutdown(sockets)

    async def _sample(self) -> None:
        while True:
            self.observer.sample()
            await asyncio.sleep(SAMPLE_PERIOD)

    def _read_events(self) -> None:
        try:
            data = os.read(self.events_fd, 65536)
        except BlockingIOError:
            return
        if not data:  # the supervisor closed its end
            asyncio.get_running_loop().remove_reader(self.events_fd)
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            self.observer.on_event_line(line)


def _serve(
    config: Config,
    table: SlotTable,
    sock: socket.socket,
    events_fd: int,
    log_config: dict[str, Any],
    supervisor_pid: int,
) -> None:
    observer = Observer(config, table)
    uv_config = uvicorn.Config(
        AdminApp(observer),
        lifespan="off",
        access_log=False,
        log_config=log_config,
        log_level="warning",
        loop=config.loop,
        http=config.http,
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    AdminServer(uv_config, observer, events_fd, supervisor_pid).run(sockets=[sock])
