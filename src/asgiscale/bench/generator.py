"""The open-loop load generator: requests leave on a schedule, whether or not earlier ones have answered.

A closed-loop tool (wrk, ab, most benchmarks) sends a connection's next request only when the
previous answer is in, so a server that stalls slows the load down, and the requests that would
have been sent during the stall are never measured: coordinated omission. Here every request has
a due time fixed before the run (constant or Poisson arrivals), and its latency runs from that due
time to its complete answer. A late send, a wait for a free connection or a slow server all count.

The requests travel on kept-alive HTTP/1.1 connections, as from a proxy's pool: a due request
takes an idle connection, or waits for one while a new one opens, up to `max_connections`.
Everything is callbacks on one event loop (uvloop's when installed) and httptools parses the
answers, so one process sends well over ten thousand requests a second; `LoadGenerator` runs
several such processes when one core is not enough.

Bounded: a step ends once every request has answered or is `timeout` seconds past its due time
(counted as a timeout, its connection closed), so a step lasts at most `duration + timeout`.

    >>> step = Step(url=Target.parse("http://127.0.0.1:8000/"), rate=500, duration=2)
    >>> result = run_step(step)  # doctest: +SKIP
    >>> result.latency.value_at(99)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import multiprocessing
import random
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httptools

from asgiscale.bench.histogram import Histogram

ARRIVALS = ("constant", "poisson")
USER_AGENT = "asgiscale-bench"
_CHECK_PERIOD = 0.05  # seconds between two looks for requests past their timeout
_MAX_BEHIND = 64  # requests sent late in a row before the loop lets answers in


class TargetError(ValueError):
    """A URL the generator cannot load; one line naming it and the fix."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the requests go: a plain-HTTP host, port and path."""

    host: str
    port: int
    path: str = "/"

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            hint = "bench the plain-HTTP port behind TLS" if parts.scheme == "https" else "like http://127.0.0.1:8000/"
            raise TargetError(f"cannot load {url!r}: give an http:// URL ({hint})")
        try:
            port = parts.port or 80
        except ValueError:
            raise TargetError(f"cannot load {url!r}: the port is not a number from 1 to 65535") from None
        path = parts.path or "/"
        return cls(parts.hostname, port, path + ("?" + parts.query if parts.query else ""))

    def with_path(self, path: str) -> Target:
        return dataclasses.replace(self, path=checked_path(path))

    @property
    def netloc(self) -> str:
        """host:port, an IPv6 address in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"http://{self.netloc}{self.path}"

    def request(self, keep_alive: bool = True) -> bytes:
        close = "" if keep_alive else "Connection: close\r\n"
        return f"GET {self.path} HTTP/1.1\r\nHost: {self.netloc}\r\nUser-Agent: {USER_AGENT}\r\n{close}\r\n".encode()


def checked_path(path: str) -> str:
    """`path` if it can be requested (it starts with '/'); raises `TargetError` otherwise."""
    if not path.startswith("/"):
        raise TargetError(f"--path {path!r} must start with '/'")
    return path


@dataclasses.dataclass(frozen=True)
class Step:
    """One load step: `rate` requests per second for `duration` seconds.

    `times` replaces the arrivals by these due times (seconds from the start, sorted), to replay a
    trace. `keep_alive=False` sends every request on a fresh connection (`Connection: close`), as
    many separate clients do: each is accepted by whichever worker takes it first.
    """

    url: Target
    rate: float
    duration: float
    arrivals: str = "constant"
    timeout: float = 5.0
    max_connections: int = 1000
    seed: int = 0
    times: tuple[float, ...] | None = None
    keep_alive: bool = True

    def schedule(self, part: int = 0, parts: int = 1) -> Iterator[float]:
        """Due times in seconds from the start, of the requests one of `parts` generators sends.

        Constant arrivals (and given times) are dealt round robin; Poisson arrivals of rate/parts
        each, since the sum of independent Poisson streams is a Poisson stream of the summed rate.
        """
        if self.times is not None:
            yield from self.times[part::parts]
            return
        if self.arrivals == "constant":
            count = math.ceil(round(self.rate * self.duration, 9))  # 49 req/s for 1 s: 49, whatever 49 * (1/49) is
            for i in range(part, count, parts):
                yield i / self.rate
            return
        rng = random.Random(f"{self.seed}:{part}")
        rate = self.rate / parts
        t = rng.expovariate(rate)
        while t < self.duration:
            yield t
            t += rng.expovariate(rate)


@dataclasses.dataclass
class StepResult:
    """What one step measured. Latencies are microseconds from each request's due time."""

    rate: float
    duration: float
    sent: int = 0
    latency: Histogram = dataclasses.field(default_factory=Histogram)  # of the 2xx and 3xx answers
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)  # no answer: why
    on_time: int = 0  # successful answers complete before the end of the step
    send_lag: Histogram = dataclasses.field(default_factory=Histogram)  # due -> written, of the generator itself
    cpu_seconds: float = 0.0  # the generator's own CPU time
    connections: int = 0  # connections opened

    @property
    def ok(self) -> int:
        return self.latency.count

    @property
    def failed(self) -> int:
        """Requests without a successful answer: error statuses, timeouts and broken connections."""
        return self.sent - self.ok

    def goodput(self) -> float:
        """Successful answers per second that arrived while the load ran."""
        return self.on_time / self.duration

    def merge(self, other: StepResult) -> None:
        self.sent += other.sent
        self.latency.merge(other.latency)
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.on_time += other.on_time
        self.send_lag.merge(other.send_lag)
        self.cpu_seconds += other.cpu_seconds
        self.connections += other.connections

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "duration": self.duration,
            "sent": self.sent,
            "latency": self.latency.to_dict(),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "on_time": self.on_time,
            "send_lag": self.send_lag.to_dict(),
            "cpu_seconds": self.cpu_seconds,
            "connections": self.connections,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepResult:
        return cls(
            rate=data["rate"],
            duration=data["duration"],
            sent=data["sent"],
            latency=Histogram.from_dict(data["latency"]),
            statuses=collections.Counter({int(k): v for k, v in data["statuses"].items()}),
            errors=collections.Counter(data["errors"]),
            on_time=data["on_time"],
            send_lag=Histogram.from_dict(data["send_lag"]),
            cpu_seconds=data["cpu_seconds"],
            connections=data["connections"],
        )


