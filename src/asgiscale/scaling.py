"""The scaling policy of a Config, as one value every part of asgiscale reads.

`asgiscale run` executes it on workers, `asgiscale deploy` writes it as the `spec` of a
Kubernetes HorizontalPodAutoscaler, `asgiscale simulate` replays it. The policy is
written in the HPA's own vocabulary: targets per worker (or pod) for CPU utilization,
in-flight requests or request rate, and the `behavior` block of an autoscaling/v2 HPA
(stabilization windows, Pods/Percent rate limits, selectPolicy), camelCase as in YAML:

    # asgiscale.toml
    min_workers = 1
    max_workers = 8
    scale_targets = ["concurrency=16"]

    [scale.behavior.scaleDown]
    stabilizationWindowSeconds = 60
    policies = [{ type = "Percent", value = 50, periodSeconds = 15 }]

    >>> spec = hpa_spec(min_replicas=1, max_replicas=8, targets=parse_targets(["cpu=70"]), table={})
    >>> spec["metrics"][0]["resource"]["target"]
    {'type': 'Utilization', 'averageUtilization': 70}
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from asgiscale.policy import HorizontalPodAutoscaler, KnativePodAutoscaler, ScalingPolicy
from asgiscale.policy.kpa import PREFIX as KNATIVE_PREFIX

# What each worker (or pod) is measured by, and the metric name a Kubernetes metrics adapter
# serves it under (`None`: the resource metric of the metrics server).
METRICS: dict[str, str | None] = {
    "cpu": None,  # % of one core (of the CPU request on Kubernetes)
    "concurrency": "http_server_active_requests",  # requests in flight
    "rps": "http_server_requests_per_second",  # requests received per second (docs/scaling.md)
}
DEFAULT_TARGETS = {"hpa": ("cpu=70",), "kpa": ("concurrency=100",)}
# Keys of the `scale` table in the config file.
TABLE_KEYS = ("behavior", "tolerance", "kpa", "capacity")
# Keys of `scale.capacity`: what `asgiscale bench --write-config` measured (see asgiscale.bench.recommend).
CAPACITY_KEYS = ("objective", "measured", "rps_per_worker", "concurrency_per_worker", "cpu_per_worker",
                 "peak_rps", "replicas_at_peak")  # fmt: skip


class ScaleError(ValueError):
    """A scaling setting that cannot be used; one line naming it and the fix."""


@dataclasses.dataclass(frozen=True)
class Target:
    """The value of `metric` one worker should carry on average."""

    metric: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}={self.value:g}"


def parse_targets(texts: Iterable[str]) -> tuple[Target, ...]:
    """`["cpu=70", "rps=200"]` -> targets; at most one per metric."""
    targets: dict[str, Target] = {}
    for text in texts:
        name, sep, raw = text.partition("=")
        name = name.strip().lower()
        if name not in METRICS or not sep:
            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f"did you mean '{close[0]}=…'?" if close else f"use one of {', '.join(m + '=N' for m in METRICS)}"
            raise ScaleError(f"scale target {text!r} is not METRIC=VALUE with a known metric; {hint}")
        try:
            value = float(raw)
        except ValueError:
            raise ScaleError(f"scale target {text!r} needs a number after '=' (like {name}=10)") from None
        if not value > 0 or value == float("inf"):
            raise ScaleError(f"scale target {text!r} must be a positive number")
        if name == "cpu" and value != int(value):
            raise ScaleError(f"scale target {text!r}: CPU utilization is a whole percent, like cpu=70")
        if name in targets:
            raise ScaleError(f"scale target '{name}' is given twice; keep one")
        targets[name] = Target(name, value)
    return tuple(targets.values())


def check_table(table: Mapping[str, Any]) -> None:
    for key in table:
        _known(key, TABLE_KEYS, "the scale table")
    for key in ("behavior", "kpa", "capacity"):
        if not isinstance(table.get(key, {}), Mapping):
            raise ScaleError(f"'scale.{key}' must be a table")
    for key, value in table.get("capacity", {}).items():
        _known(key, CAPACITY_KEYS, "scale.capacity")
        if key not in ("objective", "measured") and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        ):
            raise ScaleError(f"'scale.capacity.{key}' must be a positive number, got {value!r}")


def _known(key: str, keys: tuple[str, ...], where: str) -> None:
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"the keys are {', '.join(keys)}"
        raise ScaleError(f"unknown key '{key}' in {where}; {hint}")


def capacity(table: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The measured `scale.capacity` table (empty when none was written)."""
    found: Mapping[str, Any] = (table or {}).get("capacity", {})
    return found


def hpa_spec(
    *, min_replicas: int, max_replicas: int, targets: Iterable[Target], table: Mapping[str, Any]
) -> dict[str, Any]:
    """The `spec` of an autoscaling/v2 HorizontalPodAutoscaler for these targets (no scaleTargetRef)."""
    spec: dict[str, Any] = {
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": [metric_spec(t) for t in targets],
    }
    if table.get("behavior"):
        spec["behavior"] = dict(table["behavior"])
    return spec


def build_policy(
    kind: str,
    *,
    min_replicas: int,
    max_replicas: int,
    targets: tuple[Target, ...],
    table: Mapping[str, Any],
    sync_period: float,
) -> ScalingPolicy:
    """A fresh policy object (it keeps its own history) for `kind` "hpa" or "kpa"; raises `PolicyError`."""
    if kind == "kpa":
        settings = dict(table.get("kpa", {}))
        for key in ("min-scale", "minScale", "max-scale", "maxScale", "metric", "target"):
            if key in settings:
                raise ScaleError(f"'scale.kpa.{key}' is set by min_workers, max_workers or scale_targets; remove it")
        annotations = {KNATIVE_PREFIX + key: value for key, value in settings.items()}
        (target,) = targets
        annotations[KNATIVE_PREFIX + "metric"] = target.metric
        annotations[KNATIVE_PREFIX + "target"] = f"{target.value:g}"
        return KnativePodAutoscaler.from_annotations(
            annotations, min_scale=min_replicas, max_scale=max_replicas, sync_period=sync_period
        )
    spec = hpa_spec(min_replicas=min_replicas, max_replicas=max_replicas, targets=targets, table=table)
    flags: dict[str, Any] = {"sync_period": sync_period}
    if "tolerance" in table:
        flags["tolerance"] = table["tolerance"]
    return HorizontalPodAutoscaler.from_spec(spec, **flags)


def cpu_request(cores: float) -> str:
    """A CPU request that covers `cores`: rounded up to 10 millicores, as a Kubernetes quantity."""
    return quantity(max(10, math.ceil(round(cores * 1000, 6) / 10) * 10) / 1000)


def measured_resources(table: Mapping[str, Any] | None, workers: int) -> dict[str, str]:
    """The CPU request (and a limit no lower) of a pod of `workers` workers, from `scale.capacity`."""
    cores = capacity(table).get("cpu_per_worker")
    if not cores:
        return {}
    request = cpu_request(cores * workers)
    return {"cpu_request": request} if cores * workers <= 1 else {"cpu_request": request, "cpu_limit": request}


def quantity(value: float) -> str:
    """A Kubernetes quantity for `value`: whole numbers as is, fractions in milli-units."""
    if value == int(value):
        return str(int(value))
    return f"{round(value * 1000)}m"


def metric_spec(target: Target) -> dict[str, Any]:
    """One item of an HPA's `spec.metrics` for `target` per pod."""
    name = METRICS[target.metric]
    if name is None:
        return {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": int(target.value)}},
        }
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": quantity(target.value)}},
    }
