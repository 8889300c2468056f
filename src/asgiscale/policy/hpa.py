"""Kubernetes' HorizontalPodAutoscaler (autoscaling/v2), one controller sync at a time: pure, no clock of its own.

`HorizontalPodAutoscaler.from_spec` takes the `spec` of an autoscaling/v2 HPA as a dict (camelCase keys, as in
YAML) and `sync` makes one decision of the controller: the replica count per metric from the readings, the max
over metrics, the stabilization window(s), then the rate limits and the min/max clamp. The object keeps what the
real controller keeps between syncs (the recommendations and the scale events), and `last` explains the decision.

    >>> hpa = HorizontalPodAutoscaler.from_spec(
    ...     {"maxReplicas": 10, "metrics": [{"type": "Resource", "resource": {"name": "cpu",
    ...      "target": {"type": "Utilization", "averageUtilization": 50}}}]})
    >>> hpa.sync(0.0, 1, [[PodSample(305.0)]])  # 305 % of the request against 50 %: 7 wanted, 4 allowed
    4
    >>> hpa.last.metrics[0].proposal, hpa.last.limit
    (7, 'ScaleUpLimit')

Samples: one list per item of `spec["metrics"]`, or None when that metric could not be fetched this sync.
Resource/ContainerResource and Pods metrics: one `PodSample` per pod, `value` in percent of the request for a
`Utilization` target and in the metric's unit otherwise. Object and External metrics: the object's value (External:
one sample per matching series, summed as Kubernetes does). See docs/scaling-policy.md.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Mapping, Sequence
from typing import Any

from asgiscale.policy._spec import Metric, Rules, integer, parse_behavior, parse_metric
from asgiscale.policy._spec import PolicyError as PolicyError  # public here, as the interface documents
from asgiscale.policy._spec import parse_quantity as parse_quantity

MAX_INT32 = 2**31 - 1
# Go's time.Time counts nanoseconds: the controller's windows compare whole nanoseconds, so a recommendation made
# exactly a window ago lies on its edge. In float seconds, (t + 300) - 300 is not always t.
_NS = 1_000_000_000
# Requests are not known here: each pod's usage is its utilization over a request of 100 units (in milli-units).
_REQUEST_MILLI = 100_000


@dataclasses.dataclass(frozen=True)
class PodSample:
    """One pod's reading of one metric: `value` None when its metric is missing, `ready` False while it starts.

    `count` pods read the same (`simulate` groups identical pods; the decision is the one for each pod apart).
    """

    value: float | None
    ready: bool = True
    count: int = 1


@dataclasses.dataclass(frozen=True)
class MetricProposal:
    """What one metric asked for this sync (`error` set when it could not be computed)."""

    metric: str
    current: float | None = None  # utilization in percent, or the average (Value: total) in the metric's unit
    ratio: float | None = None  # current over target, before missing or unready pods are accounted for
    proposal: int | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class HpaDecision:
    """The explanation of one sync, for the `asgiscale.scale` log."""

    time: float
    current_replicas: int
    desired_replicas: int
    metrics: tuple[MetricProposal, ...] = ()
    recommendation: int | None = None  # the max over metrics, before stabilization
    stabilized: int | None = None  # after the stabilization window(s)
    limit: str = "DesiredWithinRange"  # the Kubernetes condition reason that shaped the result
    message: str = ""


@dataclasses.dataclass
class _ScaleEvent:
    change: int
    time: int  # nanoseconds
    outdated: bool = False


class HorizontalPodAutoscaler:
    """One HPA as the Kubernetes controller runs it, with the controller's flags as keyword arguments.

    >>> hpa = HorizontalPodAutoscaler.from_spec({"maxReplicas": 5}, tolerance=0.05)
    >>> hpa.sync(0.0, 2, [[PodSample(120.0), PodSample(100.0)]])  # default metric: cpu at 80 %
    3
    """

    def __init__(
        self,
        *,
        max_replicas: int,
        min_replicas: int = 1,
        metrics: Sequence[Metric] = (),
        behavior: tuple[Rules, Rules] | None = None,
        tolerance: float = 0.1,
        downscale_stabilization: float = 300.0,
        sync_period: float = 15.0,
    ) -> None:
        if min_replicas < 1:
            raise PolicyError(f"spec.minReplicas is {min_replicas}: use 1 or more (scale to zero is the KPA's job)")
        if max_replicas < min_replicas:
            raise PolicyError(
                f"spec.maxReplicas ({max_replicas}) is less than spec.minReplicas ({min_replicas}):"
                " raise maxReplicas or lower minReplicas"
            )
        if tolerance < 0:
            raise PolicyError(f"tolerance is {tolerance}: use 0 or more (0.1 is Kubernetes' default)")
        if downscale_stabilization < 0 or sync_period <= 0:
            raise PolicyError("downscale_stabilization must be 0 or more and sync_period more than 0 seconds")
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.metrics = tuple(metrics) or (Metric("Resource", "cpu", "Utilization", 80, True),)
        self.behavior = behavior
        self.tolerance = tolerance
        self.downscale_stabilization = downscale_stabilization
        self.sync_period = sync_period
        self.last: HpaDecision | None = None
        self._recommendations: list[tuple[int, int]] = []  # (nanoseconds, replicas)
        self._up_events: list[_ScaleEvent] = []
        self._down_events: list[_ScaleEvent] = []
        self._observed: Sequence[Sequence[PodSample] | None] = ()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **flags: Any) -> HorizontalPodAutoscaler:
        """Build from the `spec` of an autoscaling/v2 HorizontalPodAutoscaler; `flags` are the controller's."""
        if not isinstance(spec, Mapping):
            raise PolicyError("spec must be a mapping (the `spec` of an autoscaling/v2 HorizontalPodAutoscaler)")
        if "maxReplicas" not in spec:
            raise PolicyError("spec.maxReplicas is required: set the largest replica count the HPA may use")
        metrics = spec.get("metrics") or []
        if not isinstance(metrics, list):
            raise PolicyError("spec.metrics must be a list of metric specs")
        behavior = spec.get("behavior")
        return cls(
            max_replicas=integer(spec["maxReplicas"], "spec.maxReplicas"),
            min_replicas=integer(spec.get("minReplicas", 1), "spec.minReplicas"),
            metrics=[parse_metric(m, f"spec.metrics[{i}]") for i, m in enumerate(metrics)],
            behavior=None if behavior is None else parse_behavior(behavior),
            **flags,
        )

    # The seam the runtime drives (see asgiscale.policy.ScalingPolicy).
    def observe(self, now: float, samples: Sequence[Sequence[PodSample] | None]) -> None:
        self._observed = samples

    def decide(self, now: float, current_replicas: int) -> int:
        observed = self._observed or [None] * len(self.metrics)
        return self.sync(now, current_replicas, observed)

    def sync(
        self,
        now: float,
        current_replicas: int,
        samples: Sequence[Sequence[PodSample] | None],
        *,
        ready_replicas: int | None = None,
    ) -> int:
        """One controller sync at `now` (seconds): the replica count to set.

        `ready_replicas` is the ready pod count that Object and External `Value` targets multiply their ratio
        by (Kubernetes counts Running and Ready pods); it defaults to `current_replicas`.
        """
        if len(samples) != len(self.metrics):
            raise ValueError(
                f"expected {len(self.metrics)} sample lists (one per spec.metrics item), got {len(samples)}"
            )
        at = _nanoseconds(now)
        if not self._recommendations:
            # The controller records the current count a moment before it reads its clock for the sync.
            self._recommendations.append((at - 1, current_replicas))
        if current_replicas == 0:
            return self._done(now, 0, 0, limit="ScalingDisabled", message="the target is scaled to zero")
        if current_replicas > self.max_replicas:
            desired = self.max_replicas
            self._done(now, current_replicas, desired, limit="TooManyReplicas", message="current above maxReplicas")
        elif current_replicas < self.min_replicas:
            desired = self.min_replicas
            self._done(now, current_replicas, desired, limit="TooFewReplicas", message="current below minReplicas")
        else:
            ready = current_replicas if ready_replicas is None else ready_replicas
            proposals = tuple(
                _propose(metric, sample, current_replicas, ready, self._tolerances())
                for metric, sample in zip(self.metrics, samples, strict=True)
            )
            valid = [p.proposal for p in proposals if p.proposal is not None]
            recommendation = 0
            for proposal in valid:
                if recommendation == 0 or proposal > recommendation:
                    recommendation = proposal
            invalid = len(proposals) - len(valid)
            if invalid == len(proposals) or (invalid and recommendation < current_replicas):
                # Kubernetes neither scales nor records a recommendation when it cannot trust a scale-down.
                first = next(p.error for p in proposals if p.error is not None)
                return self._done(
                    now,
                    current_replicas,
                    current_replicas,
                    metrics=proposals,
                    limit="InvalidMetrics",
                    message=f"{invalid} of {len(proposals)} metric(s) invalid, first: {first}",
                )
            if self.behavior is None:
                stabilized = self._stabilize(at, recommendation)
                desired, limit = self._limit_without_behavior(current_replicas, stabilized)
            else:
                stabilized = self._stabilize_with_behavior(at, current_replicas, recommendation)
                desired, limit = self._limit_with_behavior(at, current_replicas, stabilized)
            self._done(
                now, current_replicas, desired, proposals, recommendation, stabilized, limit, _MESSAGES.get(limit, "")
            )
        if desired != current_replicas:
            self._store_event(at, current_replicas, desired)
        return desired

    def _done(
        self,
        now: float,
        current: int,
        desired: int,
        metrics: tuple[MetricProposal, ...] = (),
        recommendation: int | None = None,
        stabilized: int | None = None,
        limit: str = "DesiredWithinRange",
        message: str = "",
    ) -> int:
        self.last = HpaDecision(now, current, desired, metrics, recommendation, stabilized, limit, message)
        return desired

    def _tolerances(self) -> tuple[float, float]:
        down = up = self.tolerance
        if self.behavior is not None:
            up_rules, down_rules = self.behavior
            down = self.tolerance if down_rules.tolerance is None else down_rules.tolerance
            up = self.tolerance if up_rules.tolerance is None else up_rules.tolerance
        return down, up

    def _record(self, at: int, recommendation: int, old: int | None) -> None:
        if old is None:
            self._recommendations.append((at, recommendation))
        else:
            self._recommendations[old] = (at, recommendation)

    def _stabilize(self, at: int, recommendation: int) -> int:
        # stabilizeRecommendation: a recommendation exactly on the window's edge still counts (only those
        # before the cutoff are dropped), unlike with a behavior below.
        cutoff = at - _nanoseconds(self.downscale_stabilization)
        highest, old = recommendation, None
        for index, (time, value) in enumerate(self._recommendations):
            if time < cutoff:
                old = index
            elif value > highest:
                highest = value
        self._record(at, recommendation, old)
        return highest

    def _stabilize_with_behavior(self, at: int, current: int, recommendation: int) -> int:
        # stabilizeRecommendationWithBehaviors: only recommendations after the cutoffs count; one exactly on an
        # edge is neither counted nor reused.
        assert self.behavior is not None
        up_rules, down_rules = self.behavior
        down_window = self.downscale_stabilization if down_rules.stabilization is None else down_rules.stabilization
        up_cutoff = at - _nanoseconds(up_rules.stabilization or 0.0)
        down_cutoff = at - _nanoseconds(down_window)
        lowest = highest = recommendation
        old = None
        for index, (time, value) in enumerate(self._recommendations):
            if time > up_cutoff:
                lowest = min(lowest, value)
            if time > down_cutoff:
                highest = max(highest, value)
            if time < up_cutoff and time < down_cutoff:
                old = index
        self._record(at, recommendation, old)
        return min(max(current, lowest), highest)

    def _limit_without_behavior(self, current: int, desired: int) -> tuple[int, str]:
        scale_up_limit = int(max(2.0 * current, 4.0))
        if self.max_replicas > scale_up_limit:
            ceiling, reason = scale_up_limit, "ScaleUpLimit"
        else:
            ceiling, reason = self.max_replicas, "TooManyReplicas"
        if desired < self.min_replicas:
            return self.min_replicas, "TooFewReplicas"
        if desired > ceiling:
            return ceiling, reason
        return desired, "DesiredWithinRange"

    def _limit_with_behavior(self, at: int, current: int, desired: int) -> tuple[int, str]:
        assert self.behavior is not None
        up_rules, down_rules = self.behavior
        if desired > current:
            limit = max(_rate_limit(up_rules, +1, current, at, self._up_events, self._down_events), current)
            ceiling, reason = (
                (limit, "ScaleUpLimit") if self.max_replicas > limit else (self.max_replicas, "TooManyReplicas")
            )
            if desired > ceiling:
                return ceiling, reason
        elif desired < current:
            limit = min(_rate_limit(down_rules, -1, current, at, self._up_events, self._down_events), current)
            floor, reason = (
                (limit, "ScaleDownLimit") if self.min_replicas < limit else (self.min_replicas, "TooFewReplicas")
            )
            if desired < floor:
                return floor, reason
        return desired, "DesiredWithinRange"

    def _store_event(self, at: int, previous: int, desired: int) -> None:
        if self.behavior is None:
            return
        up_rules, down_rules = self.behavior
        rules, events = (up_rules, self._up_events) if desired > previous else (down_rules, self._down_events)
        longest = max((period for _, _, period in rules.policies), default=0)
        old = None
        for index, event in enumerate(events):
            if event.time < at - longest * _NS:
                event.outdated = True
            if event.outdated:
                old = index
        event = _ScaleEvent(abs(desired - previous), at)
        if old is None:
            events.append(event)
        else:
            events[old] = event


