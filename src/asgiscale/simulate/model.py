"""The discrete-time cluster model of `asgiscale simulate`: pure, no clock, no I/O.

Each step of `step` seconds:

1. requests arrive at the trace's rate and are spread evenly over the ready replicas (a load
   balancer that sends each request to a ready pod); with none ready they are dropped;
2. the replicas serve them as a fluid: each completes at most `Service.capacity` requests per
   second (divided by the trace's cost), the rest waits in its queue; admission control sheds
   what overflows `max_queue` or would wait past `queue_timeout`, and without it the client
   gives up after `timeout` (dropped);
3. latency is the service time plus the wait behind the queue; with Poisson arrivals, the
   random wait of a replica with `slots` parallel requests below capacity is added too
   (Erlang C, halved for a fixed service time);
4. at every metrics refresh and every sync of the platform, the policy (`asgiscale.policy`
   itself, the objects the runtime drives) reads each replica's metrics as that platform
   delivers them (`Platform`) and sets the replica count; new replicas are ready `startup`
   seconds later (or never, beyond `max_pods`), removed ones go newest first.

Replicas created together behave the same, so they are kept as one cohort and passed to the
policy as one `PodSample` with a count: a day at one-second steps with 10,000 pods takes
seconds.

    >>> from asgiscale.simulate.trace import parse_shape
    >>> service = Service(capacity=100, service_time=0.05)
    >>> from asgiscale.scaling import Target, metric_spec
    >>> spec = {"minReplicas": 1, "maxReplicas": 10, "metrics": [metric_spec(Target("concurrency", 2))]}
    >>> policy = SimPolicy.of_hpa(spec)
    >>> trace = parse_shape("step:from=200,to=400,at=60,duration=600")
    >>> run = simulate(trace, policy, service, PLATFORMS["kubernetes"], arrivals="constant")
    >>> run.decisions  # 10 in flight (200 req/s x 0.05 s) at 2 per pod, then 20
    [(75.0, 5, 8), (90.0, 8, 10)]

The sync at 75 s reads metrics refreshed at 67 s over the 15 s before, 8 s of it before the step: 2.93 in
flight per pod, so ceil(5 x 2.93 / 2) = 8 pods; the next sync sees the whole step.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

from asgiscale.bench.histogram import Histogram
from asgiscale.policy import HorizontalPodAutoscaler, PodSample, PolicyError, ScalingPolicy
from asgiscale.scaling import METRICS
from asgiscale.simulate.trace import Trace

ARRIVALS = ("poisson", "constant")
WARM_UP = 900.0  # seconds at the first rate before a run, unless the initial count is given
# Fluid request counts are recorded in the latency histogram in thousandths of a request.
_WEIGHT = 1000
# Survival levels at which the random wait of a queued request is sampled (Poisson arrivals).
_TAIL = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0)


@dataclasses.dataclass(frozen=True)
class Service:
    """What one replica does with requests (a worker locally, a pod on a cluster)."""

    capacity: float  # requests per second it completes at most
    service_time: float  # seconds one request takes at low load
    cpu_per_request: float | None = None  # CPU seconds one request uses (for a cpu target)
    max_concurrency: int | None = None  # admission control: requests run at once
    max_queue: int = 0  # admission control: requests waiting beyond those (with max_concurrency)
    queue_timeout: float = 5.0
    timeout: float = 30.0  # a client gives up after this long

    def __post_init__(self) -> None:
        if not (self.capacity > 0 and self.service_time > 0):
            raise PolicyError("the capacity and the service time of a replica must be above 0")

    @property
    def slots(self) -> int:
        """Requests one replica runs at once when it carries its capacity (Little's law)."""
        return max(1, round(self.capacity * self.service_time))


@dataclasses.dataclass(frozen=True)
class Platform:
    """Where the policy runs: how fast replicas start and how their metrics reach the policy."""

    name: str
    startup: float  # seconds from the decision to a replica ready to serve
    sync_period: float  # the policy decides this often
    metrics_interval: float  # a new reading of the metrics this often…
    metrics_window: float  # …averaged over this many seconds (0: the sync period, as the runtime does)
    local: bool = False  # asgiscale run: a booting worker reads 0 and its first window has no cpu
    description: str = ""

    def with_(self, **changes: Any) -> Platform:
        changed = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        for name in ("startup", "sync_period", "metrics_interval", "metrics_window"):
            positive = name in ("sync_period", "metrics_interval")
            if getattr(changed, name) < 0 or (positive and not getattr(changed, name)):
                bound = "above 0" if positive else "0 or more"
                raise PolicyError(f"--{name.replace('_', '-')} must be {bound} seconds")
        return changed


PLATFORMS = {
    "local": Platform(
        "local", 0.1, 1.0, 1.0, 0.0, local=True,
        description="asgiscale run: workers forked from the pre-loaded process; the policy reads each worker's "
        "load since the previous sync",
    ),
    "kubernetes": Platform(
        "kubernetes", 20.0, 15.0, 15.0, 15.0,
        description="HPA: 15 s syncs; metrics-server (or a metrics adapter) refreshes every 15 s, averaging over "
        "15 s; a pod is ready 20 s after it is asked for (scheduling, image, app start, readiness probe)",
    ),
    "keda": Platform(
        "keda", 20.0, 15.0, 15.0, 60.0,
        description="KEDA's HPA: 15 s syncs on a Prometheus query scraped every 15 s over a 1 minute rate",
    ),
    "knative": Platform(
        "knative", 5.0, 2.0, 1.0, 1.0,
        description="Knative KPA: 2 s ticks on per-second readings from the queue-proxies; a revision's pod "
        "starts in 5 s",
    ),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SimPolicy:
    """A scaling policy to replay: a fresh `asgiscale.policy` object per run, the metric each input is."""

    name: str
    make: Callable[[], ScalingPolicy]
    metrics: tuple[str, ...]  # "cpu", "concurrency" or "rps", one per sample list the policy takes
    min_replicas: int
    max_replicas: int
    sync_period: float | None = None  # decides this often instead of the platform's sync period
    about: str = ""  # what the policy is, in one line

    @classmethod
    def of_hpa(cls, spec: Mapping[str, Any], name: str = "hpa", **flags: Any) -> SimPolicy:
        """An autoscaling/v2 HPA `spec` whose metrics are ones simulate produces (see `metric_of`)."""
        first = HorizontalPodAutoscaler.from_spec(spec, **flags)  # validates
        metrics = tuple(metric_of(m.source, m.name, m.target_type) for m in first.metrics)
        targets = ", ".join(f"{name}={m.target / (1 if name == 'cpu' else 1000):g}" for name, m in zip(
            metrics, first.metrics, strict=True))  # fmt: skip
        about = f"hpa: {targets}, {first.min_replicas} to {first.max_replicas} replicas"
        return cls(
            name,
            lambda: HorizontalPodAutoscaler.from_spec(spec, **flags),
            metrics,
            first.min_replicas,
            first.max_replicas,
            about=about,
        )


def metric_of(source: str, name: str, target_type: str) -> str:
    """The simulated metric an HPA metric reads: the cpu resource, or the runtime's own metric names."""
    if source in ("Resource", "ContainerResource") and name == "cpu" and target_type == "Utilization":
        return "cpu"
    if source == "Pods":
        for metric, served_as in METRICS.items():
            if served_as == name:
                return metric
    known = ", ".join(n for n in METRICS.values() if n)
    raise PolicyError(
        f"the HPA metric {source} {name} ({target_type}) is not one simulate can produce: use the cpu resource at a"
        f" Utilization target, or a Pods metric named {known}"
    )


@dataclasses.dataclass
class _Cohort:
    """Replicas asked for at the same moment."""

    created: float
    ready_at: float  # math.inf: pending, no room on the nodes
    count: int


@dataclasses.dataclass
class Run:
    """What one replay produced: a series per report point and the totals."""

    policy: str
    about: str
    platform: str
    times: list[float]
    series: dict[str, list[float | None]]
    summary: dict[str, Any]
    decisions: list[tuple[float, int, int]]  # (time, from, to) of every change

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "about": self.about,
            "platform": self.platform,
            "summary": self.summary,
            "series": {"time": self.times, **self.series},
            "decisions": [list(d) for d in self.decisions],
        }


def simulate(
    trace: Trace,
    policy: SimPolicy,
    service: Service,
    platform: Platform,
    *,
    step: float = 1.0,
    arrivals: str = "poisson",
    initial: int | None = None,
    max_pods: int | None = None,
    points: int = 600,
    sync_offset: float = 0.0,
) -> Run:
    """Replay `trace` through `policy` on `platform`; `points` bounds the length of the report series.

    The policy syncs at `sync_offset` + k x its sync period: where a change of load falls between two
    syncs delays the reaction by up to one period."""
    if arrivals not in ARRIVALS:
        raise PolicyError(f"arrivals must be one of {', '.join(ARRIVALS)}, not {arrivals!r}")
    if initial is None:
        # Start where the policy settles for the trace's first rate, not from a cold start.
        first = Trace("warm-up", (0.0,), (trace.rps[0],), (trace.cost[0],), WARM_UP)
        warm = _Model(first, policy, service, platform, step, arrivals, policy.min_replicas, max_pods, 1, 0.0)
        warm.run()
        initial = sum(c.count for c in warm.cohorts)
    model = _Model(trace, policy, service, platform, step, arrivals, initial, max_pods, points, sync_offset)
    return model.run()


class _Model:
    def __init__(
        self,
        trace: Trace,
        policy: SimPolicy,
        service: Service,
        platform: Platform,
        step: float,
        arrivals: str,
        initial: int,
        max_pods: int | None,
        points: int,
        sync_offset: float,
    ) -> None:
        if step <= 0:
            raise PolicyError("--step must be above 0 seconds")
        self.trace, self.policy, self.service, self.platform = trace, policy, service, platform
        self.step = step
        self.poisson = arrivals == "poisson"
        self.max_pods = max_pods
        self.scaler = policy.make()
        if policy.sync_period is not None:
            platform = self.platform = platform.with_(sync_period=policy.sync_period)
        if platform.local:  # the runtime reads its workers at every sync, over the time since the last one
            platform = self.platform = platform.with_(metrics_interval=platform.sync_period, metrics_window=0.0)
        self.sync_every = _steps(platform.sync_period, step, "the sync period")
        self.refresh_every = _steps(platform.metrics_interval, step, "the metrics interval")
        window = platform.metrics_window or platform.sync_period
        self.window = _steps(window, step, "the metrics window")
        self.sync_offset = round(sync_offset / step) % self.sync_every
        # Cluster metrics are read at a moment unrelated to the sync: half an interval old on average.
        self.refresh_phase = self.sync_offset if platform.local else self.refresh_every // 2
        if initial < 0:
            raise PolicyError("the initial replica count must be 0 or more")
        placed = initial if max_pods is None else min(initial, max_pods)
        self.cohorts = [_Cohort(-math.inf, -math.inf, placed), _Cohort(-math.inf, math.inf, initial - placed)]
        self.cohorts = [c for c in self.cohorts if c.count]
        # Per ready replica, integrated over time: in flight, requests received (the runtime's rps) and CPU seconds.
        self.integral: dict[str, list[float]] = {"concurrency": [0.0], "rps": [0.0], "cpu": [0.0]}
        self.decisions: list[tuple[float, int, int]] = []
        self.points = max(1, points)

    def run(self) -> Run:
        service = self.service
        samples = list(self.trace.sample(self.step))
        per_point = max(1, math.ceil(len(samples) / self.points))
        times: list[float] = []
        series: dict[str, list[float | None]] = {
            key: [] for key in ("offered", "served", "shed", "dropped", "ready", "replicas", "p50", "p99")
        }
        acc = dict.fromkeys(("offered", "served", "shed", "dropped", "ready", "replicas"), 0.0)
        point_latency = Histogram()
        latency = Histogram()
        totals = dict.fromkeys(("offered", "served", "shed", "dropped", "replica_seconds"), 0.0)
        replicas_max = 0
        backlog = 0.0
        for k, (rate, cost) in enumerate(samples):
            now = k * self.step
            step = min(self.step, self.trace.duration - now)  # the last step may end with the trace
            ready = sum(c.count for c in self.cohorts if c.ready_at <= now)
            running = sum(c.count for c in self.cohorts if c.ready_at != math.inf)
            arrived = rate * step
            served = shed = dropped = 0.0
            in_flight = received = 0.0
            if ready == 0:
                dropped = arrived + backlog
                backlog = 0.0
            else:
                mu = service.capacity / cost * ready  # requests per second over the ready replicas
                before = backlog
                work = backlog + arrived
                served = min(work, mu * step)
                backlog = work - served
                limit, timeout = self._queue_limits(ready)
                waiting_cap = min(limit, mu * timeout)
                if backlog > waiting_cap:
                    if service.max_concurrency is not None:
                        shed = backlog - waiting_cap
                    else:
                        dropped = backlog - waiting_cap
                    backlog = waiting_cap
                wait = (before + backlog) / 2 / mu
                base = service.service_time * cost
                waiting_mean = 0.0
                if self.poisson and backlog == 0 and served:
                    utilization = served / step / mu
                    waiting_mean = self._record_random_wait(latency, point_latency, served, base, utilization, cost)
                else:
                    _record(latency, point_latency, base + wait, served)
                in_flight = (served / step * base + backlog + served / step * waiting_mean) / ready
                received = arrived / step / ready  # served, queued, shed or given up on alike
            cpu_seconds = (
                served / step * service.cpu_per_request * cost / ready
                if service.cpu_per_request is not None and ready
                else 0.0
            )
            self._integrate(in_flight, received, cpu_seconds)
            totals["offered"] += arrived
            totals["served"] += served
            totals["shed"] += shed
            totals["dropped"] += dropped
            totals["replica_seconds"] += running * step
            replicas_max = max(replicas_max, running)
            for key, value in (
                ("offered", arrived),
                ("served", served),
                ("shed", shed),
                ("dropped", dropped),
                ("ready", ready * step),
                ("replicas", running * step),
            ):
                acc[key] += value
            if (k + 1) % per_point == 0 or k + 1 == len(samples):
                start = (k - k % per_point) * self.step
                span = now + step - start
                times.append(round(start, 6))
                for key, value in acc.items():
                    series[key].append(round(value / span, 6))
                    acc[key] = 0.0
                series["p50"].append(_seconds(point_latency.value_at(50)))
                series["p99"].append(_seconds(point_latency.value_at(99)))
                point_latency = Histogram()
            self._control(k + 1)
        offered = totals["offered"] or 1.0
        summary = {
            "duration": self.trace.duration,
            "requests": round(totals["offered"]),
            "served": round(totals["served"]),
            "shed": round(totals["shed"]),
            "dropped": round(totals["dropped"]),
            "shed_share": totals["shed"] / offered,
            "dropped_share": totals["dropped"] / offered,
            "p50": _seconds(latency.value_at(50)),
            "p99": _seconds(latency.value_at(99)),
            "p99.9": _seconds(latency.value_at(99.9)),
            "replicas_max": replicas_max,
            "replicas_mean": totals["replica_seconds"] / self.trace.duration,
            "replica_seconds": totals["replica_seconds"],
            "scale_events": len(self.decisions),
        }
        return Run(self.policy.name, self.policy.about, self.platform.name, times, series, summary, self.decisions)

    def _queue_limits(self, ready: int) -> tuple[float, float]:
        """Requests that may wait over all ready replicas, and for how long."""
        service = self.service
        if service.max_concurrency is None:
            return math.inf, service.timeout
        return float(service.max_queue * ready), service.queue_timeout

    def _record_random_wait(
        self, latency: Histogram, point: Histogram, served: float, base: float, utilization: float, cost: float
    ) -> float:
        """Record the latency of requests below capacity with Poisson arrivals (some wait for a free slot);
        the mean wait."""
        slots = self.service.slots
        rho = min(utilization, 0.98)
        waits = erlang_c(slots, rho * slots)
        if waits < 1e-3:
            _record(latency, point, base, served)
            return 0.0
        # M/M/c: P(wait > t) = C exp(-(c - a) t / S); a fixed service time halves the waits.
        decay = 2 * (slots - rho * slots) / (self.service.service_time * cost)
        _record(latency, point, base, served * (1 - waits))
        for high, low in itertools.pairwise(_TAIL):
            survival = math.sqrt(high * low) if low else high / 2
            _record(latency, point, base - math.log(survival) / decay, served * waits * (high - low))
        return waits / decay

    def _integrate(self, in_flight: float, received: float, cpu: float) -> None:
        step = self.step
        for key, value in (("concurrency", in_flight), ("rps", received), ("cpu", cpu * 100)):
            values = self.integral[key]
            values.append(values[-1] + value * step)

    def _control(self, k: int) -> None:
        """After step k-1: refresh the metrics and sync the policy when they are due."""
        now = k * self.step
        refresh = (k - self.refresh_phase) % self.refresh_every == 0 and k >= self.refresh_phase
        sync = (k - self.sync_offset) % self.sync_every == 0
        is_hpa = isinstance(self.scaler, HorizontalPodAutoscaler)
        if refresh and not (sync and is_hpa):
            self.scaler.observe(now, self._samples(k, now))
        if sync:
            if is_hpa:  # the HPA reads the latest metrics of the pods that exist at the sync
                read = k if self.platform.local else k - ((k - self.refresh_phase) % self.refresh_every)
                self.scaler.observe(now, self._samples(max(read, 0), now))
            current = sum(c.count for c in self.cohorts)
            desired = self.scaler.decide(now, current)
            if desired != current:
                self.decisions.append((round(now, 6), current, desired))
                self._resize(now, current, desired)
            self._merge_settled(now)

    def _samples(self, read: int, now: float) -> list[list[PodSample] | None]:
        """Each replica's metrics as read at step index `read`, grouped by identical values."""
        window = self.sync_every if self.platform.local else self.window
        lists: list[list[PodSample] | None] = []
        for metric in self.policy.metrics:
            integral = self.integral[metric]
            grouped: dict[tuple[float | None, bool], int] = {}
            for cohort in self.cohorts:
                value: float | None
                ready = cohort.ready_at <= now
                if self.platform.local:
                    # The runtime's window opens at the previous sync or when the worker was forked.
                    start = max(read - window, _index(cohort.created, self.step), 0)
                    if read <= start or (metric == "cpu" and start > read - window):
                        value = None
                    else:
                        counted = max(start, min(read, _index(cohort.ready_at, self.step)))
                        value = (integral[read] - integral[counted]) / ((read - start) * self.step)
                else:
                    first = _index(cohort.ready_at, self.step)
                    start = max(read - window, first, 0)
                    if read <= start:
                        value = None  # no reading since the pod became ready (or since the start)
                    else:
                        value = (integral[read] - integral[start]) / ((read - start) * self.step)
                key = (None if value is None else round(value, 9), ready)
                grouped[key] = grouped.get(key, 0) + cohort.count
            lists.append([PodSample(value, ready, count) for (value, ready), count in grouped.items()])
        return lists

    def _resize(self, now: float, current: int, desired: int) -> None:
        if desired > current:
            more = desired - current
            placed = sum(c.count for c in self.cohorts if c.ready_at != math.inf)
            room = more if self.max_pods is None else max(0, min(more, self.max_pods - placed))
            if room:
                self.cohorts.append(_Cohort(now, now + self.platform.startup, room))
            if more - room:
                self.cohorts.append(_Cohort(now, math.inf, more - room))
            return
        surplus = current - desired
        # Pending pods go first, then the newest (the runtime drains its newest workers first).
        pending = [c for c in self.cohorts if c.ready_at == math.inf]
        for cohort in pending[::-1] + [c for c in self.cohorts if c.ready_at != math.inf][::-1]:
            taken = min(surplus, cohort.count)
            cohort.count -= taken
            surplus -= taken
            if not surplus:
                break
        self.cohorts = [c for c in self.cohorts if c.count]

    def _merge_settled(self, now: float) -> None:
        """Cohorts whose every reading is now the same as the oldest's become one (the model stays small)."""
        # A sync reads metrics up to one refresh interval old, over one window.
        settled_before = now - (self.window + self.refresh_every + 1) * self.step
        settled = [c for c in self.cohorts if c.ready_at < settled_before and c.created < settled_before]
        if len(settled) > 1:
            merged = _Cohort(-math.inf, -math.inf, sum(c.count for c in settled))
            self.cohorts = [merged] + [c for c in self.cohorts if c not in settled]


def erlang_c(servers: int, offered: float) -> float:
    """The probability that a request waits, in an M/M/c queue of `servers` and `offered` Erlangs."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    rho = offered / servers
    return blocking / (1 - rho * (1 - blocking))


def _record(latency: Histogram, point: Histogram, seconds: float, requests: float) -> None:
    times = round(requests * _WEIGHT)
    if times > 0:
        micros = max(0, round(seconds * 1e6))
        latency.record(micros, times)
        point.record(micros, times)


def _seconds(micros: int | None) -> float | None:
    return None if micros is None else micros / 1e6


def _index(time: float, step: float) -> int:
    if time == -math.inf:
        return -(10**12)
    if time == math.inf:
        return 10**12
    return math.ceil(round(time / step, 9))


def _steps(seconds: float, step: float, what: str) -> int:
    count = round(seconds / step)
    if count < 1 or abs(count * step - seconds) > 1e-6 * max(1.0, seconds):
        raise PolicyError(f"{what} ({seconds:g} s) must be a whole number of steps of {step:g} s; change --step")
    return count
