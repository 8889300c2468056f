"""The I/O shell of `asgiscale bench`: start the app, probe it, run the capacity search, collect.

Everything it decides comes from the pure parts: `objective.judge` says whether a step met the
objective, `search.CapacitySearch` picks the next rate, `recommend.recommend` turns capacities
into settings. This module starts and stops processes, sends load and reads /proc.

`run_bench` never raises for a problem of the app or the target (it cannot be reached, it fails
to start, it answers errors, no rate meets the objective): it records the problem in the report
it returns, with whatever was measured before, so the caller can still write a partial report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asgiscale.bench.generator import USER_AGENT, LoadGenerator, Step, StepResult, Target
from asgiscale.bench.objective import Objective, Verdict, format_us, judge
from asgiscale.bench.recommend import Capacity, recommend
from asgiscale.bench.search import CapacitySearch
from asgiscale.runtime import _procfs

PROBE_REQUESTS = 20
PROBE_SECONDS = 2.0
START_UTILIZATION = 0.5  # the first step offers this share of what the probe's service time allows
SETTLE_SECONDS = 0.5  # idle between two steps
RAMP_DOWN = 16  # below the first rate tried: a miss at 1/16 of it means the objective is out of reach


class BenchProblem(Exception):
    """Why the measurement could not go on; one line for the user."""


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    objectives: tuple[Objective, ...]
    app: str | None = None  # module:attribute, started under asgiscale run ...
    url: Target | None = None  # ... or a server already running
    path: str = "/"
    workers: tuple[int, ...] = (1,)
    duration: float = 5.0  # of each step
    arrivals: str = "constant"
    timeout: float = 5.0
    max_errors: float = 0.01
    headroom: float = 0.2
    peak_rps: float | None = None
    precision: float = 0.05
    load_processes: int = 1
    max_connections: int = 1000
    start_rate: float | None = None  # default: from the probe
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # more Config settings for the app
    log_dir: Path | None = None  # where the app's log goes


@dataclasses.dataclass
class StepRecord:
    workers: int | None
    result: StepResult
    verdict: Verdict
    cpu_per_worker: float | None  # cores, the mean over the workers

    def summary(self) -> dict[str, Any]:
        r = self.result
        mean = r.latency.mean()
        return {
            "workers": self.workers,
            "rate": round(r.rate, 3),
            "sent": r.sent,
            "ok": r.ok,
            "goodput": round(r.goodput(), 3),
            "latency_us": {p: r.latency.value_at(float(p[1:]), missing=r.failed) for p in LATENCY_REPORTED},
            "mean_latency_us": None if mean is None else round(mean),
            "max_latency_us": r.latency.max if r.latency.count else None,
            "statuses": {str(k): v for k, v in sorted(r.statuses.items())},
            "errors": dict(r.errors),
            "error_share": round(self.verdict.error_share, 6),
            "send_lag_p99_us": r.send_lag.value_at(99),
            "generator_cpu": round(r.cpu_seconds / r.duration, 3),
            "connections": r.connections,
            "cpu_per_worker": None if self.cpu_per_worker is None else round(self.cpu_per_worker, 3),
            "met": self.verdict.met,
            "why_not": list(self.verdict.reasons),
        }


LATENCY_REPORTED = ("p50", "p90", "p99", "p99.9")
# What run_bench tells as it goes: ("info", text, None), ("step", text, None) as a step starts,
# ("result", text, record) when it is over.
Notify = Callable[[str, str, "StepRecord | None"], None]


class ServedApp:
    """`app` served by `workers` asgiscale workers on a socket this process bound; stopped by pid."""

    def __init__(self, app: str, workers: int, settings: dict[str, Any], log_dir: Path) -> None:
        self.app, self.workers, self.settings = app, workers, settings
        self.log_path = log_dir / f"app-{workers}-workers.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.target = Target("127.0.0.1", self.listener.getsockname()[1])
        self.admin = f"127.0.0.1:{_free_port()}"

    def __enter__(self) -> ServedApp:
        fixed = {
            "workers": self.workers,
            "fd": self.listener.fileno(),
            "uds": None,
            "admin": self.admin,
            "access_log": False,
            "log_level": "warning",
            "reload": False,
        }
        settings = json.dumps({**self.settings, "app": self.app, "fixed": fixed})
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "asgiscale.bench._serve", settings],
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(self.listener.fileno(),),
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchProblem(f"the app did not start ({self._last_error()})")
            status = self.status()
            if status is not None and sum(w["state"] == "ready" for w in status["workers"]) >= self.workers:
                return
            time.sleep(0.1)
        raise BenchProblem(f"the app was not ready after {timeout:g} s ({self._last_error()})")

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://{self.admin}/status", timeout=2) as answer:
                data: dict[str, Any] = json.load(answer)
                return data
        except (OSError, ValueError):
            return None

    def worker_pids(self) -> list[int]:
        status = self.status()
        return [] if status is None else [w["pid"] for w in status["workers"] if w["state"] == "ready"]

    def _last_error(self) -> str:
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        last = (errors or lines or ["no output"])[-1].strip()
        return f"{last}; the whole log is in {self.log_path}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.listener.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def probe(target: Target, timeout: float) -> float:
    """The median time of a few requests sent one after another, in seconds.

    Raises `BenchProblem` when the target cannot be reached or answers most of them with an error.
    """
    times: list[float] = []
    statuses: dict[int, int] = {}
    end = time.monotonic() + PROBE_SECONDS
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        while len(times) < PROBE_REQUESTS and (len(times) < 3 or time.monotonic() < end):
            began = time.perf_counter()
            try:
                conn.request("GET", target.path, headers={"User-Agent": USER_AGENT})
                answer = conn.getresponse()
                answer.read()
            except ConnectionRefusedError:
                raise BenchProblem(f"nothing listens at {target} (connection refused)") from None
            except TimeoutError:
                raise BenchProblem(f"{target} did not answer within {timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                raise BenchProblem(f"{target} cannot be loaded: {exc or type(exc).__name__}") from None
            times.append(time.perf_counter() - began)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
    finally:
        conn.close()
    failed = {s: n for s, n in statuses.items() if not 200 <= s < 400}
    if 2 * sum(failed.values()) > len(times):  # a few errors are the error budget's business
        shown = ", ".join(f"{s} to {n}" for s, n in sorted(failed.items()))
        hint = "check --path" if 404 in failed or 405 in failed else "see the app's log"
        raise BenchProblem(f"the app answered {shown} of {len(times)} probe requests to GET {target.path}; {hint}")
    return sorted(times)[len(times) // 2]


def run_bench(options: BenchOptions, on_step: Notify | None = None) -> dict[str, Any]:
    """Measure; the report document (see `report.py`), with `problem` set when it stopped early."""
    notify = on_step or (lambda _kind, _text, _record: None)
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="asgiscale-bench-"))
    report: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": options.app or str(options.url),
        "path": options.path,
        "objectives": [o.spec() for o in options.objectives],
        "settings": {
            "duration": options.duration,
            "arrivals": options.arrivals,
            "timeout": options.timeout,
            "max_errors": options.max_errors,
            "headroom": options.headroom,
            "peak_rps": options.peak_rps,
            "load_processes": options.load_processes,
        },
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "probes": [],
        "steps": [],
        "capacities": [],
        "recommendation": None,
        "problem": None,
    }
    capacities: list[Capacity] = []
    try:
        with LoadGenerator(options.load_processes) as generator:
            for workers in options.workers if options.app else (None,):
                capacities.append(_measure(options, generator, workers, report, notify, log_dir))
    except BenchProblem as exc:
        report["problem"] = str(exc)
    except KeyboardInterrupt:
        report["problem"] = "interrupted"
    if capacities:
        try:
            rec = recommend(capacities, headroom=options.headroom, peak_rps=options.peak_rps)
        except ValueError as exc:
            report["problem"] = report["problem"] or str(exc)
        else:
            report["recommendation"] = {
                **dataclasses.asdict(rec),
                "scaling": {str(k): round(v, 3) for k, v in rec.scaling.items()},
            }
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return report


def _measure(
    options: BenchOptions,
    generator: LoadGenerator,
    workers: int | None,
    report: dict[str, Any],
    notify: Notify,
    log_dir: Path,
) -> Capacity:
    """The capacity of one worker count; raises `BenchProblem` when there is none to report."""
    label = "the URL" if workers is None else f"{workers} worker{'s' * (workers != 1)}"
    with contextlib.ExitStack() as stack:
        served = None
        if options.app is not None:
            assert workers is not None
            notify("info", f"{label}: starting the app", None)
            served = stack.enter_context(ServedApp(options.app, workers, options.settings, log_dir))
            target = served.target.with_path(options.path)
        else:
            assert options.url is not None
            target = options.url.with_path(options.path)
        service_time = probe(target, options.timeout)
        report["probes"].append({"workers": workers, "median_us": round(service_time * 1e6)})
        for objective in options.objectives:
            if objective.percentile >= 50 and service_time * 1e6 > objective.limit_us:
                raise BenchProblem(
                    f"no rate can meet {objective}: one request alone takes {format_us(service_time * 1e6)} "
                    f"(the median of {PROBE_REQUESTS} sent one after another)"
                )
        start = options.start_rate or max(1.0, START_UTILIZATION * (workers or 1) / max(service_time, 1e-5))
        search = CapacitySearch(start, precision=options.precision, floor=start / RAMP_DOWN)
        at_capacity: StepRecord | None = None
        while (rate := search.next_rate()) is not None:
            notify("step", f"{label}: {rate:,.0f} req/s", None)
            record = _step(options, generator, target, rate, workers, served)
            report["steps"].append(record.summary())
            notify("result", f"{label}: {rate:,.0f} req/s", record)
            search.record(rate, met=record.verdict.met, generator_behind=record.verdict.generator_behind)
            if record.verdict.met and search.capacity == rate:
                at_capacity = record
            if search.capacity is None and record.result.sent and record.result.failed == record.result.sent:
                reason = ", ".join(record.verdict.reasons)
                raise BenchProblem(f"every request failed at {rate:,.0f} req/s with {label} ({reason})")
            time.sleep(SETTLE_SECONDS)
    objectives = " and ".join(str(o) for o in options.objectives)
    if search.capacity is None or at_capacity is None:
        lowest = min((s for s in report["steps"] if s["workers"] == workers), key=lambda s: s["rate"], default=None)
        seen = "" if lowest is None else f"; at {lowest['rate']:g} req/s: {', '.join(lowest['why_not'])}"
        raise BenchProblem(f"no rate met {objectives} with {label}{seen}")
    mean_s = (at_capacity.result.latency.mean() or 0.0) / 1e6
    capacity = Capacity(workers or 1, search.capacity, mean_s, at_capacity.cpu_per_worker)
    report["capacities"].append(
        {
            "workers": workers,
            "rps": round(capacity.rps, 3),
            "rps_per_worker": round(capacity.rps_per_worker, 3),
            "exact": search.exact,
            "stopped": search.stopped or None,
            "latency_us": at_capacity.summary()["latency_us"],
            "mean_latency_us": round(mean_s * 1e6),
            "cpu_per_worker": at_capacity.cpu_per_worker,
        }
    )
    notify("info", f"{label}: {capacity.rps:,.0f} req/s at {objectives}", None)
    return capacity


def _step(
    options: BenchOptions,
    generator: LoadGenerator,
    target: Target,
    rate: float,
    workers: int | None,
    served: ServedApp | None,
) -> StepRecord:
    step = Step(target, rate, options.duration, options.arrivals, options.timeout, options.max_connections)
    pids = served.worker_pids() if served is not None else []
    before = {pid: _procfs.cpu_and_rss(pid) for pid in pids}
    began = time.monotonic()
    result = generator.run(step)
    elapsed = time.monotonic() - began
    used = []
    for pid, facts in before.items():
        after = _procfs.cpu_and_rss(pid)
        if facts is not None and after is not None:
            used.append((after[0] - facts[0]) / elapsed)
    cpu = sum(used) / len(used) if used else None
    return StepRecord(workers, result, judge(result, options.objectives, options.max_errors), cpu)
