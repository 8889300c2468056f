"""Self-scaling: a load step from idle to 4 workers' worth, and the memory an idle self-scaling server holds.

    python benchmarks/scaling.py [--rounds 2] [--duration 20] [--skip-memory] [--skip-step]

Step. One worker's capacity is set by a concurrency limit, not by the CPU: the app waits 50 ms
(``asyncio.sleep``, a stand-in for a database call) and spins 1 ms of CPU per request
(apps/service.py), and every server admits at most 10 requests per worker (asgiscale
``--max-concurrency 10``, uvicorn ``--limit-concurrency 11``, which counts the request's own
connection). So C is about 10 / 51 ms = 196 req/s per worker, measured closed-loop against
uvicorn with 1 worker, and 4 C is a load that 4 workers carry on 2 cores (the CPU part is
about half a core), where a CPU-bound app at 4 times one worker's capacity could not be served
by any server on this machine. Each server starts, idles 2 s, then the open-loop generator
sends 4 C for ``--duration`` seconds on a fresh connection per request (so that the kernel
hands requests to workers added during the step). asgiscale starts with 1 worker and may grow
to 4 (HPA, concurrency target); the fixed servers already have their workers before the
step. asgiscale's admin /metrics is polled every 100 ms for ``asgiscale_workers{state="ready"}``.

Memory. Summed PSS of the whole process tree (as memory.py) 3 s after start with no traffic:
asgiscale ``--min-workers 1 --max-workers 8`` against ``--workers 8`` and uvicorn ``--workers 8``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from _http import HOST, REQUEST_ERRORS, fetch
from _openloop import LoadResult, closed_loop, open_loop, percentile, run
from _proc import tree_pss_kib
from _report import fmt, median, paired_ratio, publish, section, table, take_turns
from _servers import BENCH_DIR, SERVERS, App, Argv, RunningServer, Server, free_port, get_app, select_servers
from overload import GENERATOR, with_args

APP = App("service", BENCH_DIR / "apps", "service:app")
SUBJECT = "asgiscale-autoscale"
REFERENCE = "uvicorn-4"  # the fixed fleet that has the capacity from the start
FIXED = "asgiscale-4"  # the same, asgiscale with a fixed count: the cost of starting from 1 worker
LIMIT = 10  # requests per worker
WAIT_MS, CPU_MS = 50, 1
STEP = 4.0  # offered load in multiples of one worker's capacity
MAX_WORKERS = 4
TARGET = "concurrency=5"  # half the limit: see README (the in-flight metric cannot exceed the limit)
SERVED = 0.9  # a second counts as served when this share of the requests due in it got a 2xx
READY = re.compile(rb'^asgiscale_workers\{state="ready"\} ([\d.]+)$', re.MULTILINE)
DESIRED = re.compile(rb"^asgiscale_workers_desired ([\d.]+)$", re.MULTILINE)


def _autoscale_argv(admin_port: int) -> Argv:
    def argv(exe: str, app: App, workers: int, port: int) -> list[str]:
        return [exe, "run", app.target, "--min-workers", "1", "--max-workers", str(MAX_WORKERS),
                "--scale-target", TARGET, "--scale-sync-period", "1", "--max-concurrency", str(LIMIT),
                "--host", HOST, "--port", str(port), "--app-dir", str(app.directory), "--no-access-log",
                "--log-level", "info", "--admin", f"{HOST}:{admin_port}"]  # fmt: skip

    return argv


@dataclass(frozen=True)
class Variant:
    name: str
    command: str
    workers: int  # workers before the step
    note: str
    argv: Callable[[int], Argv]  # admin port -> command line

    def server(self, admin_port: int = 0) -> Server:
        return Server(self.name, self.command, self.argv(admin_port), True, True, note=self.note)


def step_variants() -> list[Variant]:
    asgiscale, uvicorn = SERVERS["asgiscale"].argv, SERVERS["uvicorn"].argv
    admission = ["--max-concurrency", str(LIMIT)]
    limited = ["--limit-concurrency", str(LIMIT + 1)]
    return [
        Variant(SUBJECT, "asgiscale", 1,
                f"--min-workers 1 --max-workers {MAX_WORKERS} --scale-target {TARGET} --scale-sync-period 1"
                f" --max-concurrency {LIMIT}", _autoscale_argv),
        Variant(FIXED, "asgiscale", 4, f"--workers 4 --max-concurrency {LIMIT}",
                lambda _: with_args(asgiscale, admission)),
        Variant("uvicorn-1", "uvicorn", 1, f"--workers 1 --limit-concurrency {LIMIT + 1}",
                lambda _: with_args(uvicorn, limited)),
        Variant(REFERENCE, "uvicorn", 4, f"--workers 4 --limit-concurrency {LIMIT + 1}",
                lambda _: with_args(uvicorn, limited)),
    ]  # fmt: skip


@dataclass(frozen=True)
class StepTurn:
    load: LoadResult
    fleet: list[tuple[float, int, int]]  # (s since the step began, ready workers, desired workers)
    workers: int  # workers before the step

    def seconds_to_workers(self, count: int) -> float | None:
        """When ``count`` workers were first ready (0 for a fixed fleet that had them), None if never."""
        if self.workers >= count:
            return 0.0
        return next((t for t, ready, _ in self.fleet if ready >= count), None)

    def served_by_second(self) -> list[float]:
        """Per second of the step: the share of the requests due in it that got a 2xx."""
        bins = math.ceil(self.load.duration)
        due, ok = [0] * bins, [0] * bins
        for t, s in zip(self.load.due, self.load.status, strict=True):
            due[int(t)] += 1
            ok[int(t)] += 200 <= s < 300
        return [o / d if d else 1.0 for o, d in zip(ok, due, strict=True)]

    def seconds_to_served(self) -> float | None:
        """The start of the first second from which every second had ``SERVED`` of its requests answered 2xx."""
        shares = self.served_by_second()
        for i in range(len(shares)):
            if all(share >= SERVED for share in shares[i:]):
                return float(i)
        return None

    def served_share(self) -> float:
        return self.load.fraction(200)


@dataclass
class StepResult:
    rate: float
    capacity: float
    duration: float
    rounds: int
    variants: list[Variant] = field(default_factory=list)
    turns: dict[str, list[StepTurn]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def seconds_to_capacity(self, name: str = SUBJECT) -> float | None:
        times = [t.seconds_to_workers(MAX_WORKERS) for t in self.turns.get(name, [])]
        return None if not times or None in times else median([t for t in times if t is not None])

    def markdown(self) -> str:
        served: dict[str, list[float | None]] = {n: [t.served_share() for t in v] for n, v in self.turns.items()}
        rows = []
        for variant in self.variants:
            turns = self.turns.get(variant.name)
            if not turns:
                if variant.name in self.left_out:
                    rows.append([variant.name, variant.note, self.left_out[variant.name]] + ["n/a"] * 9)
                continue
            to_workers = [t.seconds_to_workers(MAX_WORKERS) for t in turns]
            to_served = [t.seconds_to_served() for t in turns]
            p99 = [percentile(t.load.latencies_ms(), 99) for t in turns]
            p50 = [percentile(t.load.latencies_ms(), 50) for t in turns]
            first = turns[len(turns) // 2].served_by_second()[:6]
            rows.append(
                [
                    variant.name,
                    variant.note,
                    " / ".join("never" if s is None else f"{s:.1f}" for s in to_workers),
                    " / ".join("never" if s is None else f"{s:.0f}" for s in to_served),
                    fmt(median([t.load.goodput() for t in turns])),
                    fmt(median([t.served_share() for t in turns]), ".0%"),
                    fmt(paired_ratio(served, variant.name, REFERENCE), ".2f"),
                    fmt(paired_ratio(served, variant.name, FIXED), ".2f"),
                    fmt(median([t.load.fraction(503) for t in turns]), ".0%"),
                    fmt(median([t.load.fraction(0) for t in turns]), ".1%"),
                    fmt(median([p for p in p50 if p is not None]), ".0f")
                    + " / "
                    + fmt(median([p for p in p99 if p is not None]), ".0f"),
                    " ".join(f"{share:.0%}" for share in first),
                ]
            )
        title = (
            f"### Load step from idle to {STEP:g} x one worker's capacity ({self.rate:.0f} req/s for"
            f" {self.duration:g} s, {self.rounds} rounds)"
        )
        headers = ["server", "settings", f"s to {MAX_WORKERS} workers ready, per round",
                   f"s to ≥ {SERVED:.0%} served, per round", "goodput req/s", "2xx share",
                   f"2xx share vs {REFERENCE}", f"vs {FIXED}", "503", "no answer", "2xx p50 / p99 ms",
                   "2xx share, seconds 1-6"]  # fmt: skip
        note = (
            f"\n\nApp: `/work?wait={WAIT_MS}&cpu={CPU_MS}` (50 ms asyncio.sleep, 1 ms of CPU), at most {LIMIT}"
            f" requests per worker, so C = {self.capacity:.0f} req/s per worker (plain uvicorn, 1 worker, {LIMIT}"
            f" clients, closed loop) and the step offers {STEP:g} C on a fresh connection per request. A CPU-bound app"
            " could not show this on 2 cores: 4 workers' worth of CPU is not there for any server. The target"
            f" `{TARGET}` is half the limit because the HPA's concurrency metric counts admitted requests only"
            f" and cannot exceed `--max-concurrency`: a worker at its limit reads {LIMIT}, a ratio of"
            f" {LIMIT / 5:g} to the target, so the HPA can at most double the count per sync. *s to ≥"
            f" {SERVED:.0%} served*: the first second of the step from which every second had ≥ {SERVED:.0%} of"
            " its requests answered 2xx. Latency from each request's due time; medians over rounds."
        )
        return title + "\n\n" + table(headers, rows) + note


async def _poll_fleet(admin_port: int, seconds: float, every: float = 0.1) -> list[tuple[float, int, int]]:
    """(perf_counter, ready, desired) read from asgiscale's /metrics every ``every`` seconds."""
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        try:
            body = (await fetch(admin_port, "/metrics", timeout=1.0)).body
            ready, desired = READY.search(body), DESIRED.search(body)
            if ready and desired:
                samples.append((time.perf_counter(), int(float(ready.group(1))), int(float(desired.group(1)))))
        except REQUEST_ERRORS:
            pass
        await asyncio.sleep(every)
    return samples


