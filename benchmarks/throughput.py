"""Throughput: wrk with keep-alive against every server, in turns, on the bare ASGI app and the FastAPI example.

    python benchmarks/throughput.py [--rounds 8] [--duration 3] [--apps raw,fastapi]

All servers of one app run side by side on their own ports (idle while another is measured) and
wrk visits them round-robin, so a slow spell of the machine lands on every server alike.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass, field

from _proc import tree_cpu_seconds
from _report import fmt, median, paired_ratio, paired_ratios, rotated, spread, table
from _servers import BASELINE, DEFAULT_SERVERS, RunningServer, Server, ServerFailedError, get_app, select_servers


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    if rps is None or count is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(float(rps.group(1)), int(count.group(1)), _ms(latency["50"]), _ms(latency["99"]), errors)


def wrk(port: int, duration: float, connections: int, threads: int, cpus: str | None = None) -> WrkResult:
    """wrk's figures against 127.0.0.1:`port`; `cpus` pins it (taskset's list, e.g. "1")."""
    pin = ["taskset", "-c", cpus] if cpus else []
    argv = [*pin, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s", "--latency",
            f"http://127.0.0.1:{port}/"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=True)
    return parse_wrk(out.stdout)


@dataclass
class ThroughputResult:
    app: str
    workers: int
    connections: int
    duration: float
    rounds: int
    samples: dict[str, list[WrkResult]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    # Highest CPU share (of one core) that the idle servers used while another was measured.
    bystander_cpu: float = 0.0
    # CPU seconds the measured server's whole tree used during each of its turns.
    server_cpu: dict[str, list[float]] = field(default_factory=dict)

    def cpu_us_per_request(self, name: str) -> list[float]:
        """Server CPU time per answered request in microseconds, one value per round."""
        pairs = zip(self.server_cpu.get(name, []), self.samples.get(name, []), strict=True)
        return [cpu * 1e6 / s.requests for cpu, s in pairs if s.requests]

    def ratios(self, name: str) -> list[float]:
        """``name``'s req/s over uvicorn's, one value per round."""
        return paired_ratios({n: [s.requests_per_second for s in v] for n, v in self.samples.items()}, name)

    def ratio(self, name: str) -> float | None:
        return median(self.ratios(name))

    def markdown(self) -> str:
        rps: dict[str, list[float | None]] = {n: [s.requests_per_second for s in v] for n, v in self.samples.items()}
        rows = []
        for name, samples in self.samples.items():
            rows.append(
                [
                    name,
                    fmt(median([s.requests_per_second for s in samples])),
                    fmt(paired_ratio(rps, name), ".2f"),
                    spread(paired_ratios(rps, name)),
                    " / ".join(fmt(s.requests_per_second) for s in samples),
                    fmt(median([s.p99_ms for s in samples]), ".1f"),
                    str(sum(s.errors for s in samples)),
                ]
            )
        rows += [[name, "n/a", "n/a", "n/a", reason, "n/a", "n/a"] for name, reason in self.left_out.items()]
        title = (
            f"### Throughput, {self.app} app ({self.workers} workers, wrk -c{self.connections}, "
            f"{self.duration:g} s x {self.rounds} rounds)"
        )
        headers = [
            "server",
            "req/s (median)",
            f"ratio vs {BASELINE}",
            "ratio IQR",
            "req/s per round",
            "p99 ms",
            "errors",
        ]
        note = f"\n\nIdle servers waiting their turn used at most {self.bystander_cpu:.1%} of a core."
        return title + "\n\n" + table(headers, rows) + note


def run(
    servers: list[Server],
    app_name: str,
    *,
    workers: int = 2,
    rounds: int = 8,
    duration: float = 3.0,
    connections: int = 64,
    threads: int = 2,
    warmup: float = 2.0,
    wrk_cpus: str | None = None,
) -> ThroughputResult:
    app = get_app(app_name)
    result = ThroughputResult(app.name, workers, connections, duration, rounds)
    with ExitStack() as stack:
        running = {s.name: stack.enter_context(RunningServer(s, app, workers)) for s in servers}
        for name, srv in list(running.items()):
            try:
                srv.wait_workers(workers)
            except ServerFailedError as exc:
                print(f"  {name}: {exc}")
                result.left_out[name] = exc.reason()
                srv.stop()
                del running[name]
                continue
            wrk(srv.port, warmup, connections, threads, wrk_cpus)
        active = [s for s in servers if s.name in running]
        for r in range(rounds):
            for server in rotated(active, r):
                others = [srv.pid for name, srv in running.items() if name != server.name]
                cpu_before = sum(tree_cpu_seconds(pid) for pid in others)
                own_before = tree_cpu_seconds(running[server.name].pid)
                sample = wrk(running[server.name].port, duration, connections, threads, wrk_cpus)
                own_used = tree_cpu_seconds(running[server.name].pid) - own_before
                cpu_used = sum(tree_cpu_seconds(pid) for pid in others) - cpu_before
                result.server_cpu.setdefault(server.name, []).append(own_used)
                result.bystander_cpu = max(result.bystander_cpu, cpu_used / duration)
                print(f"  {app.name} round {r + 1}: {server.name:<20} {sample.requests_per_second:9.0f} req/s")
                result.samples.setdefault(server.name, []).append(sample)
    result.samples = {s.name: result.samples[s.name] for s in active}
    result.server_cpu = {s.name: result.server_cpu[s.name] for s in active}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # --preload changes when the app is imported, not how requests are served.
    parser.add_argument("--servers", default=",".join(n for n in DEFAULT_SERVERS if n != "gunicorn-preload"))
    parser.add_argument("--apps", default="raw,fastapi")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of wrk per sample")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    servers = select_servers(args.servers.split(","))
    for app_name in args.apps.split(","):
        res = run(
            servers,
            app_name,
            workers=args.workers,
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
        )
        print("\n" + res.markdown() + "\n")


if __name__ == "__main__":
    main()
