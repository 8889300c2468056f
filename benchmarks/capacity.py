"""`asgiscale bench`: its generator's cost per request against wrk's, and the FastAPI example's capacity.

    python benchmarks/capacity.py [--rounds 5] [--duration 3] [--quick] [--no-docs]

1. **Generator cost.** The same raw ASGI app on granian (one worker: its Rust HTTP stack is the
   cheapest server here, so the load tools have the other core), loaded in turns by `wrk -t1
   -c32` and by asgiscale's open-loop generator (one process, kept-alive connections) at half the
   rate wrk reached last, so the generator keeps to its schedule. Each tool's
   requests per CPU-second of its own process is its ceiling on one core; the ratio is
   generator / wrk, per round.
2. **Capacity of the FastAPI example** (`examples/hello.py`) at p99 ≤ 50 ms, for 1 and 2
   workers, found by `asgiscale bench` (3 s steps), beside the most wrk (closed loop, 64
   connections) pushes through asgiscale with the same workers: how much of a throughput
   ceiling is usable at a latency objective. The generator shares the 2 cores with the app.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

from _report import fmt, median, publish, rotated, section, spread, table
from _servers import REPO_DIR, SERVERS, RunningServer, get_app
from throughput import wrk

from asgiscale.bench.generator import Step, Target, run_step
from asgiscale.bench.objective import parse_objectives
from asgiscale.bench.runner import BenchOptions, run_bench

RATE_SHARE = 0.5  # of wrk's last rate: the generator's offered rate, low enough that it keeps its schedule


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_run(port: int, duration: float, connections: int) -> tuple[float, float]:
    """(requests per second, requests per CPU-second of wrk itself)."""
    before = _children_cpu()
    result = wrk(port, duration, connections, threads=1)
    return result.requests_per_second, result.requests / (_children_cpu() - before)


def generator_cost(rounds: int, duration: float) -> str:
    wrk_per_cpu: list[float] = []
    gen_per_cpu: list[float] = []
    ratios: list[float] = []
    rows = []
    with RunningServer(SERVERS["granian"], get_app("raw"), 1) as srv:
        srv.wait_workers(1)
        _, _ = wrk_run(srv.port, 1, 32)  # warm-up
        last_wrk_rps, _ = wrk_run(srv.port, 1, 32)
        for index in range(rounds):
            measured: dict[str, float] = {}
            for tool in rotated(["wrk", "generator"], index):
                if tool == "wrk":
                    rps, measured["wrk"] = wrk_run(srv.port, duration, 32)
                    measured["wrk rps"] = last_wrk_rps = rps
                else:
                    rate = RATE_SHARE * last_wrk_rps
                    res = run_step(Step(Target("127.0.0.1", srv.port), rate, duration))
                    measured["generator"] = res.ok / res.cpu_seconds
                    measured["rate"] = rate
                    measured["lag"] = (res.send_lag.value_at(99) or 0) / 1000
            wrk_per_cpu.append(measured["wrk"])
            gen_per_cpu.append(measured["generator"])
            ratios.append(measured["generator"] / measured["wrk"])
            rows.append([str(index + 1), fmt(measured["wrk rps"]), fmt(measured["wrk"]), fmt(measured["rate"]),
                         fmt(measured["generator"]), fmt(measured["lag"], ".2f"), fmt(ratios[-1], ".2f")])  # fmt: skip
            print(" | ".join(rows[-1]), flush=True)
    headers = ["round", "wrk req/s", "wrk req per CPU-s", "generator rate", "generator req per CPU-s",
               "generator send lag p99 ms", "generator / wrk"]  # fmt: skip
    summary = (
        f"Median: wrk {fmt(median(wrk_per_cpu))}, generator {fmt(median(gen_per_cpu))} requests per CPU-second; "
        f"ratio **{fmt(median(ratios), '.2f')}** (IQR {spread(ratios)})."
    )
    return (
        "### Load generator cost per request, raw app on granian (1 worker)\n\n"
        + table(headers, rows)
        + "\n\n"
        + summary
    )


def fastapi_capacity(duration: float, workers: tuple[int, ...]) -> str:
    options = BenchOptions(
        objectives=parse_objectives(["p99=50ms"]),
        app="examples.hello:app",
        workers=workers,
        duration=duration,
        settings={"app_dir": str(REPO_DIR)},
        log_dir=Path(REPO_DIR / "benchmarks" / ".logs"),
    )
    options.log_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    report = run_bench(options, lambda kind, text, record: print(text, flush=True) if kind != "step" else None)
    if report["problem"]:
        print(f"bench stopped early: {report['problem']}", file=sys.stderr)
    rows = []
    base = None
    for cap in report["capacities"]:
        with RunningServer(SERVERS["asgiscale"], get_app("fastapi"), cap["workers"]) as srv:
            srv.wait_workers(cap["workers"])
            wrk_run(srv.port, 1, 64)
            wrk_rps, _ = wrk_run(srv.port, duration, 64)
        base = base or cap["rps_per_worker"]
        steps = [s for s in report["steps"] if s["workers"] == cap["workers"] and s["rate"] == cap["rps"]]
        rows.append([
            str(cap["workers"]), fmt(cap["rps"]), f"{cap['rps_per_worker'] / base:.2f}",
            fmt(cap["latency_us"]["p99"] / 1000, ".1f"), fmt(cap["cpu_per_worker"], ".2f"),
            fmt(steps[0]["generator_cpu"] if steps else None, ".2f"), fmt(wrk_rps), f"{cap['rps'] / wrk_rps:.2f}",
        ])  # fmt: skip
    headers = ["workers", "req/s at p99 ≤ 50 ms", "per worker vs 1 worker", "p99 ms at that rate",
               "CPU per worker", "generator CPU", "wrk -c64 req/s (closed loop)", "capacity / wrk"]  # fmt: skip
    rec = report["recommendation"] or {}
    note = f"Recommended: scale target `{rec.get('target')}`, CPU request `{rec.get('cpu_request')}` per worker."
    return "### Capacity of the FastAPI example at p99 ≤ 50 ms\n\n" + table(headers, rows) + "\n\n" + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s, capacity with 1 worker only")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    rounds, duration, workers = (2, 1.0, (1,)) if args.quick else (args.rounds, args.duration, (1, 2))
    tables = [generator_cost(rounds, duration), fastapi_capacity(duration, workers)]
    publish(section("asgiscale bench: generator cost and capacity", [SERVERS["granian"], SERVERS["asgiscale"]], tables),
            to_docs=not args.no_docs)  # fmt: skip


if __name__ == "__main__":
    main()
