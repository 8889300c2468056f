"""Self-scaling workers: per-worker load measured over each sync period, fed to the policy.

The supervisor passes what it reads (each worker's in-flight requests and request count
on every tick, CPU seconds at each sync) and the time; this module keeps the windows and
asks the policy (`asgiscale.policy`, the same code `simulate` runs) for the worker count.
No I/O and no clock of its own, so it is tested with made-up readings.

The metrics, per worker, over the last sync period:

* `cpu`: CPU time used, in % of one core (a worker runs on one core at most);
* `concurrency`: requests in flight, the mean of the samples taken every tick;
* `rps`: requests received per second. Each request counts once, in the window it arrives, whether it is
  served, waits for admission or is shed: the requests answered in the window (served or shed alike) plus the
  change in those in progress (running or waiting). Demand, not throughput: a worker that sheds or queues what
  it cannot carry still shows the whole load, so the policy scales up to it (docs/scaling.md).

A worker that is still booting counts as a pod that is not ready; a draining worker is no
longer counted, like a terminating pod.

    >>> scaler = Autoscaler.from_config(Config(app="main:app", max_workers=4))  # doctest: +SKIP
    >>> scaler.sample(now, [Reading(pid=12, ready=True, in_flight=3, requests=120)])  # doctest: +SKIP
    >>> scaler.decide(now, current=1, cpu={12: 0.8})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses

from asgiscale.config import Config
from asgiscale.policy import HpaDecision, KpaDecision, PodSample, ScalingPolicy
from asgiscale.scaling import Target


@dataclasses.dataclass(frozen=True)
class Reading:
    """One worker, as its slot showed it on one tick."""

    pid: int
    ready: bool
    in_flight: int  # requests in progress: running, or waiting for admission
    requests: int  # requests answered since the worker started, served or shed (a count that only grows)


@dataclasses.dataclass(frozen=True)
class Decision:
    """One sync of the policy: its answer and what it was computed from."""

    current: int
    desired: int
    values: dict[str, float | None]  # mean per worker of each target metric (None: not measured)
    workers: int  # workers measured
    ready: int
    detail: str  # the policy's own account of the decision

    @property
    def change(self) -> bool:
        return self.desired != self.current

    def describe(self) -> str:
        shown = ", ".join(
            f"{name} {'n/a' if value is None else format(value, '.3g')}/worker" for name, value in self.values.items()
        )
        return f"{self.ready}/{self.workers} workers ready; {shown}; {self.detail}"


@dataclasses.dataclass
class _Window:
    """One worker since the last sync: its counters then, its latest reading, the in-flight samples."""

    start: float
    requests_then: int
    in_flight_then: int
    cpu_then: float | None
    requests: int = 0
    in_flight: int = 0
    ready: bool = False
    in_flight_sum: int = 0
    samples: int = 0

    @property
    def received(self) -> int:
        """Requests that arrived in the window: answered in it, or still in progress at its end beyond those
        in progress at its start."""
        return self.requests - self.requests_then + self.in_flight - self.in_flight_then

    def values(self, now: float, cpu: float | None) -> dict[str, float | None]:
        elapsed = now - self.start
        if elapsed <= 0:
            return {"cpu": None, "concurrency": None, "rps": None}
        return {
            "cpu": None if cpu is None or self.cpu_then is None else (cpu - self.cpu_then) / elapsed * 100,
            "concurrency": self.in_flight_sum / self.samples if self.samples else None,
            "rps": self.received / elapsed,
        }


class Autoscaler:
    """Measures the workers between syncs and asks the policy for the worker count."""

    def __init__(self, targets: tuple[Target, ...], policy: ScalingPolicy, sync_period: float) -> None:
        self.targets = targets
        self.policy = policy
        self.sync_period = sync_period
        self.next_sync: float | None = None
        self._windows: dict[int, _Window] = {}

    @classmethod
    def from_config(cls, config: Config) -> Autoscaler:
        return cls(config.targets, config.scaling_policy(), config.scale_sync_period)

    def sample(self, now: float, readings: list[Reading]) -> None:
        """Every tick: the workers that serve or are booting, as their slots show them."""
        live = {r.pid for r in readings}
        for pid in [pid for pid in self._windows if pid not in live]:
            del self._windows[pid]  # drained or dead: no longer part of the service
        for reading in readings:
            window = self._windows.get(reading.pid)
            if window is None:
                window = self._windows[reading.pid] = _Window(now, reading.requests, reading.in_flight, None)
            window.requests = reading.requests
            window.in_flight = reading.in_flight
            window.ready = reading.ready
            window.in_flight_sum += reading.in_flight
            window.samples += 1
        if self.next_sync is None:
            self.next_sync = now + self.sync_period

    def due(self, now: float) -> bool:
        return self.next_sync is not None and now >= self.next_sync

    def decide(self, now: float, current: int, cpu: dict[int, float | None]) -> Decision:
        """At a sync: each worker's values over the window now ending, through the policy.

        `cpu` holds each worker's CPU seconds now; a worker's first window has no CPU value
        (nothing to subtract), which the policy treats as a missing metric.
        """
        self.next_sync = now + self.sync_period
        per_worker: dict[int, dict[str, float | None]] = {}
        ready: dict[int, bool] = {}
        for pid, window in self._windows.items():
            per_worker[pid] = window.values(now, cpu.get(pid))
            ready[pid] = window.ready
            self._windows[pid] = _Window(
                now, window.requests, window.in_flight, cpu.get(pid), window.requests, window.in_flight, window.ready
            )
        samples = [
            [PodSample(values[t.metric], ready=ready[pid]) for pid, values in per_worker.items()] for t in self.targets
        ]
        self.policy.observe(now, samples)
        desired = self.policy.decide(now, current)
        means: dict[str, float | None] = {}
        for target in self.targets:
            known = [v for values in per_worker.values() if (v := values[target.metric]) is not None]
            means[target.metric] = sum(known) / len(known) if known else None
        detail = explain(getattr(self.policy, "last", None))
        return Decision(current, desired, means, len(per_worker), sum(ready.values()), detail)


def explain(last: HpaDecision | KpaDecision | None) -> str:
    """The policy's account of its last decision, in one line."""
    if isinstance(last, HpaDecision):
        parts = [
            f"{p.metric}: {p.error}"
            if p.error
            else f"{p.metric} ratio {p.ratio:.2f} -> {p.proposal}"
            if p.ratio is not None
            else f"{p.metric} -> {p.proposal}"
            for p in last.metrics
        ]
        if last.recommendation is not None:
            parts.append(f"recommended {last.recommendation}, stabilized {last.stabilized}")
        parts.append(last.limit + (f" ({last.message})" if last.message else ""))
        return "; ".join(parts)
    if isinstance(last, KpaDecision):
        if last.stable_value is None:
            return last.reason
        mode = "panic" if last.panicking else "stable"
        return (
            f"{mode} mode; stable {last.stable_value:.3g} -> {last.stable_pods}, "
            f"panic {last.panic_value:.3g} -> {last.panic_pods}, target {last.target:.3g}/pod; {last.reason}"
        )
    return ""
