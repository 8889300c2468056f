"""Chaos: a random worker SIGKILLed every 2 s under keep-alive load, and workers recycled every 20 requests.

    python benchmarks/chaos.py [--servers asgiscale,uvicorn] [--app fastapi] [--rounds 1] [--duration 40]
                               [--recycle-duration 20] [--no-docs]

Both runs use 4 workers and 16 closed-loop keep-alive connections sending ``GET /pid``, servers taking turns.

Kill run: every 2 s on the clock the harness picks a ready worker at random (seeded) and sends it SIGKILL, for
``--duration`` seconds, then waits until every victim is replaced (15 s at most). Readiness is sampled every 50 ms:
for asgiscale from its admin server's ``/status`` (the workers it shows ready whose process is alive, not a zombie);
for a server without such an endpoint, from answers: a worker is ready from the first answer that carries its pid
until its process dies, and besides the load, a burst of 8 fresh connections to ``/pid`` every 50 ms (sent to every
server alike) lets a new worker answer as soon as it accepts. Recovery of a kill: seconds from the kill until its
replacement was first seen ready, the n-th new worker replacing the n-th victim.

Recycling run: asgiscale ``--limit-max-requests 20`` against uvicorn ``--limit-max-requests 20``, for
``--recycle-duration`` seconds.

Failed requests, as in reload.py: connection errors (refused, reset or truncated, no answer) apart from timeouts
(no answer in 5 s) and non-2xx answers; a *reused* keep-alive connection closed before a single byte came back is
resent once on a fresh connection, as browsers and HTTP libraries do for an idempotent request, and counted apart
as "stale keep-alive, retried" (a kept-alive connection to a killed worker ends that way).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from _http import HOST, REQUEST_ERRORS, Connection, StaleConnectionError, sample_pids
from _proc import descendants, is_alive
from _report import fmt, median, publish, section, table, take_turns
from _servers import (
    App,
    Argv,
    RunningServer,
    Server,
    asgiscale_argv,
    capable,
    free_port,
    get_app,
    select_servers,
)

WORKERS = 4
CONNECTIONS = 16
KILL_PERIOD = 2.0
SAMPLE_PERIOD = 0.05
PROBE_BURST = 8
REQUEST_TIMEOUT = 5.0
RECYCLE_LIMIT = 20
# How each server recycles a worker after a number of requests (granian has no such option).
RECYCLE_FLAGS = {
    "asgiscale": ["--limit-max-requests", str(RECYCLE_LIMIT)],
    "uvicorn": ["--limit-max-requests", str(RECYCLE_LIMIT)],
    "gunicorn": ["--max-requests", str(RECYCLE_LIMIT)],
    "gunicorn-preload": ["--max-requests", str(RECYCLE_LIMIT)],
}
SEED = 17
REPLACE_WAIT = 15.0


@dataclass
class Traffic:
    """What the load's clients saw."""

    ok: int = 0
    connection_errors: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    non_2xx: Counter[int] = field(default_factory=Counter)
    retried: int = 0
    answered_at: list[float] = field(default_factory=list)  # monotonic times of 2xx answers

    @property
    def failed(self) -> int:
        return sum(self.connection_errors.values()) + self.timeouts + sum(self.non_2xx.values())

    @property
    def total(self) -> int:
        return self.ok + self.failed


@dataclass(frozen=True)
class Reading:
    at: float  # monotonic time the reading's answer came back
    ready: frozenset[int]


@dataclass
class Run:
    """One server's turn: its traffic, and for the kill run its readiness and kills."""

    traffic: Traffic
    start: float  # monotonic
    end: float
    readiness: str = ""
    readings: list[Reading] = field(default_factory=list)
    kills: list[tuple[float, int]] = field(default_factory=list)
    workers_seen: int = 0

    def replacements(self) -> list[float]:
        """When each worker that was not there at the first kill first showed up ready, in order."""
        if not self.kills:
            return []
        first_kill = self.kills[0][0]
        known = {pid for r in self.readings if r.at <= first_kill for pid in r.ready}
        first_seen: dict[int, float] = {}
        for reading in self.readings:
            for pid in reading.ready - known:
                first_seen.setdefault(pid, reading.at)
        return sorted(first_seen.values())

    def recoveries(self) -> list[float | None]:
        """Per kill, seconds until its replacement was ready: the n-th new worker to show up ready replaces the n-th
        victim (None: no replacement by the end of the run)."""
        ready_at = self.replacements()
        return [
            max(0.0, ready_at[i] - killed_at) if i < len(ready_at) else None
            for i, (killed_at, _) in enumerate(self.kills)
        ]

    def no_ready(self) -> tuple[float, float]:
        """(total, longest) seconds during which readings in a row showed no ready worker, once one was ready: from
        the first reading that showed none to the next that showed one (or the last reading)."""
        total = longest = 0.0
        empty_since: float | None = None
        was_ready = False
        for reading in self.readings:
            if reading.ready:
                if empty_since is not None:
                    total, longest = total + reading.at - empty_since, max(longest, reading.at - empty_since)
                empty_since, was_ready = None, True
            elif was_ready and empty_since is None:
                empty_since = reading.at
        if empty_since is not None:
            gap = self.readings[-1].at - empty_since
            total, longest = total + gap, max(longest, gap)
        return total, longest


