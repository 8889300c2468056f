"""Overload: one worker offered three times what it can serve, with and without admission control.

    python benchmarks/overload.py [--rounds 2] [--cpu-ms 5] [--overload 3] [--duration 8] [--modes keep-alive,fresh]

The app spins for a fixed CPU time per request (apps/service.py, ``/work?cpu=5``), so one
worker's capacity C is the same on every server. C is uvicorn's closed-loop throughput (2
clients sending back to back), measured once before the rounds to set the rates and again in
each turn. The open-loop generator (_openloop.py) then sends at 0.5 x C and at 3 x C,
requests due on a fixed schedule and their latency counted from the due time, once on
kept-alive connections (a proxy's pool) and once on a fresh connection per request.
Figures: goodput (2xx answers completed while the load runs, per second, over uvicorn's C
of the same round and mode), the latency of the admitted (2xx) requests, the share refused
with 503 and the share without an answer within the generator's 5 s. Every server starts
afresh for each mode and stops after the overload (a server without a limit goes on working
through abandoned requests for a while).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from _openloop import LoadResult, closed_loop, open_loop, percentile, run
from _report import fmt, median, paired_ratio, publish, section, table, take_turns
from _servers import BENCH_DIR, SERVERS, App, Argv, RunningServer, Server, select_servers

APP = App("service", BENCH_DIR / "apps", "service:app")
SUBJECT = "asgiscale-admission"
BASELINE = "uvicorn"
GOODPUT_TARGET = 0.95  # goodput at 3 x C over C
P99_TARGET = 2.0  # p99 of admitted requests at 3 x C over p99 at 0.5 x C
LIGHT = 0.5
TIMEOUT = 5.0
MODES = {"keep-alive": True, "fresh": False}  # mode -> Client(keep_alive=...)
MODE_TITLES = {
    "keep-alive": "kept-alive connections (a pool, as behind a proxy)",
    "fresh": "a fresh connection per request",
}
GENERATOR = "open-loop generator: benchmarks/_openloop.py (asyncio on uvloop, requests due at a constant rate)"


def with_args(base: Argv, extra: list[str], before_last: bool = False) -> Argv:
    """``base``'s command line plus ``extra`` (before the last word, for granian whose app comes last)."""

    def argv(exe: str, app: App, workers: int, port: int) -> list[str]:
        cmd = base(exe, app, workers, port)
        return cmd[:-1] + extra + cmd[-1:] if before_last else cmd + extra

    return argv


def variants(limit: int, queue: int) -> list[Server]:
    """The five configurations compared; each limit lets ``limit + queue`` requests in at once.

    uvicorn refuses a request once its open connections reach ``--limit-concurrency`` (the
    request's own included), hence ``limit + queue + 1``.
    """
    asgiscale, uvicorn, granian = SERVERS["asgiscale"], SERVERS["uvicorn"], SERVERS["granian"]
    admission = ["--max-concurrency", str(limit), "--max-queue", str(queue)]
    limited = ["--limit-concurrency", str(limit + queue + 1)]
    backpressure = ["--backpressure", str(limit + queue)]
    return [
        Server("asgiscale", "asgiscale", asgiscale.argv, True, True, note="no limit"),
        Server(SUBJECT, "asgiscale", with_args(asgiscale.argv, admission), True, True, note=" ".join(admission)),
        Server(BASELINE, "uvicorn", uvicorn.argv, True, True, note="no limit"),
        Server("uvicorn-limit", "uvicorn", with_args(uvicorn.argv, limited), True, True, note=" ".join(limited)),
        Server(
            "granian-backpressure",
            "granian",
            with_args(granian.argv, backpressure, before_last=True),
            False,
            True,
            note=" ".join(backpressure),
        ),  # fmt: skip
    ]


@dataclass(frozen=True)
class Turn:
    """One server start in one connection mode."""

    capacity: float  # this server's closed-loop 2xx/s in this turn
    light: LoadResult  # at 0.5 x C
    heavy: LoadResult  # at 3 x C

    def light_p99(self) -> float | None:
        return percentile(self.light.latencies_ms(), 99)

    def heavy_p50(self) -> float | None:
        return percentile(self.heavy.latencies_ms(), 50)

    def heavy_p99(self) -> float | None:
        return percentile(self.heavy.latencies_ms(), 99)

    def p99_ratio(self) -> float | None:
        light, heavy = self.light_p99(), self.heavy_p99()
        return heavy / light if light and heavy is not None else None


def _verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "not measured"
    return "met" if ok(value) else "**not met**"


def _median_of(values: Sequence[float | None]) -> float | None:
    return median([v for v in values if v is not None])