_MESSAGES = {
    "DesiredWithinRange": "the desired count is within the acceptable range",
    "ScaleUpLimit": "the desired replica count is increasing faster than the maximum scale rate",
    "ScaleDownLimit": "the desired replica count is decreasing faster than the maximum scale rate",
    "TooManyReplicas": "the desired replica count is more than the maximum replica count",
    "TooFewReplicas": "the desired replica count is less than the minimum replica count",
}


def _rate_limit(
    rules: Rules, direction: int, current: int, at: int, up: list[_ScaleEvent], down: list[_ScaleEvent]
) -> int:
    """The furthest replica count the policies allow from `current` in `direction` (+1 up, -1 down)."""
    if rules.select == "Disabled":
        return current
    # "Max" picks the policy allowing the biggest change: the highest count up, the lowest count down.
    highest = (rules.select == "Max") == (direction > 0)
    result: int | None = None
    for kind, value, period in rules.policies:
        added = sum(e.change for e in up if e.time > at - period * _NS)
        removed = sum(e.change for e in down if e.time > at - period * _NS)
        start = current - added + removed
        if kind == "Pods":
            proposed = start + direction * value
        elif direction > 0:
            proposed = math.ceil(float(start) * (1 + float(value) / 100))
        else:
            proposed = int(float(start) * (1 - float(value) / 100))
        if result is None or (proposed > result if highest else proposed < result):
            result = proposed
    assert result is not None
    return result


