"""What the admin endpoints answer, decided from plain readings: no I/O, no clock of its own.

`probe_health` and `probe_readiness` are the Kubernetes probe decisions; `History` keeps
one `Sample` per second for rates, latency percentiles and the dashboard's charts;
`status` builds the JSON of `/status` (and of `asgiscale top`).

    >>> history = History()
    >>> history.add(sample_of(reading, procs={}, wall=1700000000.0))  # doctest: +SKIP
    >>> status(reading, history, procs={}, events=[], info={})  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from asgiscale.runtime.metrics import Reading, Totals, label_values, quantile
from asgiscale.runtime.shm import RESTART_REASONS, Block, Field, WorkerState

# A supervisor loop that has not turned for this long is stuck (a spawn may block it for 10 s).
SUPERVISOR_STALE = 15.0
STAGES = ("running", "stopping", "draining")
HISTORY_SECONDS = 600
RATE_WINDOW = 10  # seconds behind the request rate of /status
LATENCY_WINDOW = 60  # seconds behind the latency percentiles of /status


@dataclasses.dataclass(frozen=True)
class Process:
    """CPU and memory of one process, read from /proc."""

    cpu_seconds: float
    rss_bytes: int
    cpu_percent: float | None = None  # since the previous sample


@dataclasses.dataclass(frozen=True)
class Sample:
    """The service at one moment: what the charts and the rates are made of."""

    wall: float  # time.time()
    monotonic: float
    requests: int
    errors: int  # answered with a 5xx
    buckets: tuple[int, ...]
    in_flight: int
    workers: dict[str, int]  # state name -> count
    processes: dict[int, Process]


def stage_name(reading: Reading) -> str:
    stage = reading.block[Block.STAGE]
    return STAGES[stage] if 0 <= stage < len(STAGES) else "unknown"


def probe_health(reading: Reading) -> tuple[bool, str]:
    """Liveness: the supervisor loop turns and at least one worker process is alive."""
    age = (reading.taken_ns - reading.block[Block.HEARTBEAT_NS]) / 1e9
    if age > SUPERVISOR_STALE:
        return False, f"the supervisor loop has not run for {age:.0f}s"
    if not reading.workers:
        return False, "no worker is alive"
    return True, f"{len(reading.workers)} worker(s) alive"


def probe_readiness(reading: Reading, *, app_check: bool) -> tuple[bool, str]:
    """Readiness: not stopping, and a worker ready to serve (that passes the app's check, if any)."""
    if reading.block[Block.STAGE] != 0:
        return False, f"the service is {stage_name(reading)}"
    ready = [w for w in reading.workers.values() if w[Field.STATE] == WorkerState.READY]
    if not ready:
        return False, "no worker is ready yet"
    if app_check:
        passing = [w for w in ready if w[Field.APP_READY] == 1]
        if not passing:
            return False, f"the --readiness check fails on all {len(ready)} ready worker(s)"
        return True, f"{len(passing)} worker(s) ready"
    return True, f"{len(ready)} worker(s) ready"


def sample_of(reading: Reading, procs: Mapping[int, Process], wall: float) -> Sample:
    totals = Totals.of(reading)
    states = collections.Counter(WorkerState(w[Field.STATE]).name.lower() for w in reading.workers.values())
    return Sample(
        wall=wall,
        monotonic=reading.taken_ns / 1e9,
        requests=totals.requests,
        errors=totals.errors,
        buckets=tuple(totals.buckets()),
        in_flight=sum(w[Field.IN_FLIGHT] for w in reading.workers.values()),
        workers={state: states.get(state, 0) for state in ("booting", "ready", "draining")},
        processes=dict(procs),
    )


class History:
    """The last `HISTORY_SECONDS` samples, one a second."""

    def __init__(self, seconds: int = HISTORY_SECONDS) -> None:
        self.samples: collections.deque[Sample] = collections.deque(maxlen=seconds)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def since(self, seconds: float) -> Sample | None:
        """The oldest sample no older than `seconds` before the newest, if there are two."""
        if len(self.samples) < 2:
            return None
        newest = self.samples[-1].monotonic
        for sample in self.samples:
            if newest - sample.monotonic <= seconds + 0.5:
                return sample if sample is not self.samples[-1] else None
        return None

    def series(self, seconds: float) -> list[dict[str, Any]]:
        """Per-second points for the charts: rates and percentiles between consecutive samples."""
        samples = list(self.samples)
        if not samples:
            return []
        newest = samples[-1].monotonic
        points = []
        for previous, current in itertools.pairwise(samples):
            if newest - current.monotonic > seconds:
                continue
            elapsed = max(current.monotonic - previous.monotonic, 1e-9)
            delta = [b - a for a, b in zip(previous.buckets, current.buckets, strict=True)]
            points.append(
                {
                    "time": round(current.wall, 3),
                    "rps": round(max(current.requests - previous.requests, 0) / elapsed, 3),
                    "errors_per_second": round(max(current.errors - previous.errors, 0) / elapsed, 3),
                    **_percentiles(delta),
                    "in_flight": current.in_flight,
                    "workers": current.workers,
                    "cpu_percent": {
                        str(pid): None if p.cpu_percent is None else round(p.cpu_percent, 1)
                        for pid, p in current.processes.items()
                    },
                    "rss_bytes": {str(pid): p.rss_bytes for pid, p in current.processes.items()},
                }
            )
        return points


def status(
    reading: Reading,
    history: History,
    *,
    procs: Mapping[int, Process],
    events: Iterable[Mapping[str, Any]],
    info: Mapping[str, Any],
    app_check: bool = False,
    history_seconds: float = 0,
) -> dict[str, Any]:
    """The JSON document of `/status`."""
    totals = Totals.of(reading)
    block = reading.block
    healthy, health_reason = probe_health(reading)
    ready, ready_reason = probe_readiness(reading, app_check=app_check)
    now_wall = float(info.get("wall", 0.0))
    workers = []
    for index, words in reading.worker_slots():
        pid = words[Field.PID]
        proc = procs.get(pid)
        started = words[Field.STARTED_NS] / 1e9
        workers.append(
            {
                "slot": index,
                "pid": pid,
                "state": WorkerState(words[Field.STATE]).name.lower(),
                "generation": words[Field.GENERATION],
                "age": round(max(now_wall - started, 0.0), 3) if started else None,
                "requests": Totals.sum([words]).requests,
                "in_flight": words[Field.IN_FLIGHT],
                "websockets": words[Field.WS_ACTIVE],
                "app_ready": bool(words[Field.APP_READY]) if app_check else None,
                "cpu_percent": None if proc is None or proc.cpu_percent is None else round(proc.cpu_percent, 1),
                "rss_bytes": None if proc is None else proc.rss_bytes,
            }
        )
    newest = history.samples[-1] if history.samples else None
    rate_from = history.since(RATE_WINDOW)
    latency_from = history.since(LATENCY_WINDOW)
    rps = None
    if newest is not None and rate_from is not None:
        rps = round((newest.requests - rate_from.requests) / max(newest.monotonic - rate_from.monotonic, 1e-9), 3)
    latency: dict[str, Any] = {"window": LATENCY_WINDOW, "p50": None, "p95": None, "p99": None}
    if newest is not None and latency_from is not None:
        latency.update(_percentiles([b - a for a, b in zip(latency_from.buckets, newest.buckets, strict=True)]))
    started_ns = block[Block.STARTED_NS]
    return {
        **{key: value for key, value in info.items() if key != "wall"},
        "supervisor": {
            "pid": block[Block.PID],
            "stage": stage_name(reading),
            "uptime": round(now_wall - started_ns / 1e9, 3) if started_ns else None,
            "generation": block[Block.GENERATION],
            "target_workers": block[Block.TARGET],
            "scale_decisions": {"up": block[Block.SCALE_UP], "down": block[Block.SCALE_DOWN]},
            "healthy": healthy,
            "health": health_reason,
            "ready": ready,
            "readiness": ready_reason,
        },
        "workers": workers,
        "totals": {
            "requests": totals.requests,
            "errors": totals.errors,
            "in_flight": sum(w["in_flight"] for w in workers),
            "websockets": sum(w["websockets"] for w in workers),
            "websockets_total": totals.counters[Field.WS_TOTAL],
            "request_bytes": totals.counters[Field.REQUEST_BYTES],
            "response_bytes": totals.counters[Field.RESPONSE_BYTES],
            "shed": totals.counters[Field.SHED],
            "malformed": totals.counters[Field.MALFORMED],
            "restarts": {reason: block[Block.RESTARTS + i] for i, reason in enumerate(RESTART_REASONS)},
            "by_status": _by_status(totals),
        },
        "rates": {"window": RATE_WINDOW, "requests_per_second": rps},
        "latency": latency,
        "history": history.series(history_seconds) if history_seconds else [],
        "events": list(events),
    }


def _percentiles(buckets: list[int]) -> dict[str, float | None]:
    return {name: _round(quantile(q, buckets)) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _by_status(totals: Totals) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for key, (buckets, _) in totals.series.items():
        counts[label_values(key)[1]] += sum(buckets)
    return dict(sorted(counts.items()))
