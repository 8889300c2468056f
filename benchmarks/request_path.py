"""The instrumentation's cost on uvicorn's request path, measured in one process without a network.

    python benchmarks/request_path.py [--rounds 15] [--requests 20000] [--apps raw,fastapi]

A worker's per-request work, minus the kernel: uvicorn's httptools protocol is given a
connection whose transport only keeps what it is asked to write, and one keep-alive request
at a time is fed to it, each answered in full before the next (the event loop runs the
request's task, as it does under load). The same loop serves the app with the worker's
instrumentation installed and without it, in alternating batches; the figure is the time per
request with minus without, from the same round.

This is the precise view of what the instrumentation adds (no load tool shares the cores);
`instrumentation.py` gives the end-to-end view with wrk, in which the kernel's share of a
request is counted too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from asgiscale.runtime.instrument import Instrumentation, compiled_meter
from asgiscale.runtime.metrics import Recorder, share_pairs
from asgiscale.runtime.shm import Slot, SlotTable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _report import rotated, spread, table  # noqa: E402

APPS = {"raw": "apps.raw:app", "fastapi": "examples.hello:app"}
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


class Transport(asyncio.Transport):
    """A connected socket's transport that writes nowhere; only the bytes are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: Any) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def serve(config: uvicorn.Config, requests: int) -> float:
    """Seconds for `requests` requests, one after another on one connection."""
    protocol = HttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    feed, pause = protocol.data_received, asyncio.sleep
    started = time.perf_counter()
    for _ in range(requests):
        feed(REQUEST)
        cycle = protocol.cycle
        while not cycle.response_complete:
            await pause(0)
    elapsed = time.perf_counter() - started
    if transport.closing:
        raise RuntimeError("the connection was closed: the benchmark request is not answered as expected")
    protocol.connection_lost(None)
    return elapsed


def worker_slot() -> Slot:
    """A slot as the supervisor hands it to a worker: with its allowance of (method, status) pairs."""
    table = SlotTable(1)
    share_pairs(table, [0])
    return table.slot(0)


async def measure(app: str, rounds: int, requests: int) -> dict[str, list[float]]:
    """µs per request of each variant (off, the pure-Python meter, the compiled one), one value per round."""
    config = uvicorn.Config(APPS[app], http="httptools", lifespan="off", access_log=False, log_level="warning")
    config.load()
    meters = {"python": Instrumentation(Recorder(worker_slot()), compiled=False)}
    if compiled_meter() is not None:
        meters["compiled"] = Instrumentation(Recorder(worker_slot()), compiled=True)
    times: dict[str, list[float]] = {name: [] for name in ["off", *meters]}

    async def turn(name: str, count: int) -> float:
        uninstall = meters[name].install(config) if name in meters else (lambda: None)
        gc.collect()
        try:
            return await serve(config, count) / count * 1e6
        finally:
            uninstall()

    for name in times:
        await turn(name, requests // 4)  # warm every path up
    for round_ in range(rounds):
        for name in rotated(list(times), round_):
            times[name].append(await turn(name, requests))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", default="raw,fastapi")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per variant and round")
    args = parser.parse_args()
    rows = []
    for app in args.apps.split(","):
        times = uvloop.run(measure(app, args.rounds, args.requests))
        off = statistics.median(times["off"])
        for meter in [name for name in times if name != "off"]:
            added = [on - base for on, base in zip(times[meter], times["off"], strict=True)]
            cost = statistics.median(added)
            rows.append([app, meter, f"{off:.2f}", f"{statistics.median(times[meter]):.2f}",
                         f"{cost:+.2f} ({spread(added)})", f"{cost / off:.1%}"])  # fmt: skip
    title = (
        f"### Instrumentation cost on uvicorn's request path, in one process ({args.rounds} rounds x"
        f" {args.requests:,} requests per variant)"
    )
    headers = ["app", "meter", "µs/request, metrics off", "µs/request, on", "µs added (IQR)", "cost"]
    print(title + "\n\n" + table(headers, rows))


if __name__ == "__main__":
    main()