async def _client(port: int, stop: asyncio.Event, traffic: Traffic, pids: dict[int, float]) -> None:
    conn: Connection | None = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = await Connection.open(port, REQUEST_TIMEOUT)
            try:
                response = await conn.get("/pid", timeout=REQUEST_TIMEOUT)
            except StaleConnectionError:
                traffic.retried += 1
                await conn.close()
                conn = await Connection.open(port, REQUEST_TIMEOUT)
                response = await conn.get("/pid", timeout=REQUEST_TIMEOUT)
        except REQUEST_ERRORS as exc:
            if isinstance(exc, asyncio.TimeoutError | TimeoutError):
                traffic.timeouts += 1
            else:
                traffic.connection_errors[type(exc).__name__] += 1
            if conn is not None:
                await conn.close()
                conn = None
            # A refused connection fails at once: a pause keeps one outage from counting thousands of times.
            await asyncio.sleep(0.01)
            continue
        if 200 <= response.status < 300:
            traffic.ok += 1
            now = time.monotonic()
            traffic.answered_at.append(now)
            pids.setdefault(response.pid(), now)
        else:
            traffic.non_2xx[response.status] += 1
        if not response.keep_alive:
            await conn.close()
            conn = None
    if conn is not None:
        await conn.close()


async def _probe(port: int, stop: asyncio.Event, pids: dict[int, float]) -> None:
    """Bursts of fresh connections, so that a new worker answers (and shows up as ready) as soon as it accepts."""
    while not stop.is_set():
        try:
            for pid in await sample_pids(port, PROBE_BURST, timeout=REQUEST_TIMEOUT):
                pids.setdefault(pid, time.monotonic())
        except OSError:
            pass
        await asyncio.sleep(SAMPLE_PERIOD)


class StatusReadiness:
    """asgiscale: the workers /status shows ready, whose process is alive."""

    name = "/status"

    def __init__(self, admin_port: int) -> None:
        self.admin_port = admin_port
        self.conn: Connection | None = None

    async def read(self) -> frozenset[int] | None:
        try:
            if self.conn is None:
                self.conn = await Connection.open(self.admin_port)
            response = await self.conn.get("/status", timeout=REQUEST_TIMEOUT)
        except REQUEST_ERRORS:
            self.conn = None
            return None
        if not response.keep_alive:
            await self.conn.close()
            self.conn = None
        workers = json.loads(response.body)["workers"]
        return frozenset(w["pid"] for w in workers if w["state"] == "ready" and is_alive(w["pid"]))


class AnswerReadiness:
    """Any server: a worker is ready from its first answer until its process dies (see the module docstring)."""

    name = "answers"

    def __init__(self, pids: dict[int, float]) -> None:
        self.pids = pids

    async def read(self) -> frozenset[int] | None:
        return frozenset(pid for pid in self.pids if is_alive(pid))


async def _sample(readiness: StatusReadiness | AnswerReadiness, stop: asyncio.Event, readings: list[Reading]) -> None:
    while not stop.is_set():
        ready = await readiness.read()
        if ready is not None:
            readings.append(Reading(time.monotonic(), ready))
        await asyncio.sleep(SAMPLE_PERIOD)


async def _kill_run(srv: RunningServer, workers: set[int], admin_port: int | None, duration: float) -> Run:
    traffic, pids, stop = Traffic(), dict.fromkeys(workers, 0.0), asyncio.Event()
    readiness = StatusReadiness(admin_port) if admin_port is not None else AnswerReadiness(pids)
    run = Run(traffic, 0.0, 0.0, readiness.name)
    tasks = [asyncio.create_task(_client(srv.port, stop, traffic, pids)) for _ in range(CONNECTIONS)]
    tasks += [
        asyncio.create_task(_probe(srv.port, stop, pids)),
        asyncio.create_task(_sample(readiness, stop, run.readings)),
    ]
    rng = random.Random(SEED)
    try:
        await asyncio.sleep(1.0)
        start = time.monotonic()
        for index in range(int(duration / KILL_PERIOD)):
            await asyncio.sleep(max(0.0, start + (index + 1) * KILL_PERIOD - time.monotonic()))
            ready = run.readings[-1].ready if run.readings else frozenset()
            # Only the server's own processes, by pid: never anything else on the machine.
            candidates = sorted(ready & descendants(srv.pid))
            if candidates:
                victim = rng.choice(candidates)
                os.kill(victim, signal.SIGKILL)
                run.kills.append((time.monotonic(), victim))
        # Until every victim is replaced (or REPLACE_WAIT more seconds), and one kill period at least.
        deadline = time.monotonic() + REPLACE_WAIT
        await asyncio.sleep(KILL_PERIOD)
        while len(run.replacements()) < len(run.kills) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        end = time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    run.start, run.end = start, end
    run.workers_seen = len(pids)
    return run