def _propose(
    metric: Metric,
    sample: Sequence[PodSample] | None,
    current: int,
    ready: int,
    tolerances: tuple[float, float],
) -> MetricProposal:
    if sample is None:
        return MetricProposal(metric.label, error=f"{metric.label}: the metric could not be fetched")
    if metric.source in ("Object", "External"):
        return _object_proposal(metric, sample, current, ready, tolerances)
    return _pods_proposal(metric, sample, current, tolerances)


def _within(ratio: float, tolerances: tuple[float, float]) -> bool:
    down, up = tolerances
    return 1.0 - down <= ratio <= 1.0 + up


def _pods_proposal(
    metric: Metric, samples: Sequence[PodSample], current: int, tolerances: tuple[float, float]
) -> MetricProposal:
    if not samples:
        return MetricProposal(metric.label, error=f"{metric.label}: no pods")
    values: list[tuple[int, int]] = []  # (milli-value, pods)
    unready = missing = 0
    for pod in samples:
        # A not-ready pod without a value stands for a Pending pod, set aside for every metric; a not-ready pod
        # with a value is set aside only for cpu (the controller's cpu initialization rules).
        if not pod.ready and (pod.value is None or metric.cpu):
            unready += pod.count
        elif pod.value is None:
            missing += pod.count
        elif pod.count:
            values.append((_milli(pod.value), pod.count))
    if not values:
        return MetricProposal(metric.label, error=f"{metric.label}: no metrics for ready pods")
    utilization = metric.target_type == "Utilization"

    def usage(readings: list[tuple[int, int]]) -> tuple[float, float]:
        total = sum(value * count for value, count in readings)
        pods = sum(count for _, count in readings)
        if utilization:
            percent = total * 100 // (_REQUEST_MILLI * pods)
            return float(percent) / float(metric.target), float(percent)
        average = _go_div(total, pods)
        return float(average) / float(metric.target), average / 1000

    ratio, reported = usage(values)
    measured = sum(count for _, count in values)

    def result(proposal: int) -> MetricProposal:
        return MetricProposal(metric.label, reported, ratio, min(proposal, MAX_INT32))

    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if _within(ratio, tolerances):
            return result(current)
        return result(math.ceil(ratio * float(measured)))
    if missing:
        if ratio < 1.0:
            fallback = _REQUEST_MILLI * max(100, metric.target) // 100 if utilization else metric.target
            values.append((fallback, missing))
        elif ratio > 1.0:
            values.append((0, missing))
    if scale_up_with_unready:
        values.append((0, unready))
    new_ratio, _ = usage(values)
    if _within(new_ratio, tolerances) or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return result(current)
    proposal = math.ceil(new_ratio * float(sum(count for _, count in values)))
    if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
        return result(current)
    return result(proposal)


