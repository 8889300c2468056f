"""Scaling policies: pure decisions from readings and a time the caller passes in (no I/O, no clock, no sleep).

`POLICIES` maps a policy name to the function that builds it from its spec: the `spec` of an autoscaling/v2
HorizontalPodAutoscaler for "hpa", a revision's `autoscaling.knative.dev/*` annotations for "kpa". The runtime,
`deploy` and `simulate` drive either through `ScalingPolicy`.

    >>> policy = POLICIES["hpa"]({"maxReplicas": 8})
    >>> policy.observe(0.0, [[PodSample(160.0), PodSample(160.0)]])
    >>> policy.decide(0.0, 2)  # cpu at twice the default 80 % target
    4
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from asgiscale.policy.hpa import HorizontalPodAutoscaler, HpaDecision, PodSample, PolicyError
from asgiscale.policy.kpa import KnativePodAutoscaler, KpaDecision


class ScalingPolicy(Protocol):
    """What the runtime drives: per-worker readings every tick, a decision every `sync_period` seconds."""

    sync_period: float

    def observe(self, now: float, samples: Sequence[Sequence[PodSample] | None]) -> None:
        """The latest reading of each metric: one `PodSample` per worker, None when it could not be read."""

    def decide(self, now: float, current_replicas: int) -> int:
        """The replica count to run now; the policy's `last` attribute explains it."""


POLICIES: dict[str, Callable[[Mapping[str, Any]], ScalingPolicy]] = {
    "hpa": HorizontalPodAutoscaler.from_spec,
    "kpa": KnativePodAutoscaler.from_annotations,
}

__all__ = [
    "HorizontalPodAutoscaler",
    "HpaDecision",
    "KnativePodAutoscaler",
    "KpaDecision",
    "POLICIES",
    "PodSample",
    "PolicyError",
    "ScalingPolicy",
]