async def _recycle_run(srv: RunningServer, workers: set[int], duration: float) -> Run:
    traffic, pids, stop = Traffic(), dict.fromkeys(workers, 0.0), asyncio.Event()
    tasks = [asyncio.create_task(_client(srv.port, stop, traffic, pids)) for _ in range(CONNECTIONS)]
    try:
        start = time.monotonic()
        await asyncio.sleep(duration)
        end = time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return Run(traffic, start, end, workers_seen=len(pids))


def _with_args(argv: Argv, extra: list[str]) -> Argv:
    return lambda exe, app, workers, port: [*argv(exe, app, workers, port), *extra]


def _variant(server: Server, extra: list[str], admin_port: int | None = None) -> Server:
    argv = asgiscale_argv(admin=f"{HOST}:{admin_port}") if admin_port is not None else server.argv
    return dataclasses.replace(server, argv=_with_args(argv, extra))


@dataclass
class ChaosResult:
    app: str
    rounds: int
    duration: float
    recycle_duration: float
    kills: dict[str, list[Run]] = field(default_factory=dict)
    recycles: dict[str, list[Run]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    recycle_left_out: dict[str, str] = field(default_factory=dict)

    def no_ready_seconds(self, name: str) -> float | None:
        """Seconds with no ready worker over the kill runs."""
        return sum(r.no_ready()[0] for r in self.kills[name]) if name in self.kills else None

    def timeouts(self, name: str) -> int | None:
        """Requests of the kill runs that got no answer before the timeout."""
        return sum(r.traffic.timeouts for r in self.kills[name]) if name in self.kills else None

    def recycle_failed(self, name: str) -> int | None:
        return sum(r.traffic.failed for r in self.recycles[name]) if name in self.recycles else None

    def markdown(self) -> str:
        return self._kill_table() + "\n\n" + self._recycle_table()

    def _kill_table(self) -> str:
        rows = []
        for name, runs in self.kills.items():
            recoveries = [t for r in runs for t in r.recoveries()]
            measured = [t for t in recoveries if t is not None]
            no_ready = [r.no_ready() for r in runs]
            rows.append(
                [
                    name,
                    runs[0].readiness,
                    str(sum(len(r.kills) for r in runs)),
                    fmt(median(measured), ".2f"),
                    fmt(max(measured, default=None), ".2f"),
                    str(recoveries.count(None)),
                    f"{sum(t for t, _ in no_ready):.1f} / {max(m for _, m in no_ready):.2f}",
                    fmt(max(_silence(r) for r in runs), ".2f"),
                    *_traffic_cells([r.traffic for r in runs]),
                ]
            )
        rows += [[name, f"left out: {reason}", *["n/a"] * 11] for name, reason in self.left_out.items()]
        title = (
            f"### Random SIGKILL of a ready worker every {KILL_PERIOD:g} s, {self.app} app ({WORKERS} workers,"
            f" {CONNECTIONS} keep-alive connections, {self.duration:g} s x {self.rounds} rounds)"
        )
        headers = ["server", "readiness from", "kills", "recovery s (median)", "recovery s (max)",
                   "not replaced by the end", "s with no ready worker (total / longest)",
                   "longest s with no answer", "requests", "failed", "connection errors", "timeouts",
                   "stale keep-alive, retried"]  # fmt: skip
        return title + "\n\n" + table(headers, rows)

    def _recycle_table(self) -> str:
        rows = []
        for name, runs in self.recycles.items():
            rows.append(
                [
                    name,
                    str(sum(r.workers_seen for r in runs)),
                    fmt(max(_silence(r) for r in runs), ".2f"),
                    *_traffic_cells([r.traffic for r in runs]),
                ]
            )
        rows += [[name, f"left out: {reason}", *["n/a"] * 6] for name, reason in self.recycle_left_out.items()]
        title = (
            f"### Recycling every {RECYCLE_LIMIT} requests (`--limit-max-requests {RECYCLE_LIMIT}`), {self.app} app"
            f" ({WORKERS} workers, {CONNECTIONS} keep-alive connections, {self.recycle_duration:g} s x"
            f" {self.rounds} rounds)"
        )
        headers = ["server", "workers that answered", "longest s with no answer", "requests", "failed",
                   "connection errors", "timeouts", "stale keep-alive, retried"]  # fmt: skip
        return title + "\n\n" + table(headers, rows)


def _silence(run: Run) -> float:
    """The longest time with no 2xx answer on any connection, the run's start and end included."""
    times = [run.start, *(t for t in run.traffic.answered_at if run.start <= t <= run.end), run.end]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def _traffic_cells(traffics: list[Traffic]) -> list[str]:
    errors: Counter[str] = Counter()
    for t in traffics:
        errors.update(t.connection_errors)
        errors.update({str(status): n for status, n in t.non_2xx.items()})
    detail = ", ".join(f"{name} x{n}" for name, n in sorted(errors.items()))
    return [
        str(sum(t.total for t in traffics)),
        "**" + str(sum(t.failed for t in traffics)) + "**",
        str(sum(sum(t.connection_errors.values()) for t in traffics)) + (f" ({detail})" if detail else ""),
        str(sum(t.timeouts for t in traffics)),
        str(sum(t.retried for t in traffics)),
    ]


def run(
    servers: list[Server], app_name: str, *, rounds: int = 1, duration: float = 40.0, recycle_duration: float = 20.0
) -> ChaosResult:
    app: App = get_app(app_name)
    result = ChaosResult(app.name, rounds, duration, recycle_duration)

    def kill(server: Server, r: int) -> Run:
        admin = free_port() if server.name == "asgiscale" else None
        with RunningServer(_variant(server, [], admin), app, WORKERS) as srv:
            sample = asyncio.run(_kill_run(srv, srv.wait_workers(WORKERS), admin, duration))
        _print_kill(r, server.name, sample)
        return sample

    def recycle(server: Server, r: int) -> Run:
        with RunningServer(_variant(server, RECYCLE_FLAGS[server.name]), app, WORKERS) as srv:
            sample = asyncio.run(_recycle_run(srv, srv.wait_workers(WORKERS), recycle_duration))
        t = sample.traffic
        print(f"  recycle round {r + 1}: {server.name:<10} {t.total} requests, {t.failed} failed "
              f"({sum(t.connection_errors.values())} connection errors, {t.timeouts} timeouts), {t.retried} retried, "
              f"{sample.workers_seen} workers answered, longest silence {_silence(sample):.2f} s")  # fmt: skip
        return sample

    result.kills = take_turns(servers, rounds, kill, result.left_out)
    recyclers = capable(servers, lambda s: s.name in RECYCLE_FLAGS, result.recycle_left_out, "no request limit")
    result.recycles = take_turns(recyclers, rounds, recycle, result.recycle_left_out)
    return result


def _print_kill(r: int, name: str, sample: Run) -> None:
    recoveries = sample.recoveries()
    measured = [t for t in recoveries if t is not None]
    total, longest = sample.no_ready()
    t = sample.traffic
    print(
        f"  kill round {r + 1}: {name:<10} {len(sample.kills)} kills, recovery median {fmt(median(measured), '.2f')} s"
        f" max {fmt(max(measured, default=None), '.2f')} s, {recoveries.count(None)} not replaced; no ready worker"
        f" {total:.1f} s (longest {longest:.2f} s) by {sample.readiness}; {t.total} requests, {t.failed} failed"
        f" ({sum(t.connection_errors.values())} connection errors, {t.timeouts} timeouts), {t.retried} retried"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="asgiscale,uvicorn")
    parser.add_argument("--app", default="fastapi")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of the kill run")
    parser.add_argument("--recycle-duration", type=float, default=20.0, help="seconds of the recycling run")
    parser.add_argument("--no-docs", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    servers = select_servers(args.servers.split(","))
    started_at = time.gmtime()
    res = run(servers, args.app, rounds=args.rounds, duration=args.duration, recycle_duration=args.recycle_duration)
    text = section(time.strftime("Chaos, run of %Y-%m-%d %H:%M UTC", started_at), servers, [res.markdown()], FACTS)
    publish(text, to_docs=not args.no_docs)


FACTS = [
    f"load: {CONNECTIONS} closed-loop keep-alive connections from the harness's own client (benchmarks/_http.py), not"
    f" wrk; {REQUEST_TIMEOUT:g} s request timeout",
    "readiness: asgiscale's from its admin server's /status, every 50 ms; the others' inferred from answers (a worker"
    " is ready from the first answer carrying its pid until its process dies, with a burst of 8 fresh connections"
    " every 50 ms, sent to every server, so that a new worker answers as soon as it accepts)",
    "uvicorn's supervisor looks at its workers every 0.5 s and replaces a dead one, or one that exited at its"
    " --limit-max-requests, with a new interpreter that imports the app again; asgiscale forks the replacement from"
    " its pre-loaded process",
]


if __name__ == "__main__":
    main()
