"""Scaling policies: pure decisions from readings and a time the caller passes in (no I/O, no clock, no sleep)."""

from __future__ import annotations

from asgiscale.policy.hpa import HorizontalPodAutoscaler, HpaDecision, PodSample, PolicyError

__all__ = ["HorizontalPodAutoscaler", "HpaDecision", "PodSample", "PolicyError"]
