"""Knative's Pod Autoscaler (KPA) decision, pure: no I/O, no clock of its own.

`record(now, value)` once a second with the total of the scaling metric over all pods (in-flight requests for
`concurrency`, requests per second for `rps`); `sync(now, ready_pods)` on each tick gives the desired pod count.
The stable window (60 s) average over the per-pod target gives the count; when the panic window (10 % of it)
asks for at least twice the ready pods, the autoscaler panics: it follows the panic window, never scales down,
and stays so until a full stable window has passed without the threshold being crossed.

    >>> kpa = KnativePodAutoscaler(container_concurrency=10)  # target 7 in flight per pod (70 %)
    >>> for second in range(60):
    ...     kpa.record(float(second), 70.0)
    >>> kpa.sync(60.0, 10)
    10
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from asgiscale.policy.hpa import PodSample, PolicyError

PREFIX = "autoscaling.knative.dev/"
KPA_CLASS = "kpa.autoscaling.knative.dev"
METRICS = ("concurrency", "rps")
TARGET_MIN = 0.01
# Annotation (after the prefix) -> keyword argument; the camelCase spellings are Knative's older ones.
ANNOTATIONS = {
    "metric": "metric",
    "target": "target",
    "target-utilization-percentage": "target_utilization",
    "targetUtilizationPercentage": "target_utilization",
    "window": "stable_window",
    "panic-window-percentage": "panic_window_percentage",
    "panicWindowPercentage": "panic_window_percentage",
    "panic-threshold-percentage": "panic_threshold_percentage",
    "panicThresholdPercentage": "panic_threshold_percentage",
    "min-scale": "min_scale",
    "minScale": "min_scale",
    "max-scale": "max_scale",
    "maxScale": "max_scale",
    "scale-down-delay": "scale_down_delay",
}
# Knative annotations that steer something other than the replica count decision.
IGNORED = ("class", "target-burst-capacity", "initial-scale", "initialScale")


@dataclasses.dataclass(frozen=True)
class KpaDecision:
    """The explanation of one sync, for the `asgiscale.scale` log."""

    time: float
    ready_pods: int
    desired_pods: int
    stable_value: float | None = None  # window averages of the metric's total
    panic_value: float | None = None
    target: float | None = None  # per pod
    stable_pods: int | None = None  # wanted by each window, within the rate limits
    panic_pods: int | None = None
    max_scale_up: int | None = None
    max_scale_down: int | None = None
    panicking: bool = False
    reason: str = ""


class _WindowAverage:
    """The average of one-second buckets over a window, as Knative's TimedFloat64Buckets computes it."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.buckets = [0.0] * window
        self.total = 0.0
        self.first: int | None = None
        self.last: int | None = None

    def record(self, now: float, value: float) -> None:
        second = math.floor(now)
        if self.last != second:
            if self.last is not None and second + self.window <= self.last:
                return  # older than a window
            if self.first is None or self.first > second:
                self.first = second
            if self.last is None or second > self.last:
                if self.last is None or second - self.last >= self.window:
                    self.first = second
                    self.buckets = [0.0] * self.window
                    self.total = 0.0
                else:
                    for index in range(self.last + 1, second + 1):
                        self.total -= self.buckets[index % self.window]
                        self.buckets[index % self.window] = 0.0
                self.last = second
        self.buckets[second % self.window] += value
        self.total += value

    def empty(self, now: float) -> bool:
        return self.last is None or math.floor(now) - self.last > self.window

    def average(self, now: float) -> float:
        if self.last is None or self.first is None:
            return 0.0
        gap = math.floor(now) - self.last
        if gap >= self.window:
            return 0.0
        # Seconds without data after the last write count as gone, not as zeros; a window not yet full of
        # data is averaged over the seconds it has.
        total = self.total - sum(
            self.buckets[i % self.window] for i in range(self.last + 1, self.last + 1 + max(gap, 0))
        )
        count = min(self.last - self.first + 1, self.window - max(gap, 0))
        return math.floor(total / count * 1e6) / 1e6


