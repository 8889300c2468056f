"""The `spec` of an autoscaling/v2 HorizontalPodAutoscaler read into the controller's terms: metrics in
integer units (percent, milli-units), `behavior` with the API defaults filled in, Kubernetes quantities parsed,
and every mistake a `PolicyError` naming the field and the fix."""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_SECONDS = 3600
METRIC_TYPES = ("Resource", "ContainerResource", "Pods", "Object", "External")
SELECT_POLICIES = ("Max", "Min", "Disabled")
POLICY_TYPES = ("Pods", "Percent")


class PolicyError(ValueError):
    """An impossible or malformed scaling policy; the one-line message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Rules:
    """One direction of `spec.behavior`, API defaults filled in."""

    stabilization: float | None  # seconds; None: the controller's --horizontal-pod-autoscaler-downscale-stabilization
    select: str
    policies: tuple[tuple[str, int, int], ...]  # (type, value, periodSeconds)
    tolerance: float | None


@dataclasses.dataclass(frozen=True)
class Metric:
    """One item of `spec.metrics`: its source type, name and target in the controller's integer units."""

    source: str
    name: str
    target_type: str  # Utilization, AverageValue or Value
    target: int  # percent for Utilization, milli-units otherwise
    cpu: bool  # unready pods are set aside for the cpu resource only

    @property
    def label(self) -> str:
        return f"{self.source} {self.name} ({self.target_type})"


# Parsing and validation of the spec --------------------------------------------------------------------------