def _object_proposal(
    metric: Metric, samples: Sequence[PodSample], current: int, ready: int, tolerances: tuple[float, float]
) -> MetricProposal:
    if not samples or any(s.value is None for s in samples):
        return MetricProposal(metric.label, error=f"{metric.label}: no value")
    if metric.source == "Object" and len(samples) != 1:
        return MetricProposal(metric.label, error=f"{metric.label}: an Object metric has exactly one value")
    usage = sum(_milli(s.value) * s.count for s in samples if s.value is not None)
    if metric.target_type == "Value":
        ratio = float(usage) / float(metric.target)
        proposal = current
        if not _within(ratio, tolerances):
            proposal = min(math.ceil(ratio * float(ready)), MAX_INT32)
        return MetricProposal(metric.label, usage / 1000, ratio, proposal)
    ratio = float(usage) / (float(metric.target) * float(current))
    proposal = current
    if not _within(ratio, tolerances):
        proposal = min(math.ceil(float(usage) / float(metric.target)), MAX_INT32)
    return MetricProposal(metric.label, math.ceil(float(usage) / float(current)) / 1000, ratio, proposal)


def _nanoseconds(seconds: float) -> int:
    """A time or duration in whole nanoseconds, from the decimal the float stands for (7.3 + 300.0 gives 307.3 s)."""
    return int((decimal.Decimal(repr(float(seconds))) * _NS).to_integral_value(decimal.ROUND_HALF_EVEN))


def _go_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Go's."""
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _milli(value: float) -> int:
    """A reading in milli-units, rounded up like resource.Quantity.MilliValue()."""
    return int((decimal.Decimal(repr(float(value))) * 1000).to_integral_value(decimal.ROUND_CEILING))
