"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, answered or not.

    python benchmarks/_openloop.py [--rates 2000,5000,10000] [--keep-alive]   # its ceiling here

A closed-loop tool (wrk) sends a connection's next request only when the previous one has come
back, so a server that stalls also slows the load, and the requests that would have left during
the stall are never measured (coordinated omission). Here request ``i`` is due at
``start + i / rate`` (a constant rate); its latency runs from that due time, so a late send,
in the generator or anywhere else, counts against the figure instead of vanishing.

Two ways to carry the requests (``Client``):

* a fresh connection per request (``Connection: close``), as from many separate clients: the
  kernel hands each request to whichever worker accepts it, workers added by a scale-up
  included, and uvicorn's ``--limit-concurrency`` (which counts connections) sees exactly the
  requests in flight;
* kept-alive connections, as from a proxy's pool: a request takes the connection that answered
  last, a new one is opened when all are busy (so the pool grows to the requests in flight).

Bounded: ``rate * duration`` requests at most, each given up after ``timeout`` seconds (counted
as unanswered, its connection closed), so a run ends at most ``duration + timeout`` seconds
after it started. Loopback only. One asyncio loop, uvloop's when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from _http import HOST, REQUEST_ERRORS

T = TypeVar("T")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop's loop when it is installed (the generator then costs less CPU)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one request at a time; ``send`` returns a future of the status."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None
        self.buffer = b""
        self.status = 0
        self.length: int | None = None  # head + body; None until the head is in, -1: until EOF
        self.reusable = False  # the last answer is complete and did not say `Connection: close`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is no asyncio.Transport

    def send(self, payload: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.buffer, self.status, self.length, self.reusable = b"", 0, None, False
        self.transport.write(payload)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.length is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.buffer[9:12])
            found = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            self.length = end + 4 + int(found.group(1)) if found else -1
            self.reusable = found is not None and _CLOSE.search(self.buffer, 0, end + 2) is None
        if 0 <= self.length <= len(self.buffer) and self.done is not None and not self.done.done():
            self.done.set_result(self.status)

    def eof_received(self) -> bool:
        self.reusable = False
        if self.status and self.length == -1 and self.done is not None and not self.done.done():
            self.done.set_result(self.status)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionResetError("closed before a complete answer"))

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class _Deadline:
    """``asyncio.timeout`` for Python 3.10: cancels the current task at the deadline, raises TimeoutError."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handle = asyncio.get_running_loop().call_later(self.seconds, self._expire, task)

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self.expired = True
        task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.handle.cancel()
        if self.expired and exc_type is asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):  # 3.11+: the cancel was ours, not the caller's
                task.uncancel()
            raise TimeoutError(f"no complete answer in {self.seconds:g} s")


class Client:
    """GETs to one loopback port, on a fresh connection each or on kept-alive connections.

    >>> client = Client(8000, keep_alive=True)
    >>> await client.get("/", timeout=5.0)
    200
    """

    def __init__(self, port: int, keep_alive: bool = False) -> None:
        assert HOST == "127.0.0.1", "loopback only"
        self.port = port
        self.keep_alive = keep_alive
        self.idle: list[_Connection] = []  # last in, first out: the warmest connection goes first
        self.opened = 0

    async def get(self, path: str, timeout: float) -> int:
        """One GET: the status, or an exception from ``REQUEST_ERRORS``."""
        header = b"keep-alive" if self.keep_alive else b"close"
        payload = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: %s\r\n\r\n" % (path.encode(), HOST.encode(), header)
        conn = None
        try:
            async with _Deadline(timeout):
                while self.idle and conn is None:
                    conn = self.idle.pop()
                    if conn.transport is None or conn.transport.is_closing():
                        conn = None
                if conn is None:
                    self.opened += 1
                    _, conn = await asyncio.get_running_loop().create_connection(_Connection, HOST, self.port)
                return await conn.send(payload)
        finally:
            if conn is not None:
                if self.keep_alive and conn.reusable:
                    self.idle.append(conn)
                else:
                    conn.close()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class LoadResult:
    """Every request of one run: when it was due, when its answer was complete, and what it was.

    Times are seconds from the first due time. ``status`` 0 means no answer (see ``errors``).
    """

    rate: float
    duration: float
    due: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)  # nan when the request got no answer
    status: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    send_lag: list[float] = field(default_factory=list)  # seconds between due and sent
    cpu_seconds: float = 0.0  # the generator's own CPU time over the run
    connections: int = 0  # connections opened
    started: float = 0.0  # time.perf_counter() of the first due time

    @property
    def sent(self) -> int:
        return len(self.due)

    def ok(self, start: float = 0.0, end: float = math.inf) -> int:
        """Successful (2xx) answers completed in [start, end)."""
        return sum(1 for d, s in zip(self.done, self.status, strict=True) if 200 <= s < 300 and start <= d < end)

    def goodput(self) -> float:
        """Successful answers completed while the load ran, per second."""
        return self.ok(0.0, self.duration) / self.duration

    def latencies_ms(self, statuses: range = range(200, 300)) -> list[float]:
        """Latency from due time to complete answer, of the requests answered with one of ``statuses``."""
        return [(d - t) * 1000 for t, d, s in zip(self.due, self.done, self.status, strict=True) if s in statuses]

    def fraction(self, status: int) -> float:
        """The share of requests answered with ``status`` (0: no answer at all)."""
        return sum(1 for s in self.status if s == status) / self.sent if self.sent else 0.0

    def cpu_share(self) -> float:
        """The generator's CPU use over the load, in cores."""
        return self.cpu_seconds / self.duration