@dataclass
class OverloadResult:
    cpu_ms: float
    overload: float
    duration: float
    rounds: int
    reference: float = 0.0  # C the rates were set from (req/s)
    servers: list[Server] = field(default_factory=list)
    turns: dict[str, dict[str, list[Turn]]] = field(default_factory=dict)  # mode -> server -> one per round
    left_out: dict[str, str] = field(default_factory=dict)

    def _turns(self, mode: str, name: str) -> list[Turn]:
        return self.turns.get(mode, {}).get(name, [])

    def capacities(self, mode: str) -> list[float]:
        """C per round: uvicorn's closed-loop throughput in that round and mode (the first one's without it)."""
        own = [t.capacity for t in self._turns(mode, BASELINE)]
        return own or [self.reference] * self.rounds

    def goodput_shares(self, mode: str, name: str = SUBJECT) -> list[float]:
        pairs = zip(self._turns(mode, name), self.capacities(mode), strict=False)
        return [t.heavy.goodput() / c for t, c in pairs]

    def goodput_share(self, mode: str, name: str = SUBJECT) -> float | None:
        return median(self.goodput_shares(mode, name))

    def p99_ratio(self, mode: str, name: str = SUBJECT) -> float | None:
        return _median_of([t.p99_ratio() for t in self._turns(mode, name)])

    def generator_cpu(self) -> float:
        return max((t.heavy.cpu_share() for m in self.turns.values() for ts in m.values() for t in ts), default=0.0)

    def targets(self) -> list[list[str]]:
        """asgiscale with admission control against the goals, per connection mode."""
        rows = []
        for mode in self.turns:
            share, ratio = self.goodput_share(mode), self.p99_ratio(mode)
            rows.append([f"goodput at {self.overload:g} C, 1 worker, {mode}", f"≥ {GOODPUT_TARGET} C",
                         fmt(share, ".2f", " C"), _verdict(share, lambda v: v >= GOODPUT_TARGET)])  # fmt: skip
            verdict = _verdict(ratio, lambda v: v <= P99_TARGET)
            if share is not None and share < 0.5:  # the p99 of a handful of requests says nothing
                verdict = f"**not met**: only {share:.0%} of C admitted"
            rows.append([f"p99 of admitted at {self.overload:g} C over p99 at {LIGHT:g} C, {mode}",
                         f"≤ {P99_TARGET:g}x", fmt(ratio, ".1f", "x"), verdict])  # fmt: skip
        return rows

    def _table(self, mode: str) -> str:
        by_server = self.turns.get(mode, {})
        goodput: dict[str, list[float | None]] = {n: [t.heavy.goodput() for t in v] for n, v in by_server.items()}
        rows = []
        for server in self.servers:
            turns = by_server.get(server.name)
            if not turns:
                if server.name in self.left_out:
                    rows.append([server.name, server.note, self.left_out[server.name]] + ["n/a"] * 8)
                continue
            rows.append(
                [
                    server.name,
                    server.note,
                    fmt(median([t.capacity for t in turns])),
                    fmt(median([t.heavy.goodput() for t in turns])),
                    fmt(self.goodput_share(mode, server.name), ".2f"),
                    fmt(paired_ratio(goodput, server.name, BASELINE), ".2f"),
                    fmt(median([t.heavy.fraction(503) for t in turns]), ".0%"),
                    fmt(median([t.heavy.fraction(0) for t in turns]), ".0%"),
                    fmt(_median_of([t.heavy_p50() for t in turns]), ".1f")
                    + " / "
                    + fmt(_median_of([t.heavy_p99() for t in turns]), ".1f"),
                    fmt(_median_of([t.light_p99() for t in turns]), ".1f"),
                    fmt(self.p99_ratio(mode, server.name), ".1f", "x"),
                    str(max(t.heavy.connections for t in turns)),
                ]
            )
        x = f"{self.overload:g} C"
        headers = ["server", "limit", "closed-loop req/s", f"goodput at {x}, req/s", "goodput / C",
                   f"goodput vs {BASELINE}", "503", "no answer", f"admitted p50 / p99 ms at {x}",
                   f"p99 ms at {LIGHT:g} C", f"p99 ratio {x} / {LIGHT:g} C", "connections opened"]  # fmt: skip
        return f"#### {MODE_TITLES[mode]}\n\n" + table(headers, rows)

    def markdown(self) -> str:
        title = (
            f"### Overload, one worker at {self.overload:g} x its capacity ({self.cpu_ms:g} ms of CPU per request,"
            f" open loop {self.duration:g} s x {self.rounds} rounds)"
        )
        note = (
            f"Offered {self.overload * self.reference:.0f} and {LIGHT * self.reference:.0f} req/s"
            f" ({self.overload:g} and {LIGHT:g} x C, C = {self.reference:.0f} req/s: uvicorn, closed loop, measured"
            " first). Latency from each request's due time; *no answer*: nothing within"
            f" {TIMEOUT:g} s, or a failed connection. *goodput / C*: 2xx answers completed while the load ran, per"
            " second, over uvicorn's closed-loop req/s in the same round and mode. Medians over rounds. The"
            f" generator used at most {self.generator_cpu():.0%} of a core. A limit can only refuse what a worker"
            " has accepted: with a fresh connection per request, a uvicorn or asgiscale worker on uvloop accepts"
            " one connection per event-loop iteration (libuv), and an iteration lasts as long as the CPU-bound"
            " request it runs; so the excess waits in the kernel's accept queue, out of any limit's reach (see"
            " benchmarks/README.md). granian's `--backpressure` holds the excess without answering: it sends no 503."
        )
        targets = f"#### {SUBJECT} against the goals\n\n" + table(["figure", "target", SUBJECT, "verdict"],
                                                                    self.targets())  # fmt: skip
        return "\n\n".join([title, note, *(self._table(mode) for mode in self.turns), targets])


