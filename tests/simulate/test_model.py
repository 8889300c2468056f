"""The cluster model of `asgiscale simulate`: the replicas the policy asks for, when they serve, and what becomes of
the requests (served, shed, dropped) and their latency, against the documented Kubernetes HPA and Knative KPA
behaviour, Little's law and queueing theory."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgiscale.policy import KnativePodAutoscaler, PodSample, PolicyError, ScalingPolicy
from asgiscale.scaling import Target, metric_spec
from asgiscale.simulate.model import (
    PLATFORMS,
    Service,
    SimPolicy,
    erlang_c,
    metric_of,
    simulate,
)
from asgiscale.simulate.trace import Trace, parse_shape

# One replica: 100 requests a second at most, 50 ms each at low load (5 at once at capacity, by Little's law).
SERVICE = Service(capacity=100, service_time=0.05)
KUBERNETES = PLATFORMS["kubernetes"]
# The latency histogram reports the upper edge of a bucket at most 1/128 wide (asgiscale.bench.histogram).
HISTOGRAM = 1 / 128


def hpa(target: float = 2, low: int = 1, high: int = 20, behavior: dict[str, Any] | None = None) -> SimPolicy:
    """The HPA `asgiscale deploy` writes for `concurrency=target`, with an optional `behavior`."""
    spec = {"minReplicas": low, "maxReplicas": high, "metrics": [metric_spec(Target("concurrency", target))]}
    if behavior is not None:
        spec["behavior"] = behavior
    return SimPolicy.of_hpa(spec)


def cpu_hpa(percent: int, low: int = 1, high: int = 20) -> SimPolicy:
    metric = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}},
    }
    return SimPolicy.of_hpa({"minReplicas": low, "maxReplicas": high, "metrics": [metric]})


def kpa(annotations: dict[str, str], low: int = 1, high: int = 100) -> SimPolicy:
    prefixed = {f"autoscaling.knative.dev/{k}": v for k, v in annotations.items()}
    prefixed |= {"autoscaling.knative.dev/min-scale": str(low), "autoscaling.knative.dev/max-scale": str(high)}
    first = KnativePodAutoscaler.from_annotations(prefixed)
    return SimPolicy("kpa", lambda: KnativePodAutoscaler.from_annotations(prefixed), (first.metric,), low, high)


def constant(rps: float, duration: float = 600) -> Trace:
    return parse_shape(f"constant:rps={rps:g},duration={duration:g}")


def test_the_examples_in_the_module_docs_hold() -> None:
    for name in ("asgiscale.simulate.trace", "asgiscale.simulate.model"):
        results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert results.attempted > 0, name
        assert results.failed == 0, name


# A load at the target --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "service", "platform"),
    [
        # 200 req/s of 50 ms requests are 10 in flight (Little's law): 2 a pod over 5 pods, the target.
        (hpa(target=2), SERVICE, "kubernetes"),
        (hpa(target=2), SERVICE, "keda"),
        (hpa(target=2), SERVICE, "local"),
        # 40 req/s a pod at 10 ms of CPU each: 0.4 of a core, 40 % utilization.
        (cpu_hpa(40), dataclasses.replace(SERVICE, cpu_per_request=0.01), "kubernetes"),
        (cpu_hpa(40), dataclasses.replace(SERVICE, cpu_per_request=0.01), "local"),
        # The KPA aiming at 100 % of 2 in flight a pod: 10 in flight over the stable window ask for 5 pods.
        (kpa({"target": "2", "target-utilization-percentage": "100"}), SERVICE, "knative"),
    ],
    ids=["hpa-concurrency", "hpa-keda", "hpa-local", "hpa-cpu", "hpa-cpu-local", "kpa"],
)
def test_a_constant_load_at_the_target_leaves_the_replicas_alone(
    policy: SimPolicy, service: Service, platform: str
) -> None:
    run = simulate(constant(200), policy, service, PLATFORMS[platform], arrivals="constant", initial=5)
    assert run.decisions == []
    assert run.summary["replicas_max"] == 5
    assert run.summary["replicas_mean"] == 5
    assert run.summary["served"] == run.summary["requests"] == 200 * 600
    # Below capacity with evenly spaced arrivals nobody waits: every request takes the service time.
    assert 0.05 <= run.summary["p99"] <= 0.05 * (1 + HISTOGRAM)


def test_a_warm_start_begins_where_the_policy_settles() -> None:
    # Without an initial count, the run starts where the policy ends after a warm-up at the first rate: a
    # constant trace then needs no decision. 10 in flight at 2 a pod: 5 pods.
    for policy, platform in (
        (hpa(target=2), "kubernetes"),
        (kpa({"target": "2", "target-utilization-percentage": "100"}), "knative"),
    ):
        run = simulate(constant(200, 300), policy, SERVICE, PLATFORMS[platform], arrivals="constant")
        assert run.decisions == [], policy.name
        assert run.summary["replicas_max"] == run.summary["replicas_mean"] == 5, policy.name


# Scaling up -------------------------------------------------------------------------------------------------------

# On `kubernetes` the metrics are refreshed every 15 s, half an interval away from the syncs (at 7, 22, 37, 52, 67,
# …) and average the 15 s before the refresh; the HPA syncs at 15, 30, 45, 60, 75, … and reads the latest refresh.
# So the sync at 75 reads the seconds 52 to 66, the one at 90 the seconds 67 to 81.


@pytest.mark.parametrize(
    ("at", "decision"),
    [
        # The whole window 52-66 is at 400 req/s: 4 in flight a pod, ratio 4 / 2 = 2, ceil(5 x 2) = 10 pods.
        (52, (75.0, 5, 10)),
        # 8 s at 2 a pod and 7 s at 4: 44 / 15 = 2.93 a pod, ratio 1.467, ceil(5 x 1.467) = 8 pods.
        (60, (75.0, 5, 8)),
        # 12 s at 2 and 3 s at 4: 2.4 a pod, ratio 1.2, ceil(5 x 1.2) = 6 pods.
        (64, (75.0, 5, 6)),
        # 14 s at 2 and 1 s at 4: 2.13 a pod, ratio 1.067, within the 10 % tolerance: no change at 75. The sync at
        # 90 sees the seconds 67-81, all at 4 a pod: 10 pods.
        (66, (90.0, 5, 10)),
        # The refresh at 67 is all before the step; the one at 82 has 1 s at 2 and 14 s at 4: 3.87 a pod,
        # ratio 1.933, ceil(9.67) = 10 pods.
        (68, (90.0, 5, 10)),
    ],
)
def test_a_step_up_is_followed_at_the_first_sync_whose_metrics_see_it(
    at: int, decision: tuple[float, int, int]
) -> None:
    # 200 then 400 req/s of 50 ms requests over 5 pods (500 req/s of capacity: no queue): 2 then 4 in flight a pod.
    trace = parse_shape(f"step:from=200,to=400,at={at},duration=100")
    run = simulate(trace, hpa(target=2, high=30), SERVICE, KUBERNETES, arrivals="constant", initial=5)
    assert run.decisions[0] == decision


def test_without_behavior_one_sync_adds_at_most_four_pods_or_doubles_them() -> None:
    # Kubernetes without `behavior`: a sync scales up to at most max(2 x current, 4). 20 req/s become 400 at 60 s;
    # at 1 in flight a pod the step needs 20 pods (pods serve 1000 req/s: no queue, in flight = rate x 50 ms).
    service = Service(capacity=1000, service_time=0.05)
    trace = parse_shape("step:from=20,to=400,at=60,duration=400")
    run = simulate(trace, hpa(target=1, high=20), service, KUBERNETES, arrivals="constant", initial=1)
    assert run.decisions == [
        # Seconds 52-66: 8 s at 1 in flight and 7 s at 20 (one pod): 9.87, 10 pods wanted, max(2, 4) = 4 allowed.
        (75.0, 1, 4),
        # Seconds 67-81: the old pod at 20; the 3 new ones are not ready (startup 20 s) and count as 0 for a scale
        # up: 20 / 4 = 5 a pod, ceil(5 x 4) = 20 wanted, max(8, 4) = 8 allowed.
        (90.0, 4, 8),
        # Still short of 20 and limited to twice 8.
        (105.0, 8, 16),
        # The limit (32) is above maxReplicas: 20. There the load is at the target; the stabilization window
        # keeps the higher recommendations of the last 300 s, so no scale-down before the trace ends.
        (120.0, 16, 20),
    ]
    assert run.summary["replicas_max"] == 20
    assert run.summary["served"] == run.summary["requests"]


def test_a_scale_up_policy_limits_the_pods_added_per_period() -> None:
    # behavior.scaleUp: at most 2 pods per 60 s. The first sync that wants more adds 2 (75 s); later syncs count the
    # pods added in the 60 s before them, so the next 2 come once that event is 60 s old (135 s), and so on.
    service = Service(capacity=1000, service_time=0.05)
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}
    trace = parse_shape("step:from=20,to=400,at=60,duration=300")
    run = simulate(trace, hpa(target=1, behavior=behavior), service, KUBERNETES, arrivals="constant", initial=1)
    assert run.decisions == [(75.0, 1, 3), (135.0, 3, 5), (195.0, 5, 7), (255.0, 7, 9)]


# Scaling down -----------------------------------------------------------------------------------------------------

# 10 pods carry 400 req/s at the target (2 in flight a pod); at 120 s the load falls to 100 req/s, 0.5 a pod. The
# last sync to see only the old load is the one at 120 (it reads the seconds 97-111) and recommends 10; the one at
# 135 sees 8 s at 2 and 7 s at 0.5 (1.3 a pod) and recommends ceil(10 x 0.65) = 7; from 150 on, 3 (ceil(2.5)).
# A scale-down follows the highest recommendation of the stabilization window: 10 until the 120 one leaves it.
DOWN = parse_shape("step:from=400,to=100,at=120,duration=600")


def scale_downs(behavior: dict[str, Any] | None) -> list[tuple[float, int, int]]:
    run = simulate(
        DOWN, hpa(target=2, high=10, behavior=behavior), SERVICE, KUBERNETES, arrivals="constant", initial=10
    )
    return run.decisions


def test_without_behavior_the_scale_down_waits_the_default_300_seconds() -> None:
    # The controller's --horizontal-pod-autoscaler-downscale-stabilization (300 s) keeps recommendations that are
    # not older than the window (Kubernetes drops those *before* the cutoff): the one at 120 counts at 420, so the
    # first sync without it is 435, which follows the 7 of 135.
    # Then the 3 of 150 on: 5 in flight at 2 a pod.
    assert scale_downs(None) == [(435.0, 10, 7), (450.0, 7, 3)]


@pytest.mark.parametrize(
    ("behavior", "decision"),
    [
        # With behavior, Kubernetes keeps the recommendations strictly *after* the cutoff: at 120 + window the
        # recommendation of 120 is gone, and the highest left is the 7 of 135.
        ({"scaleDown": {"stabilizationWindowSeconds": 60}}, (180.0, 10, 7)),
        ({"scaleDown": {"stabilizationWindowSeconds": 150}}, (270.0, 10, 7)),
        ({"scaleDown": {"stabilizationWindowSeconds": 300}}, (420.0, 10, 7)),
        # A behavior without a scale-down window takes the controller's default of 300 s.
        ({"scaleUp": {"stabilizationWindowSeconds": 0}}, (420.0, 10, 7)),
        # No window: the first sync that sees less load scales down.
        ({"scaleDown": {"stabilizationWindowSeconds": 0}}, (135.0, 10, 7)),
    ],
)
def test_the_stabilization_window_delays_the_scale_down_as_configured(
    behavior: dict[str, Any],
    decision: tuple[float, int, int],
) -> None:
    window = behavior.get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
    first = scale_downs(behavior)[0]
    assert first[0] >= 120 + window  # never before the window has passed since the load fell
    assert first == decision


@pytest.mark.parametrize("offset", [0.1, 0.2, 0.3])
@pytest.mark.parametrize(
    ("behavior", "first"), [(None, 435.0), ({"scaleDown": {"stabilizationWindowSeconds": 300}}, 420.0)]
)
def test_syncs_off_the_whole_seconds_meet_the_window_edge_as_kubernetes_does(
    offset: float, behavior: dict[str, Any] | None, first: float
) -> None:
    # The runs above, on 0.1 s steps with the syncs `offset` later: the same decisions, `offset` later. In float
    # seconds 420.1 - 300 misses 120.1 (the sync that recommended 10), and the HPA without behavior scaled down
    # one sync early, at 420.1.
    run = simulate(
        DOWN,
        hpa(target=2, high=10, behavior=behavior),
        SERVICE,
        KUBERNETES,
        arrivals="constant",
        initial=10,
        step=0.1,
        sync_offset=offset,
    )
    assert run.decisions[:2] == [(round(first + offset, 6), 10, 7), (round(first + 15 + offset, 6), 7, 3)]


def test_a_shorter_window_scales_down_sooner_and_spends_fewer_replica_seconds() -> None:
    runs = [
        simulate(
            DOWN,
            hpa(target=2, high=10, behavior={"scaleDown": {"stabilizationWindowSeconds": w}}),
            SERVICE,
            KUBERNETES,
            arrivals="constant",
            initial=10,
        )
        for w in (30, 120, 300)
    ]
    firsts = [run.decisions[0][0] for run in runs]
    assert firsts == sorted(firsts) and len(set(firsts)) == 3
    spent = [run.summary["replica_seconds"] for run in runs]
    assert spent == sorted(spent) and len(set(spent)) == 3


# Admission control, overload and no capacity ----------------------------------------------------------------------


@pytest.mark.parametrize("arrivals", ["constant", "poisson"])
@pytest.mark.parametrize(
    ("max_queue", "queue_timeout", "queued"),
    [
        (10, 5.0, 10),  # 10 may wait: the queue is full at 10
        (1000, 0.5, 50),  # more may wait than 0.5 s of capacity (50 requests): 50 wait, the rest is shed
    ],
)
def test_admission_control_sheds_what_a_full_replica_cannot_queue(
    arrivals: str, max_queue: int, queue_timeout: float, queued: int
) -> None:
    # One replica (maxReplicas 1) offered twice its capacity, admitting 5 at once: it completes its capacity,
    # 100 req/s; the queue stays full, so the other 100 req/s are shed: (200 - 100) / 200 = 50 %.
    service = dataclasses.replace(SERVICE, max_concurrency=5, max_queue=max_queue, queue_timeout=queue_timeout)
    run = simulate(constant(200), hpa(low=1, high=1), service, KUBERNETES, arrivals=arrivals, initial=1)
    summary = run.summary
    assert run.decisions == []
    assert summary["served"] == 100 * 600
    assert summary["dropped"] == 0
    # The queue fills within the first second and ends full: every request beyond capacity but those is shed.
    assert summary["shed"] == 100 * 600 - queued
    assert summary["shed_share"] == pytest.approx((200 - 100) / 200, rel=1e-3)
    assert all(s == pytest.approx(100) for s in run.series["served"])
    # A request waits behind the full queue (queued requests at 100 req/s), then takes its own 50 ms.
    p99 = 0.05 + queued / 100
    assert p99 - 1e-9 <= summary["p99"] <= p99 * (1 + HISTOGRAM)


def test_the_rps_target_sees_the_demand_whether_or_not_the_excess_is_shed() -> None:
    # 1000 req/s from 60 s on, 100 a replica at most, rps=50 a replica. The metric counts the requests that reach a
    # replica, so the HPA asks for the same replicas when the excess is shed (admission control) as when clients
    # give up on it; counting only what was answered saw 100 a replica without admission control, and doubled.
    trace = parse_shape("step:from=40,to=1000,at=60,duration=300")
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 100, "periodSeconds": 15}]}}
    spec = {"minReplicas": 1, "maxReplicas": 40, "metrics": [metric_spec(Target("rps", 50))], "behavior": behavior}
    runs = [
        simulate(trace, SimPolicy.of_hpa(spec), Service(capacity=100, service_time=0.05, max_concurrency=limit),
                 KUBERNETES, arrivals="constant", initial=1)
        for limit in (None, 4)
    ]  # fmt: skip
    assert runs[0].summary["shed"] == 0 < runs[0].summary["dropped"]
    assert runs[1].summary["shed"] > 0 == runs[1].summary["dropped"]
    assert runs[0].decisions == runs[1].decisions
    assert runs[0].decisions[0] == (75.0, 1, 10)  # 7 s of the step in the 15 s window read at 75 s: 488 a replica


def test_without_admission_control_clients_give_up_after_the_timeout() -> None:
    # Nothing is shed: the queue grows until requests wait `timeout`; beyond it they are dropped. In steady
    # state the replica still completes its capacity, so half of 200 req/s is dropped.
    service = dataclasses.replace(SERVICE, timeout=2.0)
    run = simulate(constant(200), hpa(low=1, high=1), service, KUBERNETES, arrivals="constant", initial=1)
    summary = run.summary
    assert summary["shed"] == 0
    assert summary["served"] == 100 * 600
    # The queue ends holding timeout x capacity = 200 requests; everything else beyond capacity was dropped.
    assert summary["dropped"] == 100 * 600 - 200
    assert summary["dropped_share"] == pytest.approx(0.5, rel=1e-2)
    # Served requests waited the timeout, then took the service time.
    assert 2.0 <= summary["p99"] <= 2.05 * (1 + HISTOGRAM)


def test_with_no_replica_every_request_is_dropped() -> None:
    # An HPA never scales a target at 0 replicas (Kubernetes disables autoscaling there).
    run = simulate(constant(50, 120), hpa(), SERVICE, KUBERNETES, initial=0)
    assert run.decisions == []
    summary = run.summary
    assert (summary["requests"], summary["dropped"], summary["served"], summary["dropped_share"]) == (6000, 6000, 0, 1)
    assert summary["p99"] is None
    assert summary["replicas_max"] == 0 and summary["replica_seconds"] == 0


def test_pods_that_do_not_fit_the_nodes_never_serve() -> None:
    # max_pods 0: the initial replicas stay pending, none ever ready.
    run = simulate(constant(50, 120), hpa(), SERVICE, KUBERNETES, initial=3, max_pods=0)
    assert run.summary["dropped_share"] == 1
    assert run.summary["replicas_max"] == 0


def test_max_pods_caps_the_ready_replicas_and_the_replicas_counted() -> None:
    # The scale-up of the step (1 -> 4 -> 8 -> 16 -> 20 unbounded) meets room for 6 pods: the HPA still asks for
    # more, but only 6 run, and the run counts the placed pods alone.
    service = Service(capacity=1000, service_time=0.05)
    trace = parse_shape("step:from=20,to=400,at=60,duration=300")
    run = simulate(trace, hpa(target=1, high=20), service, KUBERNETES, arrivals="constant", initial=1, max_pods=6)
    assert max(to for _, _, to in run.decisions) > 6
    assert run.summary["replicas_max"] == 6
    assert max(r for r in run.series["ready"] if r is not None) == 6
    assert max(r for r in run.series["replicas"] if r is not None) == 6


def test_an_initial_count_beyond_max_pods_places_what_fits() -> None:
    # 5 replicas asked for, room for 3: 3 run and serve (300 req/s of capacity for 200), 2 stay pending.
    run = simulate(constant(200, 60), hpa(high=5), SERVICE, KUBERNETES, arrivals="constant", initial=5, max_pods=3)
    assert run.summary["replicas_max"] == 3
    assert run.summary["served"] == run.summary["requests"] == 200 * 60


def test_a_heavier_request_mix_takes_longer_and_uses_more_of_a_replica() -> None:
    # cost 2: a request takes twice the service time and a replica completes half as many (50 req/s).
    trace = Trace("mix", (0.0,), (40.0,), (2.0,), 60.0)
    run = simulate(trace, hpa(low=1, high=1), SERVICE, KUBERNETES, arrivals="constant", initial=1)
    assert run.summary["served"] == 40 * 60
    assert 0.1 <= run.summary["p99"] <= 0.1 * (1 + HISTOGRAM)
    overloaded = Trace("mix", (0.0,), (75.0,), (2.0,), 60.0)
    service = dataclasses.replace(SERVICE, max_concurrency=5, max_queue=0)
    run = simulate(overloaded, hpa(low=1, high=1), service, KUBERNETES, arrivals="constant", initial=1)
    assert run.summary["served"] == 50 * 60
    assert run.summary["shed_share"] == pytest.approx(25 / 75)


# Poisson arrivals and Erlang C ------------------------------------------------------------------------------------


def test_poisson_arrivals_wait_for_a_slot_as_erlang_c_predicts() -> None:
    # 5 replicas of 5 slots each (100 req/s x 50 ms) at 80 % (400 req/s): evenly spaced requests never wait,
    # Poisson ones do. For M/M/c, P(wait > t) = C exp(-(c - a) t / S); a fixed service time halves the waits, so
    # the 99th percentile wait is t99 = ln(100 C) S / (2 (c - a)).
    steady = hpa(low=5, high=5)
    fixed = simulate(constant(400, 120), steady, SERVICE, KUBERNETES, arrivals="constant", initial=5)
    random = simulate(constant(400, 120), steady, SERVICE, KUBERNETES, arrivals="poisson", initial=5)
    assert 0.05 <= fixed.summary["p99"] <= 0.05 * (1 + HISTOGRAM)
    slots, offered = 5, 4.0
    waits = erlang_c(slots, offered)
    decay = 2 * (slots - offered) / 0.05
    t99 = math.log(100 * waits) / decay
    # The model samples the waits at survival levels at most a factor 2.5 apart (1, .5, .2, .1, .05, .02, .01, …):
    # its percentile is off by at most ln(2.5) / decay, plus the histogram's precision.
    assert random.summary["p99"] > fixed.summary["p99"]
    assert random.summary["p99"] == pytest.approx(0.05 + t99, abs=math.log(2.5) / decay + 0.2 * HISTOGRAM)
    # The mean wait adds to the requests in flight the policy reads, but the served load is the same.
    assert random.summary["served"] == fixed.summary["served"]


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_erlang_c_of_one_server_is_its_utilization(rho: float) -> None:
    # M/M/1: a request waits exactly when the server is busy, with probability rho.
    assert erlang_c(1, rho) == pytest.approx(rho)


def test_erlang_c_textbook_values() -> None:
    # M/M/2 at rho = 0.5 (1 Erlang): 2 rho^2 / (1 + rho) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # 3 servers offered 2 Erlangs: a^3 / 3! x 3 / (3 - 2) = 4 over 1 + 2 + 2^2 / 2 + 4 = 9, C = 4/9.
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    # No load, no wait; at or beyond the servers, everyone waits.
    assert (erlang_c(4, 0.0), erlang_c(4, 4.0), erlang_c(4, 9.0)) == (0.0, 1.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(servers=st.integers(1, 40), share=st.floats(0.01, 0.99))
def test_erlang_c_matches_its_closed_form(servers: int, share: float) -> None:
    # C(c, a) = (a^c / c! x c / (c - a)) / (sum_{k<c} a^k / k! + a^c / c! x c / (c - a))
    a = share * servers
    top = a**servers / math.factorial(servers) * servers / (servers - a)
    expected = top / (sum(a**k / math.factorial(k) for k in range(servers)) + top)
    assert erlang_c(servers, a) == pytest.approx(expected, rel=1e-9)


# Cohorts: thousands of pods as a few grouped samples ----------------------------------------------------------------


class OneSamplePerPod:
    """The policy as it would see the cluster pod by pod: every grouped sample spread into `count` samples of one."""

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self.sync_period = policy.sync_period

    def observe(self, now: float, samples: Sequence[Sequence[PodSample] | None]) -> None:
        spread = [
            None if pods is None else [PodSample(p.value, p.ready) for p in pods for _ in range(p.count)]
            for pods in samples
        ]
        self.policy.observe(now, spread)

    def decide(self, now: float, current_replicas: int) -> int:
        return self.policy.decide(now, current_replicas)


def pod_by_pod(policy: SimPolicy) -> SimPolicy:
    return dataclasses.replace(policy, make=lambda: OneSamplePerPod(policy.make()))


@settings(max_examples=12, deadline=None)
@given(
    platform=st.sampled_from(sorted(PLATFORMS)),
    kind=st.sampled_from(["concurrency", "cpu", "kpa"]),
    base=st.integers(20, 400),
    peak=st.integers(100, 2000),
    at=st.integers(0, 120),
    length=st.integers(10, 200),
)
def test_grouping_pods_into_cohorts_does_not_change_a_decision(
    platform: str, kind: str, base: int, peak: int, at: int, length: int
) -> None:
    service = dataclasses.replace(SERVICE, cpu_per_request=0.005)
    policy = {
        "concurrency": hpa(target=2, high=60),
        "cpu": cpu_hpa(50, high=60),
        "kpa": kpa({"target": "3"}, high=60),
    }[kind]
    trace = parse_shape(f"spike:base={base},peak={peak},at={at},length={length},duration=300")
    grouped = simulate(trace, policy, service, PLATFORMS[platform])
    apart = simulate(trace, pod_by_pod(policy), service, PLATFORMS[platform])
    assert grouped.decisions == apart.decisions
    assert grouped.summary == apart.summary


def test_a_pod_ready_after_the_metrics_refresh_has_no_reading_in_it() -> None:
    # Metrics refreshed every 60 s (at 30, 90, 150, …, over the last second), syncs every 40 s at 37, 77, 117, 157,
    # 197, …, pods ready 34 s after they are asked for. 20 then 100 req/s from 80 s, at 1 in flight a pod.
    platform = KUBERNETES.with_(metrics_interval=60, sync_period=40, metrics_window=1, startup=34)
    trace = parse_shape("step:from=20,to=100,at=80,duration=240")
    service = Service(capacity=1000, service_time=0.05)
    run = simulate(trace, hpa(target=1), service, platform, arrivals="constant", initial=1, sync_offset=37)
    assert run.decisions == [
        # The refresh at 90 has the one pod at 5 in flight: 5 wanted, 4 allowed.
        (117.0, 1, 4),
        # The refresh at 150: that pod at 5; the 3 new ones, ready at 151, have no reading yet (missing pods count
        # as 0 on a scale-up): 5 / 4 = 1.25 a pod, ceil(1.25 x 4) = 5.
        (157.0, 4, 5),
        # The sync at 197 still reads the refresh of 150, where 4 of the 5 pods have no reading: 5 / 5 = 1 a pod,
        # the target, so no change. At 237 every pod has a reading of 1 in flight: no change either.
    ]


def test_ten_thousand_pods_conserve_every_request() -> None:
    # 400,000 req/s of 50 ms requests at 2 in flight a pod need 10,000 pods; they start from where 200,000 req/s
    # settle. Every request offered is served (capacity is never short), and the pods never exceed maxReplicas.
    trace = parse_shape("step:from=200000,to=400000,at=60,duration=600")
    run = simulate(trace, hpa(target=2, high=10_000), SERVICE, KUBERNETES)
    summary = run.summary
    assert summary["replicas_max"] == 10_000
    assert summary["requests"] == 200_000 * 60 + 400_000 * 540
    assert summary["served"] == summary["requests"]
    assert run.decisions[-1][2] == 10_000


@settings(max_examples=10, deadline=None)
@given(
    segments=st.lists(
        st.tuples(st.integers(5, 90), st.integers(0, 3000), st.sampled_from([0.5, 1.0, 2.0])), min_size=1, max_size=5
    ),
    admission=st.booleans(),
    platform=st.sampled_from(sorted(PLATFORMS)),
)
def test_every_offered_request_is_served_shed_or_dropped(
    segments: list[tuple[int, int, float]], admission: bool, platform: str
) -> None:
    # A trace that ends with two minutes without load leaves no request waiting: offered = served + shed + dropped.
    times, rates, costs, start = [], [], [], 0.0
    for length, rps, cost in [*segments, (120, 0, 1.0)]:
        times.append(start)
        rates.append(float(rps))
        costs.append(cost)
        start += length
    trace = Trace("random", tuple(times), tuple(rates), tuple(costs), start)
    service = dataclasses.replace(SERVICE, timeout=5.0)
    if admission:
        service = dataclasses.replace(service, max_concurrency=5, max_queue=5)
    run = simulate(trace, hpa(target=2, high=40), service, PLATFORMS[platform], initial=2)
    summary = run.summary
    offered = sum(r * length for r, (length, *_) in zip(rates, [*segments, (120,)], strict=True))
    assert summary["requests"] == offered
    # Each total is rounded to a whole request.
    assert abs(summary["served"] + summary["shed"] + summary["dropped"] - offered) <= 2
    if not admission:
        assert summary["shed"] == 0


# The report: series and totals -------------------------------------------------------------------------------------


def test_the_series_average_the_steps_of_each_report_point() -> None:
    trace = parse_shape("step:from=100,to=300,at=50,duration=100")
    run = simulate(trace, hpa(low=5, high=5), SERVICE, KUBERNETES, arrivals="constant", initial=5, points=4)
    # 100 steps over at most 4 points: 25 steps a point, the offered rate averaged over each.
    assert run.times == [0.0, 25.0, 50.0, 75.0]
    assert run.series["offered"] == [100.0, 100.0, 300.0, 300.0]
    assert run.series["ready"] == [5.0] * 4
    data = run.to_dict()
    assert data["series"]["time"] == run.times and data["decisions"] == []


def test_a_trace_that_ends_inside_a_step_is_replayed_to_its_end_only() -> None:
    # 12 s of 100 req/s at steps of 5 s (the kubernetes periods are whole numbers of them): the trace offers
    # 1,200 requests, and 2 replicas throughout are a mean of 2 replicas.
    steady = hpa(low=2, high=2)
    run = simulate(constant(100, 12), steady, SERVICE, KUBERNETES, arrivals="constant", initial=2, step=5.0)
    assert (run.summary["requests"], run.summary["replicas_mean"]) == (1200, 2.0)


# Mistakes -----------------------------------------------------------------------------------------------------------


def test_a_sync_period_that_is_not_a_whole_number_of_steps_is_refused_in_one_line() -> None:
    with pytest.raises(PolicyError) as caught:
        simulate(constant(100, 60), hpa(), SERVICE, KUBERNETES.with_(sync_period=2.5), step=1.0, initial=1)
    assert str(caught.value) == "the sync period (2.5 s) must be a whole number of steps of 1 s; change --step"
    with pytest.raises(PolicyError, match=r"^the metrics window \(15 s\) must be a whole number of steps of 2 s"):
        simulate(constant(100, 60), hpa(), SERVICE, KUBERNETES.with_(sync_period=16, metrics_interval=16), step=2.0)


def test_a_step_of_half_a_second_replays_the_same_cluster() -> None:
    # The platform's periods are whole numbers of half seconds. The metrics are read half an interval before a
    # sync, 7.5 s rather than 7 s: the sync at 75 sees 3.0 rather than 2.93 in flight a pod, both ceil(5 x ratio)
    # = 8 pods, and the syncs after see the whole step either way.
    trace = parse_shape("step:from=200,to=400,at=60,duration=120")
    runs = [
        simulate(trace, hpa(target=2, high=30), SERVICE, KUBERNETES, arrivals="constant", initial=5, step=step)
        for step in (1.0, 0.5)
    ]
    assert runs[0].decisions == runs[1].decisions
    assert runs[0].summary["requests"] == runs[1].summary["requests"] == 200 * 60 + 400 * 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arrivals": "bursty"}, "arrivals must be one of poisson, constant, not 'bursty'"),
        ({"step": 0.0}, "--step must be above 0 seconds"),
        ({"initial": -1}, "the initial replica count must be 0 or more"),
    ],
)
def test_bad_run_settings_are_refused_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        simulate(constant(100, 60), hpa(), SERVICE, KUBERNETES, **kwargs)
    assert str(caught.value) == message


def test_bad_service_and_platform_settings_are_refused_in_one_line() -> None:
    with pytest.raises(PolicyError, match="the capacity and the service time of a replica must be above 0"):
        Service(capacity=0, service_time=0.05)
    with pytest.raises(PolicyError, match=r"^--sync-period must be above 0 seconds$"):
        KUBERNETES.with_(sync_period=0)
    with pytest.raises(PolicyError, match=r"^--startup must be 0 or more seconds$"):
        KUBERNETES.with_(startup=-1)
    # Flags not given keep the preset.
    assert KUBERNETES.with_(startup=None, sync_period=30) == dataclasses.replace(KUBERNETES, sync_period=30)


def test_metrics_simulate_cannot_produce_are_named() -> None:
    assert metric_of("Resource", "cpu", "Utilization") == "cpu"
    assert metric_of("ContainerResource", "cpu", "Utilization") == "cpu"
    assert metric_of("Pods", "http_server_requests_per_second", "AverageValue") == "rps"
    with pytest.raises(PolicyError, match="the HPA metric External queue_depth"):
        metric_of("External", "queue_depth", "Value")


def test_a_sync_before_the_first_metrics_refresh_finds_no_reading() -> None:
    # Syncing every second on metrics refreshed every 15 s (at 7, 22, …): the syncs before 7 s have no reading to
    # decide on, as an HPA whose metrics are not there yet; with the load at the target nothing changes after.
    platform = KUBERNETES.with_(sync_period=1)
    run = simulate(constant(200, 60), hpa(target=2), SERVICE, platform, arrivals="constant", initial=5)
    assert run.decisions == []
    # The same holds for syncs offset from the refreshes.
    run = simulate(constant(200, 60), hpa(target=2), SERVICE, KUBERNETES, arrivals="constant", initial=5, sync_offset=3)
    assert run.decisions == []