async def open_loop(
    port: int, path: str, rate: float, duration: float, *, timeout: float = 5.0, keep_alive: bool = False
) -> LoadResult:
    """``rate`` requests per second to ``path`` for ``duration`` seconds, each due on schedule.

    Returns once every request has its answer or has timed out.
    """
    client = Client(port, keep_alive)
    result = LoadResult(rate, duration)
    total = int(rate * duration)
    result.due = [i / rate for i in range(total)]
    result.done = [math.nan] * total
    result.status = [0] * total
    result.send_lag = [0.0] * total
    clock = time.perf_counter  # uvloop's loop.time() only moves once per loop iteration, by milliseconds
    cpu_before = time.process_time()
    start = result.started = clock() + 0.02

    async def one(i: int) -> None:
        result.send_lag[i] = clock() - start - result.due[i]
        try:
            result.status[i] = await client.get(path, timeout)
            result.done[i] = clock() - start
        except REQUEST_ERRORS as exc:
            result.errors[type(exc).__name__] += 1

    tasks: set[asyncio.Task[None]] = set()
    for i in range(total):
        delay = start + result.due[i] - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*tasks)
    client.close()
    result.cpu_seconds = time.process_time() - cpu_before
    result.connections = client.opened
    return result


async def closed_loop(
    port: int, path: str, concurrency: int, duration: float, *, timeout: float = 5.0, keep_alive: bool = False
) -> float:
    """2xx answers per second from ``concurrency`` clients, each sending as soon as its last answer is in."""
    client = Client(port, keep_alive)
    ok = 0
    end = time.perf_counter() + duration

    async def sender() -> None:
        nonlocal ok
        while time.perf_counter() < end:
            try:
                if 200 <= await client.get(path, timeout) < 300:
                    ok += 1
            except REQUEST_ERRORS:
                await asyncio.sleep(0.01)

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    client.close()
    return ok / (time.perf_counter() - start)


def main() -> None:
    """The generator's ceiling: rising rates against one worker serving the raw app."""
    from _report import fmt, table
    from _servers import SERVERS, RunningServer, get_app

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="2000,5000,8000,10000,12000")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--server", default="granian", help="granian: its Rust HTTP stack outruns the generator")
    parser.add_argument("--keep-alive", action="store_true")
    args = parser.parse_args()
    rows = []
    with RunningServer(SERVERS[args.server], get_app("raw"), 1) as srv:
        srv.wait_workers(1)
        run(open_loop(srv.port, "/", 500, 1.0, keep_alive=args.keep_alive))  # warm-up
        for rate in (float(r) for r in args.rates.split(",")):
            res = run(open_loop(srv.port, "/", rate, args.duration, keep_alive=args.keep_alive))
            lag_ms = [lag * 1000 for lag in res.send_lag]
            rows.append(
                [
                    fmt(rate),
                    fmt(res.goodput()),
                    f"{1 - res.fraction(200):.2%}",
                    fmt(percentile(lag_ms, 50), ".2f") + " / " + fmt(percentile(lag_ms, 99), ".2f"),
                    fmt(percentile(res.latencies_ms(), 50), ".1f")
                    + " / "
                    + fmt(percentile(res.latencies_ms(), 99), ".1f"),
                    f"{res.cpu_share():.0%}",
                    str(res.connections),
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    mode = "kept-alive connections" if args.keep_alive else "a connection per request"
    headers = ["offered req/s", "2xx/s", "not 200", "send lag ms p50 / p99", "latency ms p50 / p99",
               "generator CPU (cores)", "connections"]  # fmt: skip
    print(f"\n### Open-loop generator ceiling ({mode}), {args.server} raw app, 1 worker\n\n" + table(headers, rows))


if __name__ == "__main__":
    main()
