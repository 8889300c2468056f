"""Instrumentation cost: asgiscale's throughput with its request instrumentation on (the default) and with --no-metrics.

    python benchmarks/instrumentation.py [--rounds 10] [--duration 3] [--apps raw,fastapi]

Both variants run side by side with the same worker count and the admin server on (it reads
shared memory from a process of its own, away from the requests), and wrk visits them in
turns exactly as in throughput.py; the figure is req/s on over req/s off from the same round.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import throughput
from _report import fmt, median, paired_ratios, publish, section, spread, table
from _servers import SERVERS, Server, asgiscale_argv, select_servers

ON = "asgiscale"
OFF = "asgiscale-no-metrics"  # asgiscale run ... --no-metrics
TARGET = 0.97  # at most 3 % of throughput for the metrics


def variants() -> list[Server]:
    """asgiscale as it ships, and the same command with the instrumentation off."""
    on = SERVERS[ON]
    off = Server(OFF, on.command, asgiscale_argv(metrics=False), on.scales_on_ttin, on.reloads_on_hup)
    return [on, off]


@dataclass
class InstrumentationResult:
    workers: int
    rounds: int
    duration: float
    connections: int
    runs: dict[str, throughput.ThroughputResult] = field(default_factory=dict)  # by app

    def ratios(self, app: str) -> list[float]:
        """req/s with metrics over req/s without, one value per round."""
        res = self.runs[app]
        rps: dict[str, list[float | None]] = {n: [s.requests_per_second for s in v] for n, v in res.samples.items()}
        return paired_ratios(rps, ON, baseline=OFF)

    def ratio(self, app: str) -> float | None:
        return median(self.ratios(app))

    def added_us(self, app: str) -> list[float]:
        """Server CPU per request with metrics minus without, in microseconds, one value per round.

        Less disturbed than req/s by whatever else runs on the machine: a busy neighbour slows
        both the server and wrk, but barely changes the CPU each answered request takes.
        """
        res = self.runs[app]
        return [a - b for a, b in zip(res.cpu_us_per_request(ON), res.cpu_us_per_request(OFF), strict=True)]

    def markdown(self) -> str:
        rows = []
        for app, res in self.runs.items():
            if ON not in res.samples or OFF not in res.samples:
                reasons = "; ".join(f"{n}: {why}" for n, why in res.left_out.items())
                rows.append([app, "n/a", "n/a", "n/a", "n/a", reasons or "no samples", "n/a", "n/a", "n/a", "n/a"])
                continue
            on, off = res.samples[ON], res.samples[OFF]
            ratios = self.ratios(app)
            rows.append(
                [
                    app,
                    fmt(median([s.requests_per_second for s in on])),
                    fmt(median([s.requests_per_second for s in off])),
                    fmt(median(ratios), ".3f"),
                    spread(ratios),
                    " / ".join(fmt(r, ".3f") for r in ratios),
                    " / ".join(fmt(median(res.cpu_us_per_request(n)), ".1f") for n in (ON, OFF)),
                    f"{fmt(median(self.added_us(app)), '+.1f')} ({spread(self.added_us(app))})",
                    " / ".join(fmt(median([s.p99_ms for s in samples]), ".1f") for samples in (on, off)),
                    str(sum(s.errors for s in on + off)),
                ]
            )
        title = (
            f"### Instrumentation cost, metrics on vs `--no-metrics` ({self.workers} workers, wrk -c{self.connections},"
            f" {self.duration:g} s x {self.rounds} rounds)"
        )
        headers = [
            "app",
            "req/s on (median)",
            "req/s off (median)",
            "ratio on/off",
            "ratio IQR",
            "ratio per round",
            "server CPU µs/request on / off",
            "µs added (IQR)",
            "p99 ms on / off",
            "errors",
        ]
        bystander = max((res.bystander_cpu for res in self.runs.values()), default=0.0)
        note = (
            f"\n\nTarget: ratio ≥ {TARGET} (the metrics cost at most 3 % of throughput). Both variants run the"
            f" admin server; the idle one waiting its turn used at most {bystander:.1%} of a core. Server CPU"
            " is the whole process tree's (workers, supervisor, admin) during the turn, over the requests answered."
        )
        return title + "\n\n" + table(headers, rows) + note


def run(
    apps: list[str],
    *,
    workers: int = 2,
    rounds: int = 10,
    duration: float = 3.0,
    connections: int = 64,
) -> InstrumentationResult:
    result = InstrumentationResult(workers, rounds, duration, connections)
    servers = variants()
    for app in apps:
        result.runs[app] = throughput.run(
            servers, app, workers=workers, rounds=rounds, duration=duration, connections=connections
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", default="raw,fastapi")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of wrk per sample")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-docs", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    if not select_servers([ON]):
        raise SystemExit("asgiscale is not installed: pip install -e .")
    started_at = time.gmtime()
    res = run(
        args.apps.split(","),
        workers=args.workers,
        rounds=args.rounds,
        duration=args.duration,
        connections=args.connections,
    )
    text = section(time.strftime("Instrumentation cost, run of %Y-%m-%d %H:%M UTC", started_at), variants(),
                   [res.markdown()])  # fmt: skip
    publish(text, to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
