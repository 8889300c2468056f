"""Each public package re-exports its API in a sorted `__all__`, pinned here."""

import importlib

import pytest

PINNED = {
    "asgiscale": ["Config", "ConfigError", "__version__", "run"],
    "asgiscale.bench": [
        "Capacity",
        "CapacitySearch",
        "Histogram",
        "LoadGenerator",
        "Objective",
        "ObjectiveError",
        "Recommendation",
        "Step",
        "StepResult",
        "Target",
        "TargetError",
        "Verdict",
        "judge",
        "parse_objectives",
        "recommend",
        "run_step",
    ],
    "asgiscale.policy": [
        "HorizontalPodAutoscaler",
        "HpaDecision",
        "KnativePodAutoscaler",
        "KpaDecision",
        "POLICIES",
        "PodSample",
        "PolicyError",
        "ScalingPolicy",
    ],
    "asgiscale.serverless": [
        "CloudFunction",
        "EventError",
        "LambdaHandler",
        "LifespanError",
        "MalformedEvent",
        "UnsupportedEvent",
        "cloud_function",
        "lambda_handler",
    ],
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_public_api_is_pinned(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    assert module.__all__ == PINNED[name]
    for attribute in module.__all__:
        assert hasattr(module, attribute)