async def _step(port: int, admin_port: int | None, rate: float, duration: float, workers: int) -> StepTurn:
    path = f"/work?wait={WAIT_MS}&cpu={CPU_MS}"
    load_task = asyncio.create_task(open_loop(port, path, rate, duration))
    fleet: list[tuple[float, int, int]] = []
    if admin_port is not None:
        fleet = await _poll_fleet(admin_port, duration)
    load = await load_task
    return StepTurn(load, [(t - load.started, ready, desired) for t, ready, desired in fleet], workers)


def run_step(variants: list[Variant], *, rounds: int = 2, duration: float = 20.0, idle: float = 2.0) -> StepResult:
    by_name = {v.name: v for v in variants}
    # C: one worker with LIMIT requests in flight, and no limit of its own to refuse a reconnecting client.
    with RunningServer(SERVERS["uvicorn"], APP, 1) as srv:
        srv.wait_workers(1)
        path = f"/work?wait={WAIT_MS}&cpu={CPU_MS}"
        run(closed_loop(srv.port, path, LIMIT, 0.5))
        capacity = run(closed_loop(srv.port, path, LIMIT, 2.0))
    result = StepResult(STEP * capacity, capacity, duration, rounds, variants)
    print(f"  C = {capacity:.0f} req/s per worker; the step offers {result.rate:.0f} req/s")

    def measure(server: Server, r: int) -> StepTurn:
        variant = by_name[server.name]
        admin_port = free_port() if variant.name == SUBJECT else None
        with RunningServer(variant.server(admin_port or 0), APP, variant.workers) as srv:
            srv.wait_workers(variant.workers)
            time.sleep(idle)
            turn = run(_step(srv.port, admin_port, result.rate, duration, variant.workers))
        print(
            f"  round {r + 1}: {variant.name:<20} {MAX_WORKERS} workers at"
            f" {fmt(turn.seconds_to_workers(MAX_WORKERS), '.1f')} s, ≥ {SERVED:.0%} served from"
            f" {fmt(turn.seconds_to_served(), '.0f')} s, 2xx {turn.served_share():.0%},"
            f" 503 {turn.load.fraction(503):.0%}, p99 {fmt(percentile(turn.load.latencies_ms(), 99), '.0f')} ms",
            flush=True,
        )
        return turn

    result.turns = take_turns([v.server() for v in variants], rounds, measure, result.left_out)
    return result


