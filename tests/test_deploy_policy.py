"""One source of truth: the HPA written into hpa.yaml decides as the runtime's own policy does."""

from __future__ import annotations

import random

import pytest
import yaml

from asgiscale.config import Config
from asgiscale.deploy import render
from asgiscale.deploy.options import DeployOptions
from asgiscale.policy import HorizontalPodAutoscaler, PodSample

BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 5, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 10}]},
    "scaleDown": {
        "stabilizationWindowSeconds": 30,
        "selectPolicy": "Min",
        "policies": [
            {"type": "Percent", "value": 50, "periodSeconds": 15},
            {"type": "Pods", "value": 1, "periodSeconds": 5},
        ],
    },
}


@pytest.mark.parametrize("behavior", [None, BEHAVIOR], ids=["no behavior", "behavior"])
@pytest.mark.parametrize("targets", [("cpu=70",), ("concurrency=8", "rps=40.5")])
def test_the_written_hpa_and_the_runtime_policy_decide_alike(behavior: object, targets: tuple[str, ...]) -> None:
    config = Config(
        app="main:app",
        min_workers=2,
        max_workers=12,
        scale_targets=targets,
        scale={"behavior": behavior} if behavior else None,
        scale_sync_period=15,
    )
    # One worker per pod and one core requested: a pod carries exactly what a worker does.
    options = DeployOptions(image="r.example/shop:1.0", cpu_request="1", cpu_limit="2")
    manifest = yaml.safe_load(render("kubernetes", config, options)["hpa.yaml"])
    assert manifest["kind"] == "HorizontalPodAutoscaler" and "replicas" not in manifest["spec"]
    written = HorizontalPodAutoscaler.from_spec(manifest["spec"], sync_period=15)
    runtime = config.scaling_policy()
    rng = random.Random(f"{targets}{behavior}")
    for trace in range(40):
        current = rng.randint(2, 12)
        for step in range(30):
            now = trace * 10_000 + step * 15.0
            samples = [
                [
                    PodSample(None if rng.random() < 0.05 else rng.uniform(0, 3) * t.value, ready=rng.random() > 0.1)
                    for _ in range(current)
                ]
                for t in config.targets
            ]
            runtime.observe(now, samples)
            decided = runtime.decide(now, current)
            assert written.sync(now, current, samples) == decided, (trace, step)
            current = decided
