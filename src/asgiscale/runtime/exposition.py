"""`/metrics`: one reading of the whole table as Prometheus metric families.

Names follow the OpenTelemetry HTTP semantic conventions as Prometheus exposes them
(`http_server_request_duration_seconds`, `http_server_active_requests`), the rest are
asgiscale's own. Totals are summed over live workers and the retired slot, so they never
go backwards when a worker dies; per-worker families carry a `pid` label.

    >>> registry = CollectorRegistry(auto_describe=False)
    >>> registry.register(TableCollector(lambda: (reading, procs, ready)))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from asgiscale import __version__
from asgiscale.runtime.metrics import Reading, Totals, label_values
from asgiscale.runtime.shm import DURATION_BUCKETS, RESTART_REASONS, Block, Field, WorkerState
from asgiscale.runtime.status import Process

_LE = [f"{bound:g}" for bound in DURATION_BUCKETS] + ["+Inf"]
_WORKER_STATES = [s for s in WorkerState if s is not WorkerState.EMPTY]

Scrape = tuple[Reading, Mapping[int, Process], bool]


class TableCollector(Collector):
    """Collects a fresh `(reading, processes, ready)` from `scrape` on every call."""

    def __init__(self, scrape: Callable[[], Scrape]) -> None:
        self.scrape = scrape

    def collect(self) -> Iterator[Metric]:
        reading, procs, ready = self.scrape()
        yield from requests(reading)
        yield from fleet(reading, ready)
        yield from workers(reading, procs)


def requests(reading: Reading) -> Iterator[Metric]:
    totals = Totals.of(reading)
    duration = HistogramMetricFamily(
        "http_server_request_duration_seconds",
        "Duration of HTTP server requests, to the last byte of the response.",
        labels=["http_request_method", "http_response_status_code"],
        unit="seconds",
    )
    for key, (buckets, total_ns) in sorted(totals.series.items()):
        cumulative, running = [], 0
        for le, count in zip(_LE, buckets, strict=True):
            running += count
            cumulative.append((le, running))
        duration.add_metric(list(label_values(key)), cumulative, total_ns / 1e9)
    yield duration
    yield _gauge(
        "http_server_active_requests",
        "HTTP server requests in flight.",
        sum(w[Field.IN_FLIGHT] for w in reading.workers.values()),
    )
    counters = totals.counters
    yield _counter(
        "asgiscale_http_request_body_bytes", "Bytes of request bodies read by the app.", counters[Field.REQUEST_BYTES]
    )
    yield _counter(
        "asgiscale_http_response_body_bytes",
        "Bytes of response bodies sent by the app.",
        counters[Field.RESPONSE_BYTES],
    )
    yield _counter("asgiscale_websocket_connections", "WebSocket connections handled.", counters[Field.WS_TOTAL])
    yield _gauge(
        "asgiscale_websocket_active_connections",
        "WebSocket connections open.",
        sum(w[Field.WS_ACTIVE] for w in reading.workers.values()),
    )
    yield _counter(
        "asgiscale_worker_busy_seconds",
        "Time workers spent with at least one HTTP request in flight, summed over workers.",
        counters[Field.BUSY_NS] / 1e9,
    )
    yield _counter("asgiscale_requests_shed", "Requests refused by admission control.", counters[Field.SHED])
    yield _counter(
        "asgiscale_http_malformed_requests",
        "Requests the HTTP parser refused with 400, without calling the app.",
        counters[Field.MALFORMED],
    )
    queue = SummaryMetricFamily(
        "asgiscale_queue_wait_seconds",
        "Time requests waited for admission.",
        count_value=counters[Field.QUEUED],
        sum_value=counters[Field.QUEUE_WAIT_NS] / 1e9,
        unit="seconds",
    )
    yield queue


def fleet(reading: Reading, ready: bool) -> Iterator[Metric]:
    block = reading.block
    states = GaugeMetricFamily("asgiscale_workers", "Worker processes by state.", labels=["state"])
    for state in _WORKER_STATES:
        count = sum(1 for w in reading.workers.values() if w[Field.STATE] == state)
        states.add_metric([state.name.lower()], count)
    yield states
    yield _gauge("asgiscale_workers_desired", "Workers the supervisor aims to run.", block[Block.TARGET])
    restarts = CounterMetricFamily("asgiscale_worker_restarts", "Workers replaced, by reason.", labels=["reason"])
    for i, reason in enumerate(RESTART_REASONS):
        restarts.add_metric([reason], block[Block.RESTARTS + i])
    yield restarts
    decisions = CounterMetricFamily(
        "asgiscale_scale_decisions", "Changes of the worker target, by direction.", labels=["direction"]
    )
    decisions.add_metric(["up"], block[Block.SCALE_UP])
    decisions.add_metric(["down"], block[Block.SCALE_DOWN])
    yield decisions
    yield _gauge("asgiscale_ready", "1 while /readyz answers 200.", int(ready))
    yield _gauge(
        "asgiscale_start_time_seconds", "When the supervisor started (Unix time).", block[Block.STARTED_NS] / 1e9
    )
    info = GaugeMetricFamily("asgiscale_build_info", "The asgiscale version.", labels=["version"])
    info.add_metric([__version__], 1)
    yield info


def workers(reading: Reading, procs: Mapping[int, Process]) -> Iterator[Metric]:
    cpu = CounterMetricFamily("asgiscale_worker_cpu_seconds", "CPU time of each worker process.", labels=["pid"])
    rss = GaugeMetricFamily(
        "asgiscale_worker_resident_memory_bytes", "Resident memory of each worker process.", labels=["pid"]
    )
    state = GaugeMetricFamily("asgiscale_worker_state", "1 for the state each worker is in.", labels=["pid", "state"])
    served = CounterMetricFamily(
        "asgiscale_worker_http_requests", "HTTP requests answered by each live worker.", labels=["pid"]
    )
    for _, words in reading.worker_slots():
        pid = str(words[Field.PID])
        if pid == "0":
            continue  # forked, not yet running
        state.add_metric([pid, WorkerState(words[Field.STATE]).name.lower()], 1)
        served.add_metric([pid], Totals.sum([words]).requests)
        proc = procs.get(words[Field.PID])
        if proc is not None:
            cpu.add_metric([pid], proc.cpu_seconds)
            rss.add_metric([pid], proc.rss_bytes)
    yield from (cpu, rss, state, served)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
