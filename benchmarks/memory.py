"""Memory: summed PSS of a server's whole process tree with 4 workers, after warm-up traffic.

    python benchmarks/memory.py [--rounds 2] [--apps fastapi,raw] [--workers 4]

PSS (proportional set size, from /proc/PID/smaps_rollup) charges each shared page to its users
in equal parts, so the sum over the master and every descendant is what the tree really costs,
and pages shared copy-on-write after a fork are counted once.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from dataclasses import dataclass, field

from _proc import tree_pss_kib
from _report import fmt, median, paired_ratio, table, take_turns
from _servers import BASELINE, DEFAULT_SERVERS, RunningServer, Server, get_app, select_servers


@dataclass(frozen=True)
class Sample:
    pss_mib: float
    processes: int


@dataclass
class MemoryResult:
    app: str
    workers: int
    rounds: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def ratio(self, name: str) -> float | None:
        return paired_ratio({n: [s.pss_mib for s in v] for n, v in self.samples.items()}, name)

    def markdown(self) -> str:
        mib: dict[str, list[float | None]] = {n: [s.pss_mib for s in v] for n, v in self.samples.items()}
        rows = [
            [
                name,
                fmt(median([s.pss_mib for s in samples]), ".1f"),
                fmt(paired_ratio(mib, name), ".2f"),
                fmt(median([s.pss_mib for s in samples]) / self.workers, ".1f"),  # type: ignore[operator]
                str(max(s.processes for s in samples)),
            ]
            for name, samples in self.samples.items()
        ]
        rows += [[name, "n/a", "n/a", "n/a", reason] for name, reason in self.left_out.items()]
        title = f"### Memory, {self.app} app ({self.workers} workers, {self.rounds} rounds)"
        headers = ["server", "PSS MiB, whole tree (median)", f"ratio vs {BASELINE}", "MiB per worker", "processes"]
        return title + "\n\n" + table(headers, rows)


def _warm_up(port: int, seconds: float = 1.0) -> None:
    subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        timeout=seconds + 30,
        check=True,
    )


def run(servers: list[Server], app_name: str, *, workers: int = 4, rounds: int = 2) -> MemoryResult:
    app = get_app(app_name)
    result = MemoryResult(app.name, workers, rounds)

    def measure(server: Server, r: int) -> Sample:
        with RunningServer(server, app, workers) as srv:
            srv.wait_workers(workers)
            _warm_up(srv.port)
            time.sleep(0.5)
            kib, processes = tree_pss_kib(srv.pid)
        sample = Sample(kib / 1024, processes)
        print(f"  {app.name} round {r + 1}: {server.name:<17} {sample.pss_mib:7.1f} MiB in {processes} processes")
        return sample

    result.samples = take_turns(servers, rounds, measure, result.left_out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--apps", default="fastapi,raw")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    servers = select_servers(args.servers.split(","))
    for app_name in args.apps.split(","):
        print("\n" + run(servers, app_name, workers=args.workers, rounds=args.rounds).markdown() + "\n")


if __name__ == "__main__":
    main()