@dataclass
class IdleMemoryResult:
    rounds: int
    app: str
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # (MiB, processes)
    notes: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def ratio(self, name: str, baseline: str) -> float | None:
        mib: dict[str, list[float | None]] = {n: [s[0] for s in v] for n, v in self.samples.items()}
        return paired_ratio(mib, name, baseline)

    def markdown(self) -> str:
        rows = []
        for name, samples in self.samples.items():
            rows.append(
                [
                    name,
                    self.notes[name],
                    fmt(median([s[0] for s in samples]), ".1f"),
                    fmt(self.ratio(name, "uvicorn-8"), ".2f"),
                    fmt(self.ratio(name, "asgiscale-8"), ".2f"),
                    str(max(s[1] for s in samples)),
                ]
            )
        rows += [
            [name, self.notes.get(name, ""), reason, "n/a", "n/a", "n/a"] for name, reason in self.left_out.items()
        ]
        title = f"### Memory at idle, up to 8 workers, {self.app} app ({self.rounds} rounds)"
        headers = ["server", "settings", "PSS MiB, whole tree (median)", "ratio vs uvicorn-8", "ratio vs asgiscale-8",
                   "processes"]  # fmt: skip
        note = (
            "\n\nSummed PSS of the master and every descendant 3 s after the last worker answered, no traffic"
            " besides the readiness checks. The self-scaling server holds its minimum (1 worker) until load"
            " comes; its tree also holds the supervisor, the admin server and the pre-loaded process."
        )
        return title + "\n\n" + table(headers, rows) + note


