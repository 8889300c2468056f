"""Scrape cost: how long asgiscale's admin server takes to answer /metrics and /status with 16 workers.

    python benchmarks/scrape.py [--workers 16] [--rounds 4] [--requests 50] [--no-reference]

asgiscale serves the raw app with 16 workers and gets a few seconds of traffic spread over 30
(method, status) pairs on fresh connections, so every worker's slot holds many histogram
series. Then sequential GETs on one keep-alive connection time /metrics and /status on the
admin port. The reference is what users of a pre-fork server would otherwise run:
prometheus_client's multiprocess mode, its MultiProcessCollector merging 16 workers' files
that hold the same series (apps/prom_multiprocess.py), served by uvicorn. Endpoints take turns,
a different one first each round.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from _http import HOST, REQUEST_ERRORS, Connection, fetch
from _proc import is_alive
from _report import fmt, median, publish, rotated, section, spread, table
from _servers import (
    BENCH_DIR,
    SERVERS,
    App,
    RunningServer,
    Server,
    ServerFailedError,
    asgiscale_argv,
    free_port,
    get_app,
    select_servers,
)

METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD")
STATUSES = (200, 201, 204, 400, 404, 500)
# 30 pairs: within the 31 series a worker slot holds before it shares an overflow series.
KINDS = [(method, status) for method in METHODS for status in STATUSES]
REFERENCE = "prometheus_client multiprocess /metrics"
_HISTOGRAM_SERIES = re.compile(r"^http_server_request_duration_seconds_count\{", re.MULTILINE)
_PER_WORKER = re.compile(r'^asgiscale_worker_http_requests(?:_total)?\{pid="(\d+)"\} ([\d.e+]+)$', re.MULTILINE)


@dataclass(frozen=True)
class Endpoint:
    name: str
    port: int
    path: str


@dataclass
class ScrapeResult:
    workers: int
    rounds: int
    requests: int  # sequential GETs per endpoint and round
    traffic: int = 0  # requests sent before scraping
    served_per_worker: list[int] = field(default_factory=list)
    times_ms: dict[str, list[list[float]]] = field(default_factory=dict)  # endpoint -> one list per round
    sizes: dict[str, int] = field(default_factory=dict)
    series: dict[str, int] = field(default_factory=dict)  # histogram series in the /metrics answer
    left_out: dict[str, str] = field(default_factory=dict)

    def all_times(self, name: str) -> list[float]:
        return [t for batch in self.times_ms.get(name, []) for t in batch]

    def median_ms(self, name: str) -> float | None:
        return median(self.all_times(name))

    def p95_ms(self, name: str) -> float | None:
        times = self.all_times(name)
        return statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) >= 2 else None

    def ratios_to_reference(self, name: str) -> list[float]:
        """Per round: the endpoint's median time over the reference's median time."""
        ours, ref = self.times_ms.get(name, []), self.times_ms.get(REFERENCE, [])
        return [statistics.median(a) / statistics.median(b) for a, b in zip(ours, ref, strict=True)]

    def markdown(self) -> str:
        rows = []
        for name in self.times_ms:
            ratios = self.ratios_to_reference(name) if name != REFERENCE else []
            rows.append(
                [
                    name,
                    fmt(self.median_ms(name), ".2f"),
                    fmt(self.p95_ms(name), ".2f"),
                    " / ".join(fmt(statistics.median(batch), ".2f") for batch in self.times_ms[name]),
                    f"{self.sizes.get(name, 0):,}",
                    str(self.series[name]) if name in self.series else "-",
                    (fmt(median(ratios), ".2f") + f" ({spread(ratios)})") if ratios else "-",
                ]
            )
        rows += [[name, "n/a", "n/a", reason, "n/a", "n/a", "n/a"] for name, reason in self.left_out.items()]
        served = self.served_per_worker
        title = (
            f"### Scrape time, {self.workers} workers of the raw app "
            f"({self.rounds} rounds x {self.requests} sequential GETs per endpoint)"
        )
        headers = [
            "endpoint",
            "ms (median)",
            "ms p95",
            "median ms per round",
            "bytes",
            "histogram series",
            "time ratio vs reference (IQR)",
        ]
        note = (
            f"\n\nBefore scraping: {self.traffic:,} requests over {len(KINDS)} (method, status) pairs on fresh"
            f" connections; the {len(served)} workers served {min(served, default=0)}–{max(served, default=0)} each."
            " Times are client-side, on one keep-alive connection over loopback. Reference: uvicorn (one process)"
            " serving prometheus_client's `make_asgi_app` over a `MultiProcessCollector` of"
            f" {self.workers} workers' files, each holding the same {len(KINDS)} histogram series, requests in flight,"
            " requests started, body bytes both ways and a per-worker request count; asgiscale's answer also"
            " carries the fleet (workers by state, restarts, scaling, readiness) and per-worker CPU, memory and state."
        )
        return title + "\n\n" + table(headers, rows) + note


def _lua_script(kinds: list[tuple[str, int]]) -> str:
    entries = ", ".join(f'{{"{method}", "/code/{status}"}}' for method, status in kinds)
    return (
        f"local kinds = {{{entries}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #kinds + 1\n"
        '  return wrk.format(kinds[i][1], kinds[i][2], {["Connection"] = "close"})\n'
        "end\n"
    )


def send_traffic(port: int, seconds: float) -> int:
    """wrk cycling through every (method, status) pair, a fresh connection per request so that
    the kernel spreads them over all workers; the number of requests answered."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_lua_script(KINDS))
        script.flush()
        argv = ["wrk", "-t2", "-c16", f"-d{seconds:g}s", "-s", script.name, f"http://{HOST}:{port}/"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    found = re.search(r"(\d+) requests in", out)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return int(found.group(1))


def wait_answering(srv: RunningServer, port: int, path: str, timeout: float = 30.0) -> bytes:
    """Poll ``path`` on ``port`` (which may be another port than the app's) until it answers 200."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not is_alive(srv.pid):
            raise ServerFailedError(srv, "exited early")
        try:
            response = asyncio.run(fetch(port, path, timeout=5.0))
            if response.status == 200:
                return response.body
        except REQUEST_ERRORS:
            pass
        time.sleep(0.05)
    raise ServerFailedError(srv, f"{path} on port {port} not answering after {timeout:.0f} s")


async def _time_gets(port: int, path: str, count: int) -> tuple[list[float], int]:
    """``count`` sequential GETs on one kept-alive connection (after one untimed): ms each, and the size."""
    conn = await Connection.open(port)
    try:
        first = await conn.get(path, timeout=30.0)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            response = await conn.get(path, timeout=30.0)
            times.append((time.perf_counter() - start) * 1000)
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}")
        return times, len(first.body)
    finally:
        await conn.close()


def reference_versions() -> str:
    try:
        return f"reference: prometheus_client {metadata.version('prometheus_client')} multiprocess mode"
    except metadata.PackageNotFoundError:
        return "reference: prometheus_client missing"


def _reference_files(directory: Path, workers: int) -> None:
    """Each of `workers` short-lived processes leaves its metric files, as serving workers would."""
    script = BENCH_DIR / "apps" / "prom_multiprocess.py"
    kinds = [f"{method}:{status}" for method, status in KINDS]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(workers):
        subprocess.run([sys.executable, str(script), *kinds], env=env, check=True, timeout=60)


def run(
    *, workers: int = 16, rounds: int = 4, requests: int = 50, traffic: float = 3.0, reference: bool = True
) -> ScrapeResult:
    result = ScrapeResult(workers, rounds, requests)
    admin_port = free_port()
    subject = Server(
        "asgiscale", "asgiscale", asgiscale_argv(admin=f"{HOST}:{admin_port}"), scales_on_ttin=True, reloads_on_hup=True
    )
    endpoints = [
        Endpoint("asgiscale /metrics", admin_port, "/metrics"),
        Endpoint("asgiscale /status", admin_port, "/status"),
    ]
    starting = "asgiscale"
    multiproc_dir = Path(tempfile.mkdtemp(prefix="asgiscale-bench-prom-"))
    try:
        with ExitStack() as stack:
            srv = stack.enter_context(RunningServer(subject, get_app("raw"), workers))
            srv.wait_workers(workers)
            wait_answering(srv, admin_port, "/metrics")
            result.traffic = send_traffic(srv.port, traffic)
            time.sleep(1.5)  # the workers' ticks (100 ms) and the admin's sampler (1 s) catch up
            metrics_text = wait_answering(srv, admin_port, "/metrics").decode()
            result.served_per_worker = sorted(int(float(n)) for _, n in _PER_WORKER.findall(metrics_text))
            result.series[endpoints[0].name] = len(_HISTOGRAM_SERIES.findall(metrics_text))
            uvicorn = SERVERS["uvicorn"]
            missing = uvicorn.unavailable_reason() if reference else None
            if missing is not None:
                result.left_out[REFERENCE] = f"needs uvicorn: {missing}"
            elif reference:
                starting = REFERENCE
                _reference_files(multiproc_dir, workers)
                ref_app = App("prom-multiprocess", BENCH_DIR / "apps", "prom_multiprocess:app")
                ref = stack.enter_context(
                    RunningServer(uvicorn, ref_app, 1, env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)})
                )
                ref_text = wait_answering(ref, ref.port, "/metrics").decode()
                result.series[REFERENCE] = len(_HISTOGRAM_SERIES.findall(ref_text))
                endpoints.append(Endpoint(REFERENCE, ref.port, "/metrics"))
            for r in range(rounds):
                for endpoint in rotated(endpoints, r):
                    times, size = asyncio.run(_time_gets(endpoint.port, endpoint.path, requests))
                    result.times_ms.setdefault(endpoint.name, []).append(times)
                    result.sizes[endpoint.name] = size
                    print(f"  round {r + 1}: {endpoint.name:<40} median {statistics.median(times):6.2f} ms")
    except ServerFailedError as exc:
        print(f"  {exc}")
        result.left_out[starting] = exc.reason()
    finally:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50, help="sequential GETs per endpoint and round")
    parser.add_argument("--traffic", type=float, default=3.0, help="seconds of traffic before scraping")
    parser.add_argument("--no-reference", action="store_true", help="skip the prometheus_client reference")
    parser.add_argument("--no-docs", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    if not select_servers(["asgiscale"]):
        raise SystemExit("asgiscale is not installed: pip install -e .")
    started_at = time.gmtime()
    res = run(
        workers=args.workers,
        rounds=args.rounds,
        requests=args.requests,
        traffic=args.traffic,
        reference=not args.no_reference,
    )
    title = time.strftime("Scrape time, run of %Y-%m-%d %H:%M UTC", started_at)
    text = section(title, [SERVERS["asgiscale"], SERVERS["uvicorn"]], [res.markdown()], [reference_versions()])
    publish(text, to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
