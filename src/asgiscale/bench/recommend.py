"""Scaling settings derived from a capacity measurement. Pure: numbers in, settings out.

The measurement is, per worker count, the highest request rate that met the objective, with the
mean latency and the CPU each worker used at that rate. From it:

* **per worker at the objective**: its rate, and its concurrency by Little's law (rate x mean
  latency): the most one worker carries before the objective is missed;
* **the scale target**: that figure less `headroom`, so that the autoscaler adds a worker before
  the objective is missed rather than after. A worker that used most of a core at its capacity is
  CPU-bound, and CPU utilization tracks its load: the target is CPU. Otherwise (an app that waits
  on I/O, or is limited by a lock or a pool), CPU says little about load: the target is the
  request rate;
  The CPU target is in the runtime's unit, % of one core per worker (`asgiscale deploy` turns it
  into % of the pod's CPU request);
* **the CPU request**: what one worker used at its capacity, so that the HPA's utilization
  (measured against the request) reads 100 % at capacity, and 1 - headroom at the target;
* **replicas at a peak**: the peak over the target rate of one replica.

    >>> capacity = Capacity(workers=1, rps=400, mean_latency_s=0.012, cpu_cores=0.93)
    >>> r = recommend([capacity], headroom=0.2, peak_rps=5000)
    >>> r.target, r.cpu_request, r.replicas_at_peak
    ('cpu=74', '930m', 16)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from asgiscale import scaling

CPU_BOUND = 0.6  # cores per worker at capacity above which CPU utilization is the scale signal


@dataclasses.dataclass(frozen=True)
class Capacity:
    """What `workers` workers carried at the objective, measured."""

    workers: int
    rps: float  # the highest arrival rate that met the objective, over all the workers
    mean_latency_s: float  # at that rate
    cpu_cores: float | None = None  # per worker at that rate (None: not measured, e.g. a remote URL)

    @property
    def rps_per_worker(self) -> float:
        return self.rps / self.workers


@dataclasses.dataclass(frozen=True)
class Recommendation:
    rps_per_worker: float
    concurrency_per_worker: float
    cpu_per_worker: float | None
    cpu_request: str | None  # a Kubernetes quantity, for one worker
    target: str  # a scale target, like cpu=80 or rps=120
    why: str  # why this metric
    headroom: float
    peak_rps: float | None = None
    replicas_at_peak: int | None = None  # workers (or one-worker replicas) for the peak
    scaling: dict[int, float] = dataclasses.field(default_factory=dict)  # workers -> efficiency vs 1 worker


def recommend(
    capacities: Sequence[Capacity], *, headroom: float = 0.2, peak_rps: float | None = None
) -> Recommendation:
    """Settings from per-worker-count capacities (the one-worker figure is the base, when measured)."""
    if not capacities:
        raise ValueError("no capacity was measured")
    if not 0 <= headroom < 1:
        raise ValueError("headroom is a share below 1, like 0.2")
    base = min(capacities, key=lambda c: c.workers)
    rps = base.rps_per_worker
    concurrency = rps * base.mean_latency_s
    cpu = base.cpu_cores
    target_rps = rps * (1 - headroom)
    if cpu is not None and cpu >= CPU_BOUND:
        target = str(scaling.Target("cpu", max(1, round(100 * cpu * (1 - headroom)))))
        why = f"one worker used {cpu:.2f} cores at its capacity: CPU-bound, so CPU utilization tracks its load"
    else:
        shown = round(target_rps, 1) if target_rps >= 1 else float(f"{target_rps:.2g}")  # never 0 for a slow app
        target = str(scaling.Target("rps", shown))
        used = "an unmeasured share of a core" if cpu is None else f"{cpu:.2f} cores"
        why = f"one worker used {used} at its capacity: CPU does not track its load, the request rate does"
    request = None
    if cpu is not None:
        request = scaling.cpu_request(cpu)
    replicas = None if peak_rps is None else max(1, math.ceil(peak_rps / target_rps))
    return Recommendation(
        rps_per_worker=rps,
        concurrency_per_worker=concurrency,
        cpu_per_worker=cpu,
        cpu_request=request,
        target=target,
        why=why,
        headroom=headroom,
        peak_rps=peak_rps,
        replicas_at_peak=replicas,
        scaling={c.workers: c.rps_per_worker / rps for c in sorted(capacities, key=lambda c: c.workers)},
    )