_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
_SCALE = {
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "": decimal.Decimal(1),
    "k": decimal.Decimal(10**3),
    "M": decimal.Decimal(10**6),
    "G": decimal.Decimal(10**9),
    "T": decimal.Decimal(10**12),
    "P": decimal.Decimal(10**15),
    "E": decimal.Decimal(10**18),
    **{suffix: decimal.Decimal(2 ** (10 * (i + 1))) for i, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def parse_quantity(value: object, field: str = "quantity") -> decimal.Decimal:
    """A Kubernetes quantity ("500m", "1k", "2Gi", "1e3", 0.5) as an exact decimal."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PolicyError(f"{field} must be a Kubernetes quantity such as 500m, 2, 1k or 2Gi, not {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise PolicyError(f"{field} is {value!r}: use a finite quantity such as 500m, 2, 1k or 2Gi")
        return decimal.Decimal(repr(value)) if isinstance(value, float) else decimal.Decimal(value)
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise PolicyError(f"{field} {value!r} is not a Kubernetes quantity: write it like 500m, 2, 1k or 2Gi")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return decimal.Decimal(number) * decimal.Decimal(10) ** int(suffix[1:])
    return decimal.Decimal(number) * _SCALE[suffix]


def _positive_milli(value: object, field: str) -> int:
    milli = int((parse_quantity(value, field) * 1000).to_integral_value(decimal.ROUND_CEILING))
    if milli <= 0:
        raise PolicyError(f"{field} is {value!r}: a target must be positive")
    return milli


def integer(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{field} must be a whole number, not {value!r}")
    return value


def _section(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{field} is missing or not a mapping: add it as in the autoscaling/v2 API")
    return value


def parse_metric(item: object, field: str) -> Metric:
    spec = _section(item, field)
    source = spec.get("type")
    if source not in METRIC_TYPES:
        raise PolicyError(f"{field}.type {source!r} is unknown: use one of {', '.join(METRIC_TYPES)}")
    key = source[0].lower() + source[1:]
    body = _section(spec.get(key), f"{field}.{key}")
    field = f"{field}.{key}"
    if source in ("Resource", "ContainerResource"):
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{field}.name is required: the resource name, e.g. cpu or memory")
        if source == "ContainerResource" and not body.get("container"):
            raise PolicyError(f"{field}.container is required: the name of the container to measure")
        allowed: tuple[str, ...] = ("Utilization", "AverageValue")
    else:
        name = _section(body.get("metric"), f"{field}.metric").get("name")
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{field}.metric.name is required: the name of the metric")
        allowed = ("AverageValue",) if source == "Pods" else ("Value", "AverageValue")
    target = _section(body.get("target"), f"{field}.target")
    kind = target.get("type")
    if kind not in allowed:
        raise PolicyError(
            f"{field}.target.type {kind!r} is not allowed for {source} metrics: use {' or '.join(allowed)}"
        )
    if kind == "Utilization":
        percent = target.get("averageUtilization")
        if isinstance(percent, bool) or not isinstance(percent, int) or percent <= 0:
            raise PolicyError(f"{field}.target.averageUtilization must be a whole percent above 0, not {percent!r}")
        value = percent
    else:
        attribute = "value" if kind == "Value" else "averageValue"
        if attribute not in target:
            raise PolicyError(f"{field}.target.{attribute} is required for a {kind} target: set it, e.g. to 500m")
        value = _positive_milli(target[attribute], f"{field}.target.{attribute}")
    return Metric(source, name, kind, value, cpu=source in ("Resource", "ContainerResource") and name == "cpu")


def parse_behavior(item: object) -> tuple[Rules, Rules]:
    spec = _section(item, "spec.behavior")
    up = _parse_rules(spec.get("scaleUp"), "spec.behavior.scaleUp", 0.0, (("Pods", 4, 15), ("Percent", 100, 15)))
    down = _parse_rules(spec.get("scaleDown"), "spec.behavior.scaleDown", None, (("Percent", 100, 15),))
    return up, down


def _parse_rules(item: object, field: str, window: float | None, policies: tuple[tuple[str, int, int], ...]) -> Rules:
    if item is None:
        return Rules(window, "Max", policies, None)
    spec = _section(item, field)
    if spec.get("stabilizationWindowSeconds") is not None:
        seconds = integer(spec["stabilizationWindowSeconds"], f"{field}.stabilizationWindowSeconds")
        if not 0 <= seconds <= MAX_STABILIZATION_SECONDS:
            raise PolicyError(
                f"{field}.stabilizationWindowSeconds is {seconds}: use 0 to {MAX_STABILIZATION_SECONDS} seconds"
            )
        window = float(seconds)
    select = spec.get("selectPolicy", "Max")
    if select not in SELECT_POLICIES:
        raise PolicyError(f"{field}.selectPolicy {select!r} is unknown: use Max, Min or Disabled")
    if spec.get("policies") is not None:
        items = spec["policies"]
        if not isinstance(items, list) or not items:
            raise PolicyError(
                f"{field}.policies must list at least one policy, e.g. {{type: Pods, value: 4, periodSeconds: 60}}"
            )
        policies = tuple(_parse_policy(item, f"{field}.policies[{i}]") for i, item in enumerate(items))
    tolerance = None
    if spec.get("tolerance") is not None:
        tolerance = float(parse_quantity(spec["tolerance"], f"{field}.tolerance"))
        if tolerance < 0:
            raise PolicyError(f"{field}.tolerance is {spec['tolerance']!r}: use 0 or more, e.g. 0.05 for 5 %")
    return Rules(window, select, policies, tolerance)


def _parse_policy(item: object, field: str) -> tuple[str, int, int]:
    spec = _section(item, field)
    kind = spec.get("type")
    if kind not in POLICY_TYPES:
        raise PolicyError(f"{field}.type {kind!r} is unknown: use Pods or Percent")
    value = integer(spec.get("value"), f"{field}.value")
    if value <= 0:
        raise PolicyError(f"{field}.value is {value}: use a whole number above 0")
    period = integer(spec.get("periodSeconds"), f"{field}.periodSeconds")
    if not 0 < period <= MAX_PERIOD_SECONDS:
        raise PolicyError(f"{field}.periodSeconds is {period}: use a whole number of seconds from 1 to 1800")
    return kind, value, period