class _Connection(asyncio.Protocol):
    """One kept-alive connection carrying one request at a time."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.due = 0.0  # of the request in flight; 0.0 when idle
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, due: float, payload: bytes) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.load.failed(self, "invalid HTTP answer")
        except httptools.HttpParserUpgrade:
            self.load.failed(self, "connection upgraded")

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.load.answered(self, self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.keep_alive = False
        self.load.lost(self)

    def close(self) -> None:
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()


class _Load:
    """One process's share of a step, on the running event loop."""

    def __init__(self, step: Step, start: float) -> None:
        self.step = step
        self.start = start  # time.monotonic() of due time 0; CLOCK_MONOTONIC is the same in every process
        self.payload = step.url.request(step.keep_alive)
        self.result = StepResult(step.rate, step.duration)
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.opening = 0
        self.waiting: collections.deque[float] = collections.deque()  # due times of requests without a connection
        self.loop = asyncio.get_running_loop()
        self.finished = self.loop.create_future()
        self.scheduled_all = False

    async def run(self, schedule: Iterator[float]) -> StepResult:
        cpu = time.process_time()
        clock = time.monotonic
        checker = self.loop.create_task(self._expire_until_done())
        behind = 0
        for due in schedule:
            now = clock() - self.start
            if due > now:
                behind = 0
                await asyncio.sleep(due - now)
                now = clock() - self.start
            elif behind == _MAX_BEHIND:  # late: answers and timeouts must still be handled
                behind = 0
                await asyncio.sleep(0)
                now = clock() - self.start
            behind += 1
            self.result.sent += 1
            self.result.send_lag.record(int((now - due) * 1e6))
            self.dispatch(due)
        self.scheduled_all = True
        self._maybe_finish()
        try:
            await self.finished
        finally:
            checker.cancel()
            for conn in [*self.idle, *self.busy]:
                conn.close()
        self.result.cpu_seconds = time.process_time() - cpu
        return self.result

    def dispatch(self, due: float) -> None:
        while self.idle:
            conn = self.idle.pop()  # the warmest connection first
            if conn.transport is not None and not conn.transport.is_closing():
                self.busy.add(conn)
                conn.send(due, self.payload)
                return
        self.waiting.append(due)
        self._open_for_waiting()

    async def _open(self) -> None:
        try:
            _, conn = await self.loop.create_connection(
                lambda: _Connection(self), self.step.url.host, self.step.url.port
            )
        except OSError as exc:
            self.opening -= 1
            if self.waiting:  # the request that asked for this connection fails with it
                self.waiting.popleft()
                self.result.errors[_describe(exc)] += 1
            self._maybe_finish()
            return
        self.opening -= 1
        self.result.connections += 1
        self._next(conn)

    def _next(self, conn: _Connection) -> None:
        """Give `conn` the oldest waiting request, or make it idle."""
        if self.waiting:
            self.busy.add(conn)
            conn.send(self.waiting.popleft(), self.payload)
        else:
            self.idle.append(conn)
            self._maybe_finish()

    def answered(self, conn: _Connection, status: int) -> None:
        now = time.monotonic() - self.start
        if 200 <= status < 400:
            self.result.latency.record(int((now - conn.due) * 1e6))
            if now <= self.step.duration:
                self.result.on_time += 1
        self.result.statuses[status] += 1
        conn.due = 0.0
        self.busy.discard(conn)
        if conn.keep_alive:
            self._next(conn)
        else:
            conn.close()
            self._refill()

    def failed(self, conn: _Connection, why: str) -> None:
        if conn in self.busy:
            self.busy.discard(conn)
            self.result.errors[why] += 1
        conn.close()
        self._refill()

    def lost(self, conn: _Connection) -> None:
        if conn in self.busy:
            self.failed(conn, "connection closed before the answer")
        elif conn in self.idle:
            self.idle.remove(conn)

    def _refill(self) -> None:
        """A connection went away: open another if requests are waiting for one."""
        self._open_for_waiting()
        self._maybe_finish()

    def _open_for_waiting(self) -> None:
        """Open a connection for a waiting request, unless one is opening for each or the cap is reached."""
        if self.opening < len(self.waiting) and len(self.busy) + self.opening < self.step.max_connections:
            self.opening += 1
            self.loop.create_task(self._open())

    def expire(self, now: float) -> None:
        """Give up on requests more than `timeout` past their due time."""
        limit = now - self.step.timeout
        while self.waiting and self.waiting[0] < limit:
            self.waiting.popleft()
            self.result.errors["timeout"] += 1
        for conn in [c for c in self.busy if c.due < limit]:
            self.failed(conn, "timeout")

    async def _expire_until_done(self) -> None:
        while True:
            await asyncio.sleep(_CHECK_PERIOD)
            self.expire(time.monotonic() - self.start)
            self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.scheduled_all and not self.busy and not self.waiting and not self.finished.done():
            self.finished.set_result(None)


