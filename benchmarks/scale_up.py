"""Scale-up latency: from SIGTTIN on the master to the new worker answering a request.

    python benchmarks/scale_up.py [--rounds 3] [--samples 2] [--apps fastapi,heavy]

Before each signal the harness notes every process in the server's tree. After it, it keeps
opening fresh connections (``Connection: close``, a few at a time so that busy old workers leave
some to the newcomer) to ``/pid`` until a pid it has not noted answers. Each poll takes a few
milliseconds plus a 5 ms pause, so times are upper bounds with a resolution of about 10 ms. It also notes when the new
process first shows up in /proc, which separates "the master reacted" from "the worker got ready".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
from dataclasses import dataclass, field

from _http import sample_pids
from _proc import descendants
from _report import fmt, median, paired_ratio, table, take_turns
from _servers import (
    BASELINE,
    DEFAULT_SERVERS,
    App,
    RunningServer,
    Server,
    capable,
    get_app,
    select_servers,
)


@dataclass(frozen=True)
class Sample:
    spawned_ms: float | None
    serving_ms: float | None


async def _time_new_worker(srv: RunningServer, timeout: float, poll_interval: float = 0.005) -> Sample:
    known = {srv.pid} | descendants(srv.pid)
    start = time.perf_counter()
    srv.send(signal.SIGTTIN)
    spawned_ms = None
    while (elapsed := time.perf_counter() - start) < timeout:
        if spawned_ms is None and descendants(srv.pid) - known:
            spawned_ms = elapsed * 1000
        try:
            pids = await sample_pids(srv.port, concurrency=3, timeout=2.0)
        except OSError:
            pids = set()
        if pids - known:
            serving_ms = (time.perf_counter() - start) * 1000
            return Sample(spawned_ms if spawned_ms is not None else serving_ms, serving_ms)
        await asyncio.sleep(poll_interval)
    return Sample(spawned_ms, None)


@dataclass
class ScaleUpResult:
    app: str
    workers: int
    rounds: int
    samples_per_round: int
    # server -> one list of samples per round
    samples: dict[str, list[list[Sample]]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def _round_medians(self, name: str) -> list[float | None]:
        return [median([s.serving_ms for s in rnd if s.serving_ms is not None]) for rnd in self.samples[name]]

    def speedup(self, name: str) -> float | None:
        """How many times faster than the baseline ``name`` brings a new worker into service."""
        if name not in self.samples:
            return None
        ratio = paired_ratio({n: self._round_medians(n) for n in self.samples}, name)
        return 1 / ratio if ratio else None

    def markdown(self) -> str:
        per_round = {name: self._round_medians(name) for name in self.samples}
        rows = []
        for name, rounds in self.samples.items():
            flat = [s for rnd in rounds for s in rnd]
            served = [s.serving_ms for s in flat if s.serving_ms is not None]
            ratio = paired_ratio(per_round, name)
            rows.append(
                [
                    name,
                    fmt(median(served)),
                    fmt(ratio, ".2f"),
                    fmt(1 / ratio if ratio else None, ".1f", "x"),
                    fmt(median([s.spawned_ms for s in flat if s.spawned_ms is not None])),
                    f"{len(served)}/{len(flat)}",
                ]
            )
        for name, reason in self.left_out.items():
            rows.append([name, "n/a", "n/a", "n/a", "n/a", reason])
        title = (
            f"### Add a worker (SIGTTIN), {self.app} app (from {self.workers} workers, "
            f"{self.samples_per_round} signals x {self.rounds} rounds)"
        )
        headers = [
            "server",
            "ms to serving (median)",
            f"time ratio vs {BASELINE}",
            f"faster than {BASELINE}",
            "ms to process spawned",
            "answered",
        ]
        return title + "\n\n" + table(headers, rows)


def run(
    servers: list[Server],
    app_name: str,
    *,
    workers: int = 2,
    rounds: int = 3,
    samples: int = 2,
    timeout: float = 30.0,
) -> ScaleUpResult:
    app = get_app(app_name)
    result = ScaleUpResult(app.name, workers, rounds, samples)
    able = capable(servers, lambda s: s.scales_on_ttin, result.left_out, "no signal to add a worker")

    def measure(server: Server, r: int) -> list[Sample]:
        return _measure(server, app, workers, samples, timeout, label=f"{app.name} round {r + 1}")

    result.samples = take_turns(able, rounds, measure, result.left_out)
    return result


def _measure(server: Server, app: App, workers: int, samples: int, timeout: float, label: str) -> list[Sample]:
    with RunningServer(server, app, workers) as srv:
        srv.wait_workers(workers)
        taken = []
        for i in range(samples):
            sample = asyncio.run(_time_new_worker(srv, timeout))
            taken.append(sample)
            print(
                f"  {label}: {server.name:<17} {workers + i}->{workers + i + 1} workers: "
                f"spawned {fmt(sample.spawned_ms)} ms, serving {fmt(sample.serving_ms)} ms"
            )
            # Let the newcomer settle; the random part keeps the signal from landing at the same
            # phase of a supervisor's polling loop every time (uvicorn's wakes every 0.5 s).
            time.sleep(random.uniform(0.3, 0.8))
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--apps", default="fastapi,heavy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2, help="SIGTTINs per server start")
    args = parser.parse_args()
    servers = select_servers(args.servers.split(","))
    for app_name in args.apps.split(","):
        res = run(servers, app_name, workers=args.workers, rounds=args.rounds, samples=args.samples)
        print("\n" + res.markdown() + "\n")


if __name__ == "__main__":
    main()
