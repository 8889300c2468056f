"""Instrumentation cost: asgiscale's throughput with its request instrumentation on (the default) and with --no-metrics.

    python benchmarks/instrumentation.py [--rounds 10] [--duration 3] [--apps raw,fastapi] [--workers 1]

Three variants run side by side, each with the admin server on (it reads shared memory from a
process of its own, away from the requests): metrics on with the compiled meter (as installed),
metrics on with the pure-Python meter (ASGISCALE_NO_EXTENSIONS=1), and --no-metrics. wrk
visits them in turns exactly as in throughput.py; the figure is req/s on over req/s off from
the same round.

By default one worker runs pinned to the first core and wrk to the second (taskset): the
worker is then the bottleneck on a core of its own, and its throughput is the inverse of its
cost per request, free of the scheduling noise of sharing both cores with the load tool. With
--no-pin (or on a single core) nothing is pinned.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field

import throughput
from _report import fmt, median, paired_ratios, publish, section, spread, table
from _servers import SERVERS, Argv, Server, asgiscale_argv, select_servers

from asgiscale.config import NO_EXTENSIONS

ON = "asgiscale"
PYTHON = "asgiscale-python-meter"  # ASGISCALE_NO_EXTENSIONS=1 asgiscale run ...
OFF = "asgiscale-no-metrics"  # asgiscale run ... --no-metrics
TARGET = 0.97  # at most 3 % of throughput for the metrics
SERVER_CPUS, WRK_CPUS = "0", "1"


def _prefixed(argv: Argv, prefix: list[str]) -> Argv:
    return lambda exe, app, workers, port: [*prefix, *argv(exe, app, workers, port)]


def variants(pin: bool = False) -> list[Server]:
    """asgiscale as it ships, with the pure-Python meter, and with the instrumentation off."""
    on = SERVERS[ON]
    pinned = ["taskset", "-c", SERVER_CPUS] if pin else []
    argvs = {
        ON: asgiscale_argv(),
        PYTHON: _prefixed(asgiscale_argv(), ["env", f"{NO_EXTENSIONS}=1"]),
        OFF: asgiscale_argv(metrics=False),
    }
    return [Server(name, on.command, _prefixed(argv, pinned), on.scales_on_ttin, on.reloads_on_hup)
            for name, argv in argvs.items()]  # fmt: skip


@dataclass
class InstrumentationResult:
    workers: int
    rounds: int
    duration: float
    connections: int
    pinned: bool
    runs: dict[str, throughput.ThroughputResult] = field(default_factory=dict)  # by app

    def ratios(self, app: str, variant: str = ON) -> list[float]:
        """req/s with metrics over req/s without, one value per round."""
        res = self.runs[app]
        rps: dict[str, list[float | None]] = {n: [s.requests_per_second for s in v] for n, v in res.samples.items()}
        return paired_ratios(rps, variant, baseline=OFF)

    def ratio(self, app: str, variant: str = ON) -> float | None:
        return median(self.ratios(app, variant))

    def added_us(self, app: str, variant: str = ON) -> list[float]:
        """Server CPU per request with metrics minus without, in microseconds, one value per round.

        Less disturbed than req/s by whatever else runs on the machine: a busy neighbour slows
        both the server and wrk, but barely changes the CPU each answered request takes.
        """
        res = self.runs[app]
        return [a - b for a, b in zip(res.cpu_us_per_request(variant), res.cpu_us_per_request(OFF), strict=True)]

    def markdown(self) -> str:
        rows = []
        for app, res in self.runs.items():
            for variant, meter in ((ON, "compiled"), (PYTHON, "pure Python")):
                if variant not in res.samples or OFF not in res.samples:
                    reasons = "; ".join(f"{n}: {why}" for n, why in res.left_out.items())
                    rows.append([app, meter, *["n/a"] * 3, reasons or "no samples", *["n/a"] * 5])
                    continue
                on, off = res.samples[variant], res.samples[OFF]
                ratios, added = self.ratios(app, variant), self.added_us(app, variant)
                rows.append(
                    [
                        app,
                        meter,
                        fmt(median([s.requests_per_second for s in on])),
                        fmt(median([s.requests_per_second for s in off])),
                        f"**{fmt(median(ratios), '.3f')}** ({spread(ratios)})",
                        " / ".join(fmt(r, ".3f") for r in ratios),
                        " / ".join(fmt(median(res.cpu_us_per_request(n)), ".1f") for n in (variant, OFF)),
                        f"{fmt(median(added), '+.1f')} ({spread(added)})",
                        " / ".join(fmt(median([s.p99_ms for s in samples]), ".1f") for samples in (on, off)),
                        str(sum(s.errors for s in on + off)),
                    ]
                )
        where = (
            f"pinned to core {SERVER_CPUS}, wrk -t1 on core {WRK_CPUS}" if self.pinned else "wrk -t2 on the same cores"
        )
        title = (
            f"### Instrumentation cost, metrics on vs `--no-metrics` ({self.workers} worker(s) {where},"
            f" -c{self.connections}, {self.duration:g} s x {self.rounds} rounds)"
        )
        headers = [
            "app",
            "meter",
            "req/s on (median)",
            "req/s off (median)",
            "ratio on/off (IQR)",
            "ratio per round",
            "server CPU µs/request on / off",
            "µs added (IQR)",
            "p99 ms on / off",
            "errors",
        ]
        bystander = max((res.bystander_cpu for res in self.runs.values()), default=0.0)
        note = (
            f"\n\nTarget: ratio ≥ {TARGET} (the metrics cost at most 3 % of throughput). The compiled meter is"
            " what an install with a C compiler runs; the pure-Python one is the fallback without it. All variants"
            f" run the admin server; the idle ones waiting their turn used at most {bystander:.1%} of a core."
            " Server CPU is the whole process tree's (workers, supervisor, admin) during the turn, over the"
            " requests answered."
        )
        return title + "\n\n" + table(headers, rows) + note


def run(
    apps: list[str],
    *,
    workers: int = 1,
    rounds: int = 10,
    duration: float = 3.0,
    connections: int = 32,
    pin: bool = True,
) -> InstrumentationResult:
    pin = pin and (os.cpu_count() or 1) >= 2
    result = InstrumentationResult(workers, rounds, duration, connections, pin)
    servers = variants(pin)
    for app in apps:
        result.runs[app] = throughput.run(servers, app, workers=workers, rounds=rounds, duration=duration,
                                          connections=connections, threads=1 if pin else 2,
                                          wrk_cpus=WRK_CPUS if pin else None)  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", default="raw,fastapi")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of wrk per sample")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-pin", action="store_true", help="share every core between the servers and wrk")
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
        pin=not args.no_pin,
    )
    text = section(time.strftime("Instrumentation cost, run of %Y-%m-%d %H:%M UTC", started_at), variants(res.pinned),
                   [res.markdown()])  # fmt: skip
    publish(text, to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