def _describe(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return exc.strerror or type(exc).__name__


def run_step(step: Step, start: float | None = None, part: int = 0, parts: int = 1) -> StepResult:
    """Run this process's share of `step` on a fresh event loop; `start` is a time.monotonic()."""
    begin = time.monotonic() + 0.02 if start is None else start

    async def main() -> StepResult:
        return await _Load(step, begin).run(step.schedule(part, parts))

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(main())
    return uvloop.run(main())


class LoadGenerator:
    """`processes` generator processes, each sending its share of every step.

    The processes start once (spawned: the caller may already run threads, such as a progress
    display), and each step is one message to each of them; the results come back merged.

        >>> with LoadGenerator(processes=2) as generator:  # doctest: +SKIP
        ...     result = generator.run(Step(Target.parse("http://127.0.0.1:8000/"), 20_000, 5))
    """

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self._pipes: list[Any] = []
        self._children: list[Any] = []

    def __enter__(self) -> LoadGenerator:
        if self.processes > 1:
            context = multiprocessing.get_context("spawn")
            for part in range(self.processes):
                parent, child = context.Pipe()
                process = context.Process(target=_serve_steps, args=(child, part, self.processes), daemon=True)
                process.start()
                child.close()
                self._pipes.append(parent)
                self._children.append(process)
        return self

    def __exit__(self, *exc: object) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for process in self._children:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()

    def run(self, step: Step) -> StepResult:
        if not self._pipes:
            return run_step(step)
        start = time.monotonic() + 0.05
        for pipe in self._pipes:
            pipe.send((step, start))
        merged = StepResult(step.rate, step.duration)
        for pipe in self._pipes:
            merged.merge(StepResult.from_dict(pipe.recv()))
        return merged


def _serve_steps(pipe: Any, part: int, parts: int) -> None:
    while (message := pipe.recv()) is not None:
        step, start = message
        pipe.send(run_step(step, start, part, parts).to_dict())