def run_memory(*, rounds: int = 2, app_name: str = "fastapi", settle: float = 3.0) -> IdleMemoryResult:
    app = get_app(app_name)
    result = IdleMemoryResult(rounds, app.name)
    asgiscale = SERVERS["asgiscale"]

    def autoscaled(exe: str, app: App, workers: int, port: int) -> list[str]:
        cmd = asgiscale.argv(exe, app, workers, port)
        at = cmd.index("--workers")
        return cmd[:at] + ["--min-workers", "1", "--max-workers", "8"] + cmd[at + 2 :]

    servers = [
        (Server("asgiscale-1-to-8", "asgiscale", autoscaled, True, True), 1, "--min-workers 1 --max-workers 8"),
        (Server("asgiscale-8", "asgiscale", asgiscale.argv, True, True), 8, "--workers 8"),
        (Server("uvicorn-8", "uvicorn", SERVERS["uvicorn"].argv, True, True), 8, "--workers 8"),
    ]
    workers = {server.name: count for server, count, _ in servers}
    result.notes = {server.name: note for server, _, note in servers}

    def measure(server: Server, r: int) -> tuple[float, int]:
        with RunningServer(server, app, workers[server.name]) as srv:
            srv.wait_workers(workers[server.name])
            time.sleep(settle)
            kib, processes = tree_pss_kib(srv.pid)
        print(f"  idle memory round {r + 1}: {server.name:<17} {kib / 1024:7.1f} MiB in {processes} processes")
        return kib / 1024, processes

    result.samples = take_turns([s for s, _, _ in servers], rounds, measure, result.left_out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the load step")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--no-docs", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    installed = {s.name for s in select_servers(["asgiscale", "uvicorn"])}
    if installed != {"asgiscale", "uvicorn"}:
        raise SystemExit("scaling.py needs asgiscale (pip install -e .) and uvicorn")
    started_at = time.gmtime()
    tables = []
    if not args.skip_step:
        tables.append(run_step(step_variants(), rounds=args.rounds, duration=args.duration).markdown())
    if not args.skip_memory:
        tables.append(run_memory(rounds=args.rounds).markdown())
    title = time.strftime("Self-scaling, run of %Y-%m-%d %H:%M UTC", started_at)
    publish(section(title, [SERVERS["asgiscale"], SERVERS["uvicorn"]], tables, [GENERATOR]), to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