class KnativePodAutoscaler:
    """Knative's KPA with its config-autoscaler defaults, except that scale to zero is off (`min_scale=1`).

    `target` is the per-pod target of the metric (the `autoscaling.knative.dev/target` annotation); without it,
    `container_concurrency` (or 100 concurrent requests, or 200 rps) is. The autoscaler aims at
    `target_utilization` percent of it. `min_scale=0` turns scale to zero on: the count drops to zero once the
    autoscaler has wanted zero for `scale_to_zero_grace_period` seconds.

    >>> kpa = KnativePodAutoscaler.from_annotations({"autoscaling.knative.dev/target": "10"})
    >>> kpa.target_value
    7.0
    """

    def __init__(
        self,
        *,
        metric: str = "concurrency",
        target: float | None = None,
        container_concurrency: int = 0,
        target_utilization: float = 70.0,
        stable_window: float = 60.0,
        panic_window_percentage: float = 10.0,
        panic_threshold_percentage: float = 200.0,
        max_scale_up_rate: float = 1000.0,
        max_scale_down_rate: float = 2.0,
        min_scale: int = 1,
        max_scale: int = 0,
        scale_down_delay: float = 0.0,
        scale_to_zero_grace_period: float = 30.0,
        container_concurrency_target_default: float = 100.0,
        rps_target_default: float = 200.0,
        sync_period: float = 2.0,
    ) -> None:
        _check(metric in METRICS, "metric", metric, "use concurrency or rps")
        _check(target is None or target >= TARGET_MIN, "target", target, f"use {TARGET_MIN} or more")
        _check(0 <= container_concurrency <= 1000, "container_concurrency", container_concurrency, "use 0 to 1000")
        _check(1 <= target_utilization <= 100, "target_utilization", target_utilization, "use 1 to 100 (percent)")
        _check(
            6 <= stable_window <= 3600 and stable_window == int(stable_window),
            "stable_window",
            stable_window,
            "use whole seconds from 6 to 3600",
        )
        _check(1 <= panic_window_percentage <= 100, "panic_window_percentage", panic_window_percentage, "use 1 to 100")
        _check(
            110 <= panic_threshold_percentage <= 1000,
            "panic_threshold_percentage",
            panic_threshold_percentage,
            "use 110 to 1000",
        )
        _check(max_scale_up_rate > 1, "max_scale_up_rate", max_scale_up_rate, "use more than 1")
        _check(max_scale_down_rate > 1, "max_scale_down_rate", max_scale_down_rate, "use more than 1")
        _check(min_scale >= 0, "min_scale", min_scale, "use 0 (scale to zero) or more")
        _check(
            max_scale == 0 or max_scale >= min_scale, "max_scale", max_scale, "use 0 (no limit) or min_scale or more"
        )
        _check(
            0 <= scale_down_delay <= 3600 and scale_down_delay == int(scale_down_delay),
            "scale_down_delay",
            scale_down_delay,
            "use whole seconds from 0 to 3600",
        )
        _check(
            scale_to_zero_grace_period > 0, "scale_to_zero_grace_period", scale_to_zero_grace_period, "use more than 0"
        )
        _check(sync_period > 0, "sync_period", sync_period, "use more than 0 seconds")
        if metric == "rps":
            total = rps_target_default
        else:
            total = float(container_concurrency) or container_concurrency_target_default
        if target is not None:
            total = (
                min(target, float(container_concurrency))
                if metric == "concurrency" and container_concurrency
                else target
            )
        self.metric = metric
        self.total_value = total
        self.target_value = max(TARGET_MIN, total * target_utilization / 100)
        self.stable_window = int(stable_window)
        self.panic_window = max(1, math.floor(stable_window * panic_window_percentage / 100 + 0.5))
        self.panic_threshold = panic_threshold_percentage / 100
        self.max_scale_up_rate = max_scale_up_rate
        self.max_scale_down_rate = max_scale_down_rate
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.scale_down_delay = scale_down_delay
        self.scale_to_zero_grace_period = scale_to_zero_grace_period
        self.sync_period = sync_period
        self.last: KpaDecision | None = None
        self._stable = _WindowAverage(self.stable_window)
        self._panic = _WindowAverage(self.panic_window)
        self._panic_since: float | None = None
        self._max_panic_pods = 0
        self._started = False
        self._delayed: list[tuple[float, int]] = []
        self._zero_since: float | None = None
        self._ready: int | None = None

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any], **settings: Any) -> KnativePodAutoscaler:
        """Build from a revision's `autoscaling.knative.dev/*` annotations; `settings` are keyword arguments
        (cluster-wide config-autoscaler values and `container_concurrency`) that the annotations override."""
        if not isinstance(annotations, Mapping):
            raise PolicyError("annotations must be a mapping of autoscaling.knative.dev/* keys to strings")
        params = dict(settings)
        for key, raw in annotations.items():
            if not isinstance(key, str) or not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :]
            if name == "class" and str(raw) != KPA_CLASS:
                raise PolicyError(f"{key} is {raw!r}: this policy is the KPA, use {KPA_CLASS} or the hpa policy")
            if name in IGNORED:
                continue
            if name not in ANNOTATIONS:
                close = difflib.get_close_matches(name, list(ANNOTATIONS), n=1)
                hint = f"did you mean {PREFIX}{close[0]}?" if close else "remove it"
                raise PolicyError(f"{key} is not a KPA setting asgiscale models: {hint}")
            params[ANNOTATIONS[name]] = _annotation_value(key, ANNOTATIONS[name], raw)
        return cls(**params)

    from_spec = from_annotations

    # The seam the runtime drives (see asgiscale.policy.ScalingPolicy).
    def observe(self, now: float, samples: Sequence[Sequence[PodSample] | None]) -> None:
        if len(samples) != 1:
            raise ValueError(f"the KPA scales on one metric: expected one sample list, got {len(samples)}")
        pods = samples[0]
        if pods is None:
            return
        self.record(now, sum(pod.value * pod.count for pod in pods if pod.value is not None))
        self._ready = sum(pod.count for pod in pods if pod.ready)

    def decide(self, now: float, current_replicas: int) -> int:
        return self.sync(now, current_replicas if self._ready is None else self._ready)

    def record(self, now: float, value: float) -> None:
        """Add the metric's total over all pods at `now` (seconds); call it once a second."""
        self._stable.record(now, value)
        self._panic.record(now, value)

    def sync(self, now: float, ready_pods: int) -> int:
        """The desired pod count at `now` given the pods ready to serve."""
        if not self._started:
            self._started = True
            if ready_pods > 1:
                # Knative starts in panic over more than one pod: without history it keeps what runs.
                self._panic_since, self._max_panic_pods = now, ready_pods
        if self._stable.empty(now):
            desired = self._clamp(ready_pods)
            self.last = KpaDecision(now, ready_pods, desired, reason="no data in the stable window yet")
            return desired
        ready = max(1.0, float(ready_pods))
        stable = self._stable.average(now)
        panic = self._panic.average(now)
        max_up = math.ceil(self.max_scale_up_rate * ready)
        max_down = math.floor(ready / self.max_scale_down_rate)
        wanted_stable = math.ceil(stable / self.target_value)
        wanted_panic = math.ceil(panic / self.target_value)
        stable_pods = min(max(wanted_stable, max_down), max_up)
        panic_pods = min(max(wanted_panic, max_down), max_up)
        if wanted_panic / ready >= self.panic_threshold:
            self._panic_since = now
        elif self._panic_since is not None and self._panic_since + self.stable_window < now:
            self._panic_since, self._max_panic_pods = None, 0
        desired, reason = stable_pods, "stable"
        if self._panic_since is not None:
            self._max_panic_pods = max(self._max_panic_pods, stable_pods, panic_pods)
            desired, reason = self._max_panic_pods, "panic: never scales down"
        if self.scale_down_delay:
            self._delayed = [(t, n) for t, n in self._delayed if t > now - self.scale_down_delay]
            self._delayed.append((now, desired))
            delayed = max(n for _, n in self._delayed)
            if delayed != desired:
                desired, reason = delayed, f"{reason}; scale-down delayed"
        bounded = self._bounded(now, desired)
        if bounded != desired:
            reason = f"{reason}; bounded to [{self.min_scale}, {self.max_scale or 'no limit'}]"
        self.last = KpaDecision(
            now,
            ready_pods,
            bounded,
            stable,
            panic,
            self.target_value,
            stable_pods,
            panic_pods,
            max_up,
            max_down,
            self._panic_since is not None,
            reason,
        )
        return bounded

    def _clamp(self, desired: int) -> int:
        desired = max(desired, self.min_scale)
        return min(desired, self.max_scale) if self.max_scale else desired

    def _bounded(self, now: float, desired: int) -> int:
        desired = self._clamp(desired)
        if desired > 0:
            self._zero_since = None
            return desired
        # Scale to zero (min_scale 0): one pod stays until zero has been wanted for the grace period.
        if self._zero_since is None:
            self._zero_since = now
        return 0 if now - self._zero_since >= self.scale_to_zero_grace_period else 1


def _check(ok: bool, name: str, value: object, fix: str) -> None:
    if not ok:
        annotation = next((PREFIX + k for k, v in ANNOTATIONS.items() if v == name), None)
        where = f"{name} ({annotation})" if annotation else name
        raise PolicyError(f"{where} is {value!r}: {fix}")


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _annotation_value(key: str, name: str, raw: object) -> Any:
    text = str(raw).strip()
    try:
        if name == "metric":
            return text
        if name in ("min_scale", "max_scale"):
            return int(text)
        if name in ("stable_window", "scale_down_delay"):
            return _duration(text)
        return float(text)
    except ValueError:
        raise PolicyError(f"{key} is {raw!r}: write a {_KINDS.get(name, 'number')}") from None


_KINDS = {"min_scale": "whole number", "max_scale": "whole number", "stable_window": "duration such as 60s or 1m30s"}
_KINDS["scale_down_delay"] = _KINDS["stable_window"]


def _duration(text: str) -> float:
    """A Go duration ("60s", "1m30s", "0") in seconds."""
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    return sum(float(number) * _UNITS[unit] for number, unit in parts)