def _capacity(port: int, path: str, seconds: float, keep_alive: bool) -> float:
    run(closed_loop(port, path, 2, 0.5, keep_alive=keep_alive))  # warm-up
    return run(closed_loop(port, path, 2, seconds, keep_alive=keep_alive))


def run_overload(
    servers: list[Server],
    *,
    modes: Sequence[str] = tuple(MODES),
    rounds: int = 2,
    cpu_ms: float = 5.0,
    overload: float = 3.0,
    duration: float = 8.0,
    light_duration: float = 4.0,
    capacity_seconds: float = 1.5,
) -> OverloadResult:
    result = OverloadResult(cpu_ms, overload, duration, rounds, servers=servers)
    path = f"/work?cpu={cpu_ms:g}"
    with RunningServer(SERVERS[BASELINE], APP, 1) as srv:
        srv.wait_workers(1)
        result.reference = _capacity(srv.port, path, 3.0, keep_alive=True)
    print(f"  C = {result.reference:.0f} req/s (uvicorn, closed loop, kept-alive connections)")

    def measure(server: Server, r: int) -> dict[str, Turn]:
        turns = {}
        for mode in modes:
            keep_alive = MODES[mode]
            with RunningServer(server, APP, 1) as srv:
                srv.wait_workers(1)
                capacity = _capacity(srv.port, path, capacity_seconds, keep_alive)
                light_rate, heavy_rate = LIGHT * result.reference, overload * result.reference
                light = run(open_loop(srv.port, path, light_rate, light_duration, keep_alive=keep_alive))
                time.sleep(0.5)
                heavy = run(open_loop(srv.port, path, heavy_rate, duration, timeout=TIMEOUT, keep_alive=keep_alive))
            turn = turns[mode] = Turn(capacity, light, heavy)
            print(
                f"  round {r + 1}, {mode:<10} {server.name:<21} closed loop {capacity:4.0f}/s, goodput"
                f" {heavy.goodput():4.0f}/s, 503 {heavy.fraction(503):4.0%}, no answer {heavy.fraction(0):4.0%},"
                f" admitted p99 {fmt(turn.heavy_p99(), '.1f')} ms, p99 at {LIGHT:g} C {fmt(turn.light_p99(), '.1f')}"
                f" ms, {heavy.connections} connections",
                flush=True,
            )
        return turns

    by_server = take_turns(servers, rounds, measure, result.left_out)
    result.turns = {mode: {name: [t[mode] for t in turns] for name, turns in by_server.items()} for mode in modes}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpu-ms", type=float, default=5.0, help="CPU time per request")
    parser.add_argument("--overload", type=float, default=3.0, help="offered load, in multiples of C")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of overload per turn")
    parser.add_argument("--modes", default=",".join(MODES), help="connection modes: keep-alive, fresh")
    parser.add_argument("--max-concurrency", type=int, default=1, help="asgiscale's limit (the others match it)")
    parser.add_argument("--max-queue", type=int, default=1)
    parser.add_argument("--servers", help="a comma-separated subset of the variants")
    parser.add_argument("--no-docs", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    chosen = variants(args.max_concurrency, args.max_queue)
    if args.servers:
        chosen = [s for s in chosen if s.name in args.servers.split(",")]
    installed = {s.name for s in select_servers(sorted({s.command for s in chosen} | {BASELINE}))}
    if BASELINE not in installed:
        raise SystemExit("uvicorn sets the rates (its capacity is C): pip install uvicorn")
    chosen = [s for s in chosen if s.command in installed]
    started_at = time.gmtime()
    res = run_overload(chosen, modes=args.modes.split(","), rounds=args.rounds, cpu_ms=args.cpu_ms,
                       overload=args.overload, duration=args.duration)  # fmt: skip
    title = time.strftime("Overload, run of %Y-%m-%d %H:%M UTC", started_at)
    publish(section(title, chosen, [res.markdown()], [GENERATOR]), to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
