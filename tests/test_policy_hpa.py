"""The Kubernetes HPA model: the documented examples, the controller's rules, and properties over random traces."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgiscale.policy.hpa import HorizontalPodAutoscaler, PodSample, PolicyError, parse_quantity

# The Kubernetes pages the examples come from.
HPA_PAGE = "https://kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/"
WALKTHROUGH = "https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale-walkthrough/"
API_REFERENCE = "https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/horizontal-pod-autoscaler-v2/"
MI = 2**20


def cpu(percent: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}},
    }


def pods_metric(average: object, name: str = "queue") -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": average}},
    }


def external(kind: str, amount: object, name: str = "queue_messages_ready") -> dict[str, Any]:
    key = "value" if kind == "Value" else "averageValue"
    return {"type": "External", "external": {"metric": {"name": name}, "target": {"type": kind, key: amount}}}


def hpa(*metrics: dict[str, Any], behavior: Any = None, **spec: Any) -> HorizontalPodAutoscaler:
    flags = {k: spec.pop(k) for k in ("tolerance", "downscale_stabilization") if k in spec}
    body = {"minReplicas": 1, "maxReplicas": 100, "metrics": list(metrics), **spec}
    if behavior is not None:
        body["behavior"] = behavior
    return HorizontalPodAutoscaler.from_spec(body, **flags)


def same(value: float | None, count: int) -> list[PodSample]:
    return [PodSample(value) for _ in range(count)]


def run(policy: HorizontalPodAutoscaler, current: int, load: Any, until: float, step: float = 15.0) -> list[int]:
    """Sync every `step` seconds from 0 to `until`, applying each decision; `load(current)` gives the samples."""
    counts = [current]
    now = 0.0
    while now <= until:
        current = policy.sync(now, current, load(current))
        counts.append(current)
        now += step
    return counts


def distinct(counts: Sequence[int]) -> list[int]:
    return [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]


# The documented examples ------------------------------------------------------------------------------------


def test_200m_against_100m_doubles_and_50m_halves() -> None:
    # HPA_PAGE#algorithm-details: "if the current metric value is 200m, and the desired value is 100m, the number
    # of replicas will be doubled ... If the current value is instead 50m, you'll halve the number of replicas".
    assert hpa(pods_metric("100m")).sync(0.0, 4, [same(0.2, 4)]) == 8
    halving = hpa(pods_metric("100m"), downscale_stabilization=0)
    assert halving.sync(0.0, 4, [same(0.05, 4)]) == 2
    assert halving.last is not None and halving.last.metrics[0].ratio == 0.5


def test_walkthrough_305_percent_against_50_goes_to_7_then_back_to_1() -> None:
    # WALKTHROUGH: one php-apache pod at 305 % of its cpu request against a 50 % target is resized to 7 replicas
    # (kubectl autoscale makes no `behavior`, so the 2x-or-4 cap per sync applies on the way), and back to 1 once
    # the load stops, after the 5 minute downscale stabilization.
    policy = hpa(cpu(50), maxReplicas=10)
    assert policy.sync(0.0, 1, [[PodSample(305.0)]]) == 4
    assert policy.last is not None
    assert (policy.last.metrics[0].proposal, policy.last.limit) == (7, "ScaleUpLimit")
    assert policy.sync(15.0, 4, [same(305.0 / 4, 4)]) == 7  # 76 % each: ceil(4 x 76/50) = 7
    assert policy.sync(30.0, 7, [same(305.0 / 7, 7)]) == 7  # 43 % each: ceil(7 x 43/50) = 7
    idle = [policy.sync(t, 7, [same(0.0, 7)]) for t in range(45, 316, 15)]
    assert set(idle) == {7}  # a recommendation of 7 is still inside the 300 s window
    assert policy.sync(331.0, 7, [same(0.0, 7)]) == 1


def test_scale_down_by_max_of_4_pods_and_10_percent_per_minute_80_72_64_57_51_45() -> None:
    # HPA_PAGE#scaling-policies: 80 replicas scaled down to 10: 8 pods go in the first step, 8 again from 72, then
    # the counts shrink by 10 % (truncated) until under 40, where the Pods policy (4 at a time) allows more.
    behavior = {
        "scaleDown": {
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 10, "periodSeconds": 60},
            ]
        }
    }
    policy = hpa(external("AverageValue", 1), behavior=behavior)
    counts = run(policy, 80, lambda current: [[PodSample(10.0)]], until=1500)
    assert distinct(counts) == [80, 72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]
    # The default 300 s scale-down window holds the first step back; then one step per 60 s period.
    first = counts.index(72) - 1
    assert first * 15 == 300
    assert counts[first + 1 : first + 6] == [72, 72, 72, 72, 64]


def test_select_policy_min_removes_no_more_than_5_pods_per_minute() -> None:
    # HPA_PAGE#example-limit-scale-down-rate: Percent 10 and Pods 5 per 60 s with selectPolicy Min.
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Min",
            "policies": [
                {"type": "Percent", "value": 10, "periodSeconds": 60},
                {"type": "Pods", "value": 5, "periodSeconds": 60},
            ],
        }
    }
    policy = hpa(external("AverageValue", 1), behavior=behavior)
    counts = run(policy, 100, lambda current: [[PodSample(1.0)]], until=600, step=60)
    assert distinct(counts)[:6] == [100, 95, 90, 85, 80, 75]
    policy = hpa(external("AverageValue", 1), behavior=behavior)
    assert policy.sync(0.0, 40, [[PodSample(1.0)]]) == 36  # 10 % is the smaller change under 50


def test_select_policy_disabled_turns_a_direction_off() -> None:
    # HPA_PAGE#example-disable-scale-down
    policy = hpa(cpu(50), behavior={"scaleDown": {"selectPolicy": "Disabled"}})
    assert set(run(policy, 10, lambda current: [same(1.0, current)], until=1200)) == {10}
    assert policy.last is not None and policy.last.limit == "ScaleDownLimit"
    policy = hpa(cpu(50), behavior={"scaleUp": {"selectPolicy": "Disabled"}})
    assert policy.sync(0.0, 3, [same(500.0, 3)]) == 3


def test_default_behavior_adds_4_pods_or_doubles_every_15_seconds() -> None:
    # HPA_PAGE#default-behavior: scale-up policies 100 % or 4 pods per 15 s, whichever is more.
    policy = hpa(cpu(10), behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    assert distinct(run(policy, 1, lambda current: [same(1000.0, current)], until=60)) == [1, 5, 10, 20, 40, 80]


def test_per_direction_tolerance_from_the_api_reference() -> None:
    # API_REFERENCE, behavior.scaleUp.tolerance: a 100Mi memory target with scale-down and scale-up tolerances of
    # 5 % and 1 % scales when consumption falls below 95Mi or exceeds 101Mi.
    behavior = {"scaleDown": {"tolerance": "0.05", "stabilizationWindowSeconds": 0}, "scaleUp": {"tolerance": 0.01}}
    memory = {
        "type": "Resource",
        "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}},
    }

    def decide(mebibytes: float, **flags: Any) -> int:
        return hpa(memory, behavior=behavior, **flags).sync(0.0, 20, [same(mebibytes * MI, 20)])

    assert [decide(m) for m in (96, 100.5, 94, 102)] == [20, 20, 19, 21]
    assert decide(94, tolerance=0.5) == 19 and decide(96, tolerance=0.0) == 20  # the fields win over the flag


def test_global_tolerance_leaves_replicas_unchanged_within_the_band() -> None:
    policy = hpa(cpu(50), downscale_stabilization=0)
    assert policy.sync(0.0, 10, [same(55.0, 10)]) == 10  # ratio 1.1: within 10 %
    assert policy.sync(15.0, 10, [same(45.0, 10)]) == 10  # ratio 0.9
    assert policy.sync(30.0, 10, [same(56.0, 10)]) == 12  # ratio 1.12
    assert hpa(cpu(50), tolerance=0.2).sync(0.0, 10, [same(56.0, 10)]) == 10


# The controller's rules ---------------------------------------------------------------------------------------


def test_utilization_is_an_integer_percent() -> None:
    # (51 + 52) / 2 = 51.5 % is 51 % for the controller: ratio 51/40, ceil(2 x 1.275) = 3.
    policy = hpa(cpu(40))
    assert policy.sync(0.0, 2, [[PodSample(51.0), PodSample(52.0)]]) == 3
    assert policy.last is not None and policy.last.metrics[0].current == 51.0


def test_missing_metrics_count_as_the_request_on_a_scale_down_and_zero_on_a_scale_up() -> None:
    # Two pods at 10 % against a 50 % target would go to 1; with a third pod missing its metric (counted at 100 % of
    # its request on the way down) the average is 40 %: ceil(3 x 0.8) = 3, no change.
    policy = hpa(cpu(50), downscale_stabilization=0)
    assert policy.sync(0.0, 3, [[PodSample(None), PodSample(10.0), PodSample(10.0)]]) == 3
    assert hpa(cpu(50), downscale_stabilization=0).sync(0.0, 2, [same(10.0, 2)]) == 1
    # Above target with two pods missing: counted at 0 they reverse the direction, so nothing changes, where the
    # ready pod alone would have asked for ceil(1.2) = 2.
    assert (
        hpa(cpu(50), downscale_stabilization=0).sync(0.0, 3, [[PodSample(None), PodSample(None), PodSample(60.0)]]) == 3
    )


def test_missing_pods_metric_counts_as_exactly_the_target_on_a_scale_down() -> None:
    # Ready pods alone: ceil(3 x 2/10) = 1; with the missing one at 10: (2 + 2 + 2 + 10) / 4 = 4 -> ceil(4 x 0.4) = 2.
    policy = hpa(pods_metric(10), downscale_stabilization=0)
    assert policy.sync(0.0, 4, [[PodSample(None), PodSample(2.0), PodSample(2.0), PodSample(2.0)]]) == 2


def test_unready_pods_are_set_aside_for_cpu_and_count_zero_on_a_scale_up() -> None:
    starting = [PodSample(300.0, ready=False), PodSample(300.0, ready=False)]
    # Their 300 % (start-up cost) is ignored: 2 x 100 % + 2 x 0 over 4 pods is the 50 % target.
    assert hpa(cpu(50)).sync(0.0, 4, [[*starting, PodSample(100.0), PodSample(100.0)]]) == 4
    # Above target by 20 % without them, below with them at 0: no scale down out of a scale-up.
    assert hpa(cpu(50)).sync(0.0, 4, [[*starting, PodSample(60.0), PodSample(60.0)]]) == 4
    # Well above target: (2 x 150 + 0 + 0) / 4 = 75 % -> ceil(4 x 1.5) = 6, where their 300 % would have made 18.
    assert hpa(cpu(50)).sync(0.0, 4, [[*starting, PodSample(150.0), PodSample(150.0)]]) == 6


def test_unready_pods_with_a_value_count_for_other_metrics() -> None:
    # The controller sets a not-ready pod's sample aside for cpu only; other metrics use it as it is.
    samples = [PodSample(30.0, ready=False), PodSample(10.0)]
    assert hpa(pods_metric(10)).sync(0.0, 2, [samples]) == 4  # (30 + 10) / 2 = 20 per pod against 10
    memory = {
        "type": "Resource",
        "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 50}},
    }
    assert hpa(memory).sync(0.0, 2, [[PodSample(150.0, ready=False), PodSample(50.0)]]) == 4
    # Not ready and no value: a pod still pending, set aside for every metric (and 0 on a scale-up).
    assert hpa(pods_metric(10)).sync(0.0, 2, [[PodSample(None, ready=False), PodSample(40.0)]]) == 4


def test_no_usable_pod_or_no_fetch_is_an_invalid_metric() -> None:
    policy = hpa(cpu(50))
    assert policy.sync(0.0, 3, [None]) == 3
    assert policy.last is not None and policy.last.limit == "InvalidMetrics"
    assert policy.sync(15.0, 3, [[PodSample(None, ready=False)] * 3]) == 3
    assert policy.sync(30.0, 3, [[]]) == 3


def test_several_metrics_take_the_max_and_an_invalid_one_blocks_only_scale_down() -> None:
    policy = hpa(cpu(50), pods_metric(10), downscale_stabilization=0)
    assert policy.sync(0.0, 4, [same(100.0, 4), same(5.0, 4)]) == 8  # cpu wants 8, the queue 2
    assert policy.last is not None and [m.proposal for m in policy.last.metrics] == [8, 2]
    assert policy.sync(15.0, 8, [same(50.0, 8), same(30.0, 8)]) == 16  # cpu 8, queue 24 capped by 2 x 8
    # The queue cannot be read: cpu asking for fewer pods is not trusted, cpu asking for more is.
    assert policy.sync(30.0, 16, [same(10.0, 16), None]) == 16
    assert policy.last is not None and policy.last.limit == "InvalidMetrics"
    assert policy.sync(45.0, 16, [same(100.0, 16), None]) == 32


def test_min_and_max_clamp_and_zero_replicas_disable_scaling() -> None:
    policy = hpa(cpu(50), minReplicas=2, maxReplicas=6)
    assert policy.sync(0.0, 3, [same(500.0, 3)]) == 6
    assert policy.last is not None and policy.last.limit == "TooManyReplicas"
    assert policy.sync(15.0, 9, [same(50.0, 9)]) == 6  # above maxReplicas: brought back
    assert policy.sync(30.0, 1, [same(50.0, 1)]) == 2
    assert policy.sync(45.0, 0, [[]]) == 0  # scaled to zero by hand: the HPA stays off
    assert policy.last is not None and policy.last.limit == "ScalingDisabled"
    assert hpa(cpu(50), minReplicas=2, downscale_stabilization=0).sync(0.0, 4, [same(1.0, 4)]) == 2


def test_without_behavior_scale_up_is_capped_at_twice_or_4_per_sync() -> None:
    policy = hpa(cpu(10))
    assert policy.sync(0.0, 1, [same(1000.0, 1)]) == 4
    assert policy.sync(15.0, 4, [same(1000.0, 4)]) == 8
    assert policy.sync(30.0, 8, [same(1000.0, 8)]) == 16


def test_without_behavior_scale_down_takes_the_highest_recommendation_of_the_window() -> None:
    policy = hpa(cpu(50))
    assert policy.sync(0.0, 10, [same(50.0, 10)]) == 10
    assert policy.sync(100.0, 10, [same(40.0, 10)]) == 10  # wants 8, 10 was recommended at 0 s
    assert policy.sync(301.0, 10, [same(35.0, 10)]) == 8  # 7 wanted, 8 recommended at 100 s
    assert policy.sync(401.0, 8, [same(35.0, 8)]) == 7


# Kubernetes compares times in whole nanoseconds: a recommendation made exactly one window ago is on the edge.
# stabilizeRecommendation (no behavior) drops only those before the cutoff, so it still counts;
# stabilizeRecommendationWithBehaviors keeps only those after it, so it does not. The starts put the syncs where
# float seconds miss the edge: (0.1 + 300.0) - 300.0 is above 0.1, (0.2 + 300.0) - 300.0 below 0.2.
@pytest.mark.parametrize("start", [0.0, 0.1, 0.2, 7.3])
@pytest.mark.parametrize(
    ("behavior", "at_the_edge"),
    [(None, 10), ({"scaleDown": {"stabilizationWindowSeconds": 300}}, 1)],
)
def test_a_recommendation_exactly_one_window_old(start: float, behavior: Any, at_the_edge: int) -> None:
    policy = hpa(cpu(50), behavior=behavior)
    current = policy.sync(start, 10, [same(50.0, 10)])  # recommends 10
    for k in range(1, 20):
        current = policy.sync(start + k * 15.0, current, [same(5.0, current)])  # recommends 1
        assert current == 10
    assert policy.sync(start + 300.0, 10, [same(5.0, 10)]) == at_the_edge
    assert policy.sync(start + 315.0, at_the_edge, [same(5.0, at_the_edge)]) == 1


@pytest.mark.parametrize("start", [0.0, 0.3])
def test_a_scale_event_exactly_one_period_old_no_longer_counts(start: float) -> None:
    # getReplicasChangePerPeriod counts the events after the cutoff: the pod added at `start` leaves the 60 s
    # period at start + 60 exactly, and one more pod is allowed.
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    policy = hpa(cpu(50), behavior=behavior)
    assert policy.sync(start, 1, [same(500.0, 1)]) == 2
    assert policy.sync(start + 59.0, 2, [same(500.0, 2)]) == 2
    assert policy.sync(start + 60.0, 2, [same(500.0, 2)]) == 3


def test_scale_up_stabilization_window_takes_the_lowest_recommendation() -> None:
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 60}}
    policy = hpa(cpu(50), behavior=behavior)
    assert policy.sync(0.0, 2, [same(50.0, 2)]) == 2
    assert policy.sync(15.0, 2, [same(200.0, 2)]) == 2  # a spike: 2 was recommended 15 s ago
    assert policy.last is not None and (policy.last.recommendation, policy.last.stabilized) == (8, 2)
    assert policy.sync(30.0, 2, [same(200.0, 2)]) == 2
    assert policy.sync(76.0, 2, [same(200.0, 2)]) == 6  # 2 left the window; 8 capped at 2 + 4 pods
    assert policy.last is not None and policy.last.limit == "ScaleUpLimit"


def test_scale_down_stabilization_window_with_behavior() -> None:
    policy = hpa(cpu(50), behavior={"scaleDown": {"stabilizationWindowSeconds": 120}})
    assert policy.sync(0.0, 10, [same(50.0, 10)]) == 10
    assert policy.sync(60.0, 10, [same(10.0, 10)]) == 10
    assert policy.sync(121.0, 10, [same(10.0, 10)]) == 2


def test_tolerances_fall_back_to_the_controller_flag() -> None:
    policy = hpa(cpu(50), behavior={"scaleUp": {"tolerance": 0.3}}, tolerance=0.05)
    assert policy.sync(0.0, 10, [same(60.0, 10)]) == 10  # 1.2 within the 30 % up tolerance
    down = hpa(cpu(50), behavior={}, tolerance=0.05, downscale_stabilization=0)
    assert down.sync(0.0, 20, [same(46.0, 20)]) == 19  # 0.92: outside 5 %, inside the default 10 %
    assert hpa(cpu(50), behavior={}, downscale_stabilization=0).sync(0.0, 20, [same(46.0, 20)]) == 20
    assert hpa(cpu(50), behavior={}, tolerance=0.05).sync(0.0, 10, [same(53.0, 10)]) == 11


def test_object_and_external_conventions() -> None:
    # WALKTHROUGH: one worker per 30 outstanding tasks of a hosted queue (External, AverageValue 30).
    assert hpa(external("AverageValue", 30)).sync(0.0, 1, [[PodSample(95.0)]]) == 4
    # Series matching the selector are summed.
    assert hpa(external("AverageValue", 30)).sync(0.0, 1, [[PodSample(45.0), PodSample(45.0)]]) == 3
    # WALKTHROUGH: an Ingress with a `Value` target of 10k requests per second; 20k over 2 ready pods -> 4.
    ingress = {
        "type": "Object",
        "object": {
            "metric": {"name": "requests-per-second"},
            "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main-route"},
            "target": {"type": "Value", "value": "10k"},
        },
    }
    assert hpa(ingress).sync(0.0, 2, [[PodSample(20_000.0)]]) == 4
    assert hpa(ingress).sync(0.0, 3, [[PodSample(20_000.0)]], ready_replicas=2) == 4
    assert hpa(ingress).sync(0.0, 2, [[PodSample(20_000.0), PodSample(1.0)]]) == 2  # two values: invalid


def test_explanation_names_metrics_and_the_limiting_rule() -> None:
    policy = hpa(cpu(50), pods_metric("500m", name="inflight"), maxReplicas=5)
    policy.sync(0.0, 2, [same(150.0, 2), same(0.25, 2)])
    decision = policy.last
    assert decision is not None
    assert [m.metric for m in decision.metrics] == ["Resource cpu (Utilization)", "Pods inflight (AverageValue)"]
    assert [m.current for m in decision.metrics] == [150.0, 0.25]
    assert (decision.recommendation, decision.stabilized, decision.desired_replicas) == (6, 6, 4)
    assert decision.limit == "ScaleUpLimit"


# Parsing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", "0.5"),
        ("1k", "1000"),
        ("2Gi", str(2 * 2**30)),
        ("1e3", "1000"),
        ("1.5M", "1500000"),
        (0.5, "0.5"),
        (30, "30"),
    ],
)
def test_quantities(text: object, expected: str) -> None:
    assert parse_quantity(text) == Decimal(expected)


def test_default_metric_is_cpu_at_80_percent() -> None:
    policy = HorizontalPodAutoscaler.from_spec({"maxReplicas": 10})
    assert policy.sync(0.0, 2, [same(160.0, 2)]) == 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, "spec.maxReplicas (2) is less than spec.minReplicas (3)"),
        ({"metrics": [{"type": "Custom"}]}, "spec.metrics[0].type 'Custom' is unknown"),
        (
            {"metrics": [pods_metric("1x")]},
            "spec.metrics[0].pods.target.averageValue '1x' is not a Kubernetes quantity",
        ),
        ({"metrics": [pods_metric("-1")]}, "a target must be positive"),
        ({"behavior": {"scaleDown": {"selectPolicy": "Maximum"}}}, "spec.behavior.scaleDown.selectPolicy 'Maximum'"),
        (
            {"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": -15}]}}},
            "spec.behavior.scaleUp.policies[0].periodSeconds is -15",
        ),
        ({"behavior": {"scaleDown": {"stabilizationWindowSeconds": -1}}}, "stabilizationWindowSeconds is -1"),
        ({"behavior": {"scaleUp": {"tolerance": "-0.1"}}}, "spec.behavior.scaleUp.tolerance"),
        ({"behavior": {"scaleUp": {"policies": []}}}, "must list at least one policy"),
        (
            {"metrics": [{"type": "Pods", "pods": {"metric": {"name": "q"}, "target": {"type": "Utilization"}}}]},
            "use AverageValue",
        ),
        ({"minReplicas": 0}, "spec.minReplicas is 0"),
    ],
)
def test_invalid_specs_name_the_field_and_the_fix(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)) as error:
        HorizontalPodAutoscaler.from_spec({"maxReplicas": 10, **spec})
    assert "\n" not in str(error.value) and ": " in str(error.value)


def test_missing_max_replicas_is_reported() -> None:
    with pytest.raises(PolicyError, match="spec.maxReplicas is required"):
        HorizontalPodAutoscaler.from_spec({})


# Properties over random traces ---------------------------------------------------------------------------------

POLICY = st.tuples(st.sampled_from(["Pods", "Percent"]), st.integers(1, 150), st.sampled_from([15, 30, 45, 60, 120]))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], int, list[tuple[float, list[float | None]]]]:
    minimum = draw(st.integers(1, 5))
    maximum = draw(st.integers(minimum, 60))
    behavior = None
    if draw(st.booleans()):
        behavior = {}
        for direction in ("scaleUp", "scaleDown"):
            if draw(st.booleans()):
                behavior[direction] = {
                    "stabilizationWindowSeconds": draw(st.sampled_from([0, 30, 60, 300])),
                    "selectPolicy": draw(st.sampled_from(["Max", "Min"])),
                    "policies": [
                        {"type": t, "value": v, "periodSeconds": p}
                        for t, v, p in draw(st.lists(POLICY, min_size=1, max_size=3))
                    ],
                }
    spec = {"minReplicas": minimum, "maxReplicas": maximum, "metrics": [cpu(50)], "behavior": behavior}
    start = draw(st.integers(minimum, maximum))
    # Segments of steady load, so that rate limits and windows are pushed against for a while.
    segments = draw(
        st.lists(
            st.tuples(
                st.integers(1, 12),
                st.sampled_from([5.0, 15.0, 15.0, 30.0, 61.0]),
                st.lists(
                    st.one_of(st.none(), st.sampled_from([0.0, 10.0, 50.0, 120.0, 400.0]), st.floats(0, 400)),
                    min_size=1,
                    max_size=3,
                ),
            ),
            min_size=1,
            max_size=8,
        )
    )
    steps = [(gap, loads) for repeat, gap, loads in segments for _ in range(repeat)]
    return spec, start, steps


def allowed(rules: dict[str, Any], direction: int, current: int, changes: list[tuple[float, int]], now: float) -> int:
    """The furthest count `rules` allow from the test's own record of changes (not the policy's)."""
    if rules.get("selectPolicy") == "Disabled":
        return current
    limits = []
    for policy in rules["policies"]:
        start = current - sum(delta for time, delta in changes if time > now - policy["periodSeconds"])
        if policy["type"] == "Pods":
            limits.append(start + direction * policy["value"])
        elif direction > 0:
            limits.append(math.ceil(start * (1 + policy["value"] / 100)))
        else:
            limits.append(int(start * (1 - policy["value"] / 100)))
    biggest_change = rules.get("selectPolicy", "Max") == "Max"
    return max(limits) if biggest_change == (direction > 0) else min(limits)


DEFAULT_UP = {
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]
}
DEFAULT_DOWN = {"policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_random_traces_respect_bounds_rates_and_stabilization(scenario: Any) -> None:
    spec, current, steps = scenario
    policy = HorizontalPodAutoscaler.from_spec(spec)
    behavior = spec["behavior"]
    up = (behavior or {}).get("scaleUp", DEFAULT_UP)
    down = (behavior or {}).get("scaleDown", DEFAULT_DOWN)
    down_window = down.get("stabilizationWindowSeconds", 300)
    now = 0.0
    changes: list[tuple[float, int]] = []
    recommendations = [(math.nextafter(now, -math.inf), current)]  # the controller's initial record
    for gap, loads in steps:
        samples = [PodSample(loads[i % len(loads)]) for i in range(current)]
        desired = policy.sync(now, current, [samples])
        assert spec["minReplicas"] <= desired <= spec["maxReplicas"]
        decision = policy.last
        assert decision is not None
        if decision.recommendation is not None:
            recommendations.append((now, decision.recommendation))
        if behavior is None:
            assert desired <= max(2 * current, 4)
        elif desired > current:
            assert desired <= max(current, allowed(up, +1, current, changes, now))
        elif desired < current:
            assert desired >= min(current, allowed(down, -1, current, changes, now))
        if desired < current:
            # No scale-down below a recommendation made inside the scale-down stabilization window.
            inside = [r for t, r in recommendations if t > now - down_window or (behavior is None and t >= now - 300)]
            assert all(desired >= r for r in inside)
        if desired != current:
            changes.append((now, desired - current))
        current = desired
        now += gap


pod_groups = st.lists(
    st.tuples(
        st.one_of(st.none(), st.floats(0, 500, allow_nan=False)),  # value
        st.booleans(),  # ready
        st.integers(1, 5),  # count
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(pod_groups, st.sampled_from([cpu(70), pods_metric("20")]))
def test_grouped_pods_decide_as_the_pods_one_by_one(groups: Any, metric: dict[str, Any]) -> None:
    """`simulate` passes identical pods as one PodSample with a count; the decision must not change."""
    grouped = [PodSample(value, ready, count) for value, ready, count in groups]
    expanded = [PodSample(value, ready) for value, ready, count in groups for _ in range(count)]
    current = len(expanded)
    one, other = hpa(metric), hpa(metric)
    assert one.sync(0.0, current, [grouped]) == other.sync(0.0, current, [expanded])
    assert one.last == other.last
