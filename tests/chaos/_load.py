"""What the chaos tests watch while they break things: the clients' outcomes, ready workers, and counters.

- `ChaosLoad`: closed-loop httpx clients (keep-alive or `Connection: close`) that count a request lost on a
  connection (the worker died under it) apart from one that hung to its timeout.
- `StatusSampler`: /status every ~50 ms; which workers were ready and alive at each moment, the longest time with
  none, and how long each kill took to heal.
- `CounterHistory` (pure) and `MetricsWatcher` (its I/O shell): every counter series scraped from /metrics only
  ever grows, whatever its name; the series of one worker (a `pid` label) may end with that worker.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.utils import TLS, AsgiscaleProcess, is_alive, wait_for

# A request that takes this long has hung: nothing the chaos tests do should hold one anywhere near it.
REQUEST_TIMEOUT = 10.0


class ChaosLoad:
    """Closed-loop GETs from `clients` threads, bounded by `max_seconds`; every outcome counted by kind.

    >>> with ChaosLoad(server.url, clients=6) as load:
    ...     load.wait_requests(100)
    >>> load.failed
    0
    """

    def __init__(
        self, url: str, *, clients: int = 6, close: bool = False, max_seconds: float = 90, path: str = "/"
    ) -> None:
        assert url.startswith("http://127.0.0.1:"), "load targets loopback only"
        self.url = url + path
        self.close = close
        self.max_seconds = max_seconds
        self.ok = 0
        self.connection_errors: Counter[str] = Counter()  # lost with a connection: refused, reset, closed early
        self.timeouts = 0  # hung until REQUEST_TIMEOUT
        self.statuses: Counter[int] = Counter()  # answers other than 200
        self.slowest = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> ChaosLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)

    @property
    def failed(self) -> int:
        return sum(self.connection_errors.values()) + self.timeouts + sum(self.statuses.values())

    def wait_requests(self, count: int, timeout: float = 30) -> None:
        start = self.ok
        wait_for(lambda: self.ok - start >= count, timeout, f"{count} more answered requests ({self.summary()})")

    def summary(self) -> str:
        errors = ", ".join(f"{name} x{n}" for name, n in sorted(self.connection_errors.items())) or "none"
        statuses = ", ".join(f"{code} x{n}" for code, n in sorted(self.statuses.items())) or "none"
        return (
            f"{self.ok} ok; connection errors: {errors}; timeouts: {self.timeouts}; other statuses: {statuses}; "
            f"slowest {self.slowest:.2f}s"
        )

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        headers = {"connection": "close"} if self.close else {}
        with httpx.Client(timeout=REQUEST_TIMEOUT, verify=TLS, headers=headers) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                outcome: int | str
                try:
                    outcome = client.get(self.url).status_code
                except httpx.TimeoutException:
                    outcome = "timeout"
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                self._record(outcome, time.monotonic() - started)
                if isinstance(outcome, str):
                    # A refused connection fails at once: a pause keeps one outage from counting thousands of times.
                    time.sleep(0.01)

    def _record(self, outcome: int | str, seconds: float) -> None:
        with self._lock:
            self.slowest = max(self.slowest, seconds)
            if outcome == 200:
                self.ok += 1
            elif outcome == "timeout":
                self.timeouts += 1
            elif isinstance(outcome, str):
                self.connection_errors[outcome] += 1
            else:
                self.statuses[outcome] += 1


@dataclasses.dataclass(frozen=True)
class Sample:
    sent: float  # monotonic time the /status request left
    received: float  # and its answer came back: the state it shows held at some moment in between
    ready: frozenset[int]  # workers /status shows ready whose process is alive (not a zombie)
    generations: Mapping[int, int]  # pid -> generation of those workers
    generation: int  # the supervisor's newest generation


class StatusSampler:
    """Reads /status every `interval` seconds in a thread, for as long as it runs (at most `max_seconds`).

    A sample the admin server does not answer (it is down, or slow past 5 s) is skipped, not taken for an outage.
    """

    def __init__(self, server: AsgiscaleProcess, *, interval: float = 0.05, max_seconds: float = 120) -> None:
        self.admin_url = server.admin_url
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[Sample] = []
        self.unanswered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=5, verify=TLS) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    response = client.get(self.admin_url + "/status")
                    document = response.json() if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    document = None
                if document is None:
                    self.unanswered += 1
                else:
                    self.samples.append(_sample(document, sent, time.monotonic()))
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - sent)))

    def wait_sample(self, predicate: Any, timeout: float, what: str) -> Sample:
        """The first sample taken from now on that satisfies `predicate`."""
        start = len(self.samples)
        found = wait_for(lambda: next((s for s in self.samples[start:] if predicate(s)), None), timeout, what)
        return found  # type: ignore[no-any-return]

    def max_gap(self) -> float:
        return no_ready_gap(self.samples)


def _sample(document: Mapping[str, Any], sent: float, received: float) -> Sample:
    workers = {w["pid"]: w["generation"] for w in document["workers"] if w["state"] == "ready"}
    alive = {pid: generation for pid, generation in workers.items() if is_alive(pid)}
    return Sample(sent, received, frozenset(alive), alive, document["supervisor"]["generation"])


def no_ready_gap(samples: list[Sample]) -> float:
    """The longest time, once a worker was first ready, that samples in a row showed no ready worker.

    A run of empty samples counts from its first answer to the answer of the next sample that shows a ready worker
    (or the last sample, if none does): an upper bound of the outage, within one sampling period.
    """
    longest, empty_since, was_ready = 0.0, None, False
    for sample in samples:
        if sample.ready:
            if empty_since is not None:
                longest = max(longest, sample.received - empty_since)
            empty_since, was_ready = None, True
        elif was_ready and empty_since is None:
            empty_since = sample.received
    if empty_since is not None:
        longest = max(longest, samples[-1].received - empty_since)
    return longest


def recovery_times(samples: list[Sample], kills: list[tuple[float, int]], target: int) -> list[float | None]:
    """For each (monotonic time, pid) kill: seconds until a sample showed `target` ready workers again, the victim
    not among them (None if none did before the next kill, or before the samples end)."""
    times: list[float | None] = []
    for index, (killed_at, victim) in enumerate(kills):
        until = kills[index + 1][0] if index + 1 < len(kills) else math.inf
        healed = next(
            (s for s in samples if killed_at <= s.sent < until and victim not in s.ready and len(s.ready) >= target),
            None,
        )
        times.append(None if healed is None else healed.received - killed_at)
    return times


Series = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels
# Samples of these metric types only ever grow (a histogram's buckets, count and sum of non-negative durations).
_GROWING = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
# A series with one of these labels belongs to one process and ends with it (its counts move to the totals).
PROCESS_LABELS = {"pid"}


def counter_series(text: str) -> dict[Series, float]:
    """Every sample of a counter, histogram or summary in Prometheus text, by name and labels."""
    found: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        suffixes = _GROWING.get(family.type)
        if suffixes is None:
            continue
        for sample in family.samples:
            if sample.name.endswith(suffixes):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def show(series: Series) -> str:
    name, labels = series
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "")


class CounterHistory:
    """Scrape after scrape, every counter series either keeps its value or grows (pure: no I/O, no clock).

    A series seen once must stay, unless it belongs to one process (a `pid` label): that series may end with
    its process, and a pid used again later is a new process with a new series.

    >>> history = CounterHistory()
    >>> history.add({("requests_total", ()): 5.0})
    []
    >>> history.add({("requests_total", ()): 4.0})
    ['requests_total went from 5 to 4 (scrape 2)']
    """

    def __init__(self) -> None:
        self.last: dict[Series, float] = {}
        self.scrapes = 0
        self.violations: list[str] = []

    def add(self, series: Mapping[Series, float]) -> list[str]:
        self.scrapes += 1
        found = []
        for key, value in series.items():
            before = self.last.get(key)
            if before is not None and value < before:
                found.append(f"{show(key)} went from {before:g} to {value:g} (scrape {self.scrapes})")
        for key in self.last.keys() - series.keys():
            if PROCESS_LABELS.isdisjoint(dict(key[1])):
                found.append(f"{show(key)} vanished at {self.last[key]:g} (scrape {self.scrapes})")
        # A vanished series keeps its last value (it must come back no lower), except a process's own.
        kept = {k: v for k, v in self.last.items() if k not in series and PROCESS_LABELS.isdisjoint(dict(k[1]))}
        self.last = {**kept, **series}
        self.violations += found
        return found


class MetricsWatcher:
    """Scrapes /metrics every `interval` seconds in a thread and feeds a CounterHistory; a failed scrape (the admin
    server is down) is counted and skipped."""

    def __init__(self, server: AsgiscaleProcess, *, interval: float = 0.25, max_seconds: float = 120) -> None:
        self.admin_url = server.admin_url
        self.interval = interval
        self.max_seconds = max_seconds
        self.history = CounterHistory()
        self.failed_scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MetricsWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=5, verify=TLS) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.get(self.admin_url + "/metrics")
                except httpx.HTTPError:
                    response = None
                if response is None or response.status_code != 200:
                    self.failed_scrapes += 1
                else:
                    self.history.add(counter_series(response.text))
                self._stop.wait(self.interval)

    def check(self, min_scrapes: int = 5) -> None:
        """Every scrape kept every counter; and there were enough scrapes for that to mean something."""
        assert self.history.violations == [], "counters went back:\n" + "\n".join(self.history.violations)
        assert self.history.scrapes >= min_scrapes, (
            f"only {self.history.scrapes} scrapes ({self.failed_scrapes} failed)"
        )


@contextmanager
def watched(server: AsgiscaleProcess, max_seconds: float = 120) -> Iterator[tuple[StatusSampler, MetricsWatcher]]:
    """Sample /status and scrape /metrics for the duration of the block; counters are checked at its end."""
    with (
        StatusSampler(server, max_seconds=max_seconds) as sampler,
        MetricsWatcher(server, max_seconds=max_seconds) as m,
    ):
        yield sampler, m
    m.check()
