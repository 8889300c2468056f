"""Failed requests during a rolling reload (SIGHUP) under keep-alive load.

    python benchmarks/reload.py [--rounds 2] [--connections 16] [--app fastapi]

A closed-loop asyncio client keeps ``--connections`` keep-alive connections busy with ``GET /pid``.
After one second of traffic the harness sends SIGHUP to the master and waits until every worker
that was serving before has exited and a new worker has answered, then one more second; the
whole run is capped at ``--timeout`` seconds.

Counted as failed: any non-2xx answer, and any request that got no complete answer (refused or
reset connection, timeout, truncated response). Counted apart, as ``retried``: a reused keep-alive
connection that the server closed before sending a single byte back. Real clients resend an
idempotent request in that case, and so does this one, once, on a fresh connection; that resend
then counts like any other request.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from _http import REQUEST_ERRORS, Connection, StaleConnectionError
from _proc import is_alive
from _report import fmt, median, table, take_turns
from _servers import DEFAULT_SERVERS, RunningServer, Server, capable, get_app, select_servers


@dataclass
class LoadStats:
    ok: int = 0
    non_2xx: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    pids: set[int] = field(default_factory=set)

    @property
    def failed(self) -> int:
        return sum(self.non_2xx.values()) + sum(self.errors.values())

    @property
    def total(self) -> int:
        return self.ok + self.failed


async def _client(port: int, path: str, stop: asyncio.Event, stats: LoadStats, request_timeout: float) -> None:
    conn: Connection | None = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = await Connection.open(port, request_timeout)
            try:
                response = await conn.get(path, timeout=request_timeout)
            except StaleConnectionError:
                stats.retried += 1
                await conn.close()
                conn = await Connection.open(port, request_timeout)
                response = await conn.get(path, timeout=request_timeout)
        except REQUEST_ERRORS as exc:
            stats.errors[type(exc).__name__] += 1
            if conn is not None:
                await conn.close()
                conn = None
            # A refused connection fails at once; a short pause keeps one outage from being
            # counted thousands of times.
            await asyncio.sleep(0.01)
            continue
        if 200 <= response.status < 300:
            stats.ok += 1
            stats.pids.add(response.pid())
        else:
            stats.non_2xx[response.status] += 1
        if not response.keep_alive:
            await conn.close()
            conn = None
    if conn is not None:
        await conn.close()


@dataclass(frozen=True)
class Sample:
    stats: LoadStats
    reload_s: float | None  # SIGHUP to the last old worker gone, None if it never finished


async def _reload_under_load(
    srv: RunningServer,
    old_workers: set[int],
    *,
    connections: int,
    timeout: float,
    before: float = 1.0,
    after: float = 1.0,
    path: str = "/pid",
) -> Sample:
    stats = LoadStats()
    stop = asyncio.Event()
    clients = [asyncio.create_task(_client(srv.port, path, stop, stats, 5.0)) for _ in range(connections)]
    try:
        await asyncio.sleep(before)
        start = time.perf_counter()
        srv.send(signal.SIGHUP)
        reload_s = None
        while time.perf_counter() - start < timeout:
            await asyncio.sleep(0.05)
            if stats.pids - old_workers and not any(is_alive(pid) for pid in old_workers):
                reload_s = time.perf_counter() - start
                break
        await asyncio.sleep(after)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return Sample(stats, reload_s)


@dataclass
class ReloadResult:
    app: str
    workers: int
    connections: int
    rounds: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def failed(self, name: str) -> int | None:
        if name not in self.samples:
            return None
        return sum(s.stats.failed for s in self.samples[name])

    def markdown(self) -> str:
        rows = []
        for name, samples in self.samples.items():
            errors: Counter[str] = Counter()
            non_2xx: Counter[int] = Counter()
            for s in samples:
                errors.update(s.stats.errors)
                non_2xx.update(s.stats.non_2xx)
            detail = ", ".join([f"{k} x{v}" for k, v in non_2xx.items()] + [f"{k} x{v}" for k, v in errors.items()])
            finished = [s.reload_s for s in samples if s.reload_s is not None]
            rows.append(
                [
                    name,
                    str(sum(s.stats.total for s in samples)),
                    "**" + str(sum(s.stats.failed for s in samples)) + "**",
                    " / ".join(str(s.stats.failed) for s in samples),
                    detail or "-",
                    str(sum(s.stats.retried for s in samples)),
                    fmt(median(finished), ".1f") + ("" if len(finished) == len(samples) else " (unfinished)"),
                ]
            )
        for name, reason in self.left_out.items():
            rows.append([name, "n/a", "n/a", "n/a", reason, "n/a", "n/a"])
        title = (
            f"### Rolling reload (SIGHUP) under load, {self.app} app ({self.workers} workers, "
            f"{self.connections} keep-alive connections, {self.rounds} rounds)"
        )
        headers = [
            "server",
            "requests",
            "failed",
            "failed per round",
            "failures",
            "stale keep-alive, retried",
            "reload s (median)",
        ]
        return title + "\n\n" + table(headers, rows)


def run(
    servers: list[Server],
    app_name: str,
    *,
    workers: int = 2,
    rounds: int = 2,
    connections: int = 16,
    timeout: float = 45.0,
) -> ReloadResult:
    app = get_app(app_name)
    result = ReloadResult(app.name, workers, connections, rounds)
    able = capable(servers, lambda s: s.reloads_on_hup, result.left_out, "no reload signal")

    def measure(server: Server, r: int) -> Sample:
        with RunningServer(server, app, workers) as srv:
            old = srv.wait_workers(workers)
            sample = asyncio.run(_reload_under_load(srv, old, connections=connections, timeout=timeout))
        s = sample.stats
        print(
            f"  {app.name} round {r + 1}: {server.name:<17} {s.total} requests, {s.failed} failed, "
            f"{s.retried} retried, reload {fmt(sample.reload_s, '.1f')} s"
        )
        return sample

    result.samples = take_turns(able, rounds, measure, result.left_out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--app", default="fastapi")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=45.0, help="cap on seconds from SIGHUP to reload done")
    args = parser.parse_args()
    servers = select_servers(args.servers.split(","))
    res = run(servers, args.app, workers=args.workers, rounds=args.rounds, connections=args.connections,
              timeout=args.timeout)  # fmt: skip
    print("\n" + res.markdown() + "\n")


if __name__ == "__main__":
    main()
