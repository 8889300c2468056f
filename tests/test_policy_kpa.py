"""The Knative KPA model: target utilization, stable and panic windows, rate limits; and the policy table."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from asgiscale.policy import POLICIES, HorizontalPodAutoscaler, KnativePodAutoscaler, PodSample, PolicyError

# Knative's documentation of the knobs used below.
CONCURRENCY_PAGE = "https://knative.dev/docs/serving/autoscaling/concurrency/"
KPA_PAGE = "https://knative.dev/docs/serving/autoscaling/kpa-specific/"


def primed(**settings: object) -> KnativePodAutoscaler:
    """A KPA whose first sync saw one pod, so that it does not start in panic (Knative does over 2+ pods)."""
    kpa = KnativePodAutoscaler(**settings)  # type: ignore[arg-type]
    kpa.sync(0.0, 1)
    return kpa


def feed(kpa: KnativePodAutoscaler, start: int, end: int, total: float) -> None:
    for second in range(start, end):
        kpa.record(float(second), total)


def drive(kpa: KnativePodAutoscaler, pods: int, start: int, end: int, load: Callable[[int], float]) -> list[int]:
    """Record `load(second)` every second and sync every 2 s (Knative's tick), new pods ready at once."""
    counts = []
    for second in range(start, end):
        kpa.record(float(second), load(second))
        if second % 2 == 1:
            pods = kpa.sync(float(second + 1), pods)
            counts.append(pods)
    return counts


def test_target_is_70_percent_of_the_container_concurrency() -> None:
    # CONCURRENCY_PAGE#target-utilization: with containerConcurrency 10 and 70 % target utilization, the autoscaler
    # adds a replica when the average concurrency of the existing ones reaches 7.
    kpa = primed(container_concurrency=10)
    assert kpa.target_value == 7.0
    feed(kpa, 0, 60, 70.0)
    assert kpa.sync(60.0, 10) == 10
    feed(kpa, 60, 62, 77.0)
    assert kpa.last is not None and kpa.last.stable_value is not None
    assert kpa.sync(62.0, 10) == 11  # the average passed 70 = 10 pods x 7


@pytest.mark.parametrize(
    ("settings", "target"),
    [
        ({}, 70.0),  # container-concurrency-target-default 100
        ({"metric": "rps"}, 140.0),  # requests-per-second-target-default 200
        ({"target": 10.0}, 7.0),
        ({"target": 50.0, "container_concurrency": 10}, 7.0),  # never above what a pod accepts
        ({"container_concurrency": 10, "target_utilization": 50.0}, 5.0),
        ({"target": 0.01}, 0.01),
    ],
)
def test_target_resolution(settings: dict[str, float], target: float) -> None:
    assert KnativePodAutoscaler(**settings).target_value == pytest.approx(target)  # type: ignore[arg-type]


def test_windows_average_concurrency_over_the_seconds_they_have() -> None:
    kpa = primed(container_concurrency=10)
    feed(kpa, 0, 3, 30.0)  # three seconds of data: averaged over three, not sixty
    assert kpa.sync(2.0, 1) == 5
    assert kpa.last is not None and (kpa.last.stable_value, kpa.last.panic_value) == (30.0, 30.0)
    assert kpa.stable_window == 60 and kpa.panic_window == 6  # the panic window is 10 % of the stable one


def test_stable_mode_follows_the_stable_window() -> None:
    kpa = primed(container_concurrency=10)
    feed(kpa, 0, 120, 14.0)
    assert kpa.sync(120.0, 2) == 2
    assert kpa.last is not None and not kpa.last.panicking and kpa.last.reason == "stable"


def test_panic_starts_when_the_panic_window_wants_twice_the_ready_pods() -> None:
    # KPA_PAGE#panic-threshold: 200 % by default, measured on the pods the panic window wants.
    below = primed(container_concurrency=10)
    feed(below, 0, 120, 14.0)
    feed(below, 120, 130, 21.0)  # 21 / 7 = 3 pods: 150 % of 2
    below.sync(130.0, 2)
    assert below.last is not None and not below.last.panicking
    above = primed(container_concurrency=10)
    feed(above, 0, 120, 14.0)
    feed(above, 120, 130, 28.0)  # 4 pods: 200 % of 2
    assert above.sync(130.0, 2) == 4  # the panic window's count, above the stable window's 3
    assert above.last is not None and above.last.panicking
    assert (above.last.stable_pods, above.last.panic_pods) == (3, 4)


def test_panic_holds_for_a_stable_window_and_never_scales_down() -> None:
    kpa = primed(container_concurrency=10)
    feed(kpa, 0, 120, 14.0)
    feed(kpa, 120, 130, 28.0)
    assert kpa.sync(130.0, 2) == 4
    counts = drive(kpa, 4, 130, 200, lambda second: 14.0)  # back to 2 pods' worth at once
    times = list(range(132, 201, 2))
    held = [c for t, c in zip(times, counts, strict=True) if t <= 190]
    assert set(held) == {4}  # 60 s after the last time over the threshold
    assert counts[times.index(192)] == 2
    assert kpa.last is not None and not kpa.last.panicking


def test_panic_only_ever_raises_the_count() -> None:
    kpa = primed(container_concurrency=10)
    feed(kpa, 0, 60, 7.0)
    counts = drive(kpa, 1, 60, 100, lambda second: 70.0 if second < 70 else 35.0 if second < 80 else 140.0)
    assert counts == sorted(counts)
    assert counts[-1] == 20


def test_rate_limits() -> None:
    # Scale down: at most to ready / max-scale-down-rate (2) per decision, in stable mode.
    kpa = primed(container_concurrency=10)
    feed(kpa, 0, 60, 0.0)
    assert [kpa.sync(60.0, 10), kpa.sync(62.0, 5), kpa.sync(64.0, 2)] == [5, 2, 1]
    assert kpa.last is not None and kpa.last.max_scale_down == 1
    # Scale up: at most to max-scale-up-rate x ready, in both windows.
    slow = primed(container_concurrency=10, max_scale_up_rate=2.0)
    feed(slow, 0, 60, 700.0)
    assert slow.sync(60.0, 3) == 6
    assert slow.last is not None and (slow.last.stable_pods, slow.last.panic_pods, slow.last.max_scale_up) == (6, 6, 6)


def test_scale_to_zero_is_off_unless_min_scale_is_0() -> None:
    kpa = primed(container_concurrency=10)
    assert set(drive(kpa, 1, 0, 300, lambda second: 0.0)) == {1}
    scaling = primed(container_concurrency=10, min_scale=0)
    counts = drive(scaling, 1, 0, 100, lambda second: 0.0)
    assert counts[:14] == [1] * 14  # the 30 s grace period after zero was first wanted (at 2 s)
    assert counts[15:] == [0] * len(counts[15:])
    feed(scaling, 100, 101, 3.0)  # a request comes back
    assert scaling.sync(101.0, 0) == 1


def test_scale_bounds_and_scale_down_delay() -> None:
    kpa = primed(container_concurrency=10, min_scale=2, max_scale=5)
    feed(kpa, 0, 60, 700.0)
    assert kpa.sync(60.0, 2) == 5
    assert kpa.sync(62.0, 5) == 5
    # KPA_PAGE#scale-down-delay: a decrease takes effect once it has been wanted for the whole delay.
    plain, delayed = primed(container_concurrency=10), primed(container_concurrency=10, scale_down_delay=30.0)
    wanted, applied = [], []
    for second in range(0, 200):
        load = 28.0 if second < 60 else 7.0
        plain.record(float(second), load)
        delayed.record(float(second), load)
        if second % 2 == 1:
            wanted.append(plain.sync(float(second + 1), 4))
            applied.append(delayed.sync(float(second + 1), 4))
    assert wanted != applied
    for tick, count in enumerate(applied):
        assert count == max(wanted[max(0, tick - 14) : tick + 1])  # ticks every 2 s: 15 inside 30 s


def test_first_sync_over_several_pods_starts_in_panic() -> None:
    # Knative keeps the current scale until it has history: a new autoscaler over 2+ pods starts in panic.
    kpa = KnativePodAutoscaler(container_concurrency=10)
    feed(kpa, 0, 10, 0.0)
    assert kpa.sync(10.0, 8) == 8
    assert kpa.last is not None and kpa.last.panicking


def test_no_data_keeps_what_runs() -> None:
    kpa = KnativePodAutoscaler()
    assert kpa.sync(0.0, 3) == 3
    assert kpa.last is not None and kpa.last.reason.startswith("no data")


def test_random_traces_respect_bounds_and_rates() -> None:
    rng = random.Random(20240601)
    for _ in range(200):
        settings = {
            "container_concurrency": rng.choice([0, 1, 10, 50]),
            "max_scale_up_rate": rng.choice([1.5, 2.0, 10.0, 1000.0]),
            "max_scale_down_rate": rng.choice([1.5, 2.0, 4.0]),
            "min_scale": rng.choice([1, 2]),
            "max_scale": rng.choice([0, 20]),
        }
        kpa = KnativePodAutoscaler(**settings)  # type: ignore[arg-type]
        pods, level, previous_panic = 1, 0.0, False
        for second in range(rng.randint(10, 400)):
            if rng.random() < 0.05:
                level = rng.choice([0.0, 5.0, 50.0, 500.0, 3000.0])
            kpa.record(float(second), level * rng.uniform(0.8, 1.2))
            if second % 2:
                continue
            desired = kpa.sync(float(second), pods)
            assert settings["min_scale"] <= desired
            assert settings["max_scale"] == 0 or desired <= settings["max_scale"]
            ready = max(1, pods)
            assert desired <= max(-(-settings["max_scale_up_rate"] * ready // 1), settings["min_scale"])
            assert desired >= min(int(ready // settings["max_scale_down_rate"]), settings["max_scale"] or desired)
            panicking = kpa.last is not None and kpa.last.panicking
            if panicking and previous_panic:
                assert desired >= pods  # never scales down while panicking
            previous_panic, pods = panicking, desired


# Annotations ---------------------------------------------------------------------------------------------------


def test_from_annotations() -> None:
    kpa = KnativePodAutoscaler.from_annotations(
        {
            "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
            "autoscaling.knative.dev/metric": "rps",
            "autoscaling.knative.dev/target": "150",
            "autoscaling.knative.dev/target-utilization-percentage": "80",
            "autoscaling.knative.dev/window": "2m",
            "autoscaling.knative.dev/panic-window-percentage": "20.0",
            "autoscaling.knative.dev/panicThresholdPercentage": "150",
            "autoscaling.knative.dev/min-scale": "2",
            "autoscaling.knative.dev/max-scale": "10",
            "autoscaling.knative.dev/scale-down-delay": "1m30s",
            "autoscaling.knative.dev/target-burst-capacity": "200",
            "app.kubernetes.io/name": "shop",
        },
        max_scale_down_rate=4.0,
    )
    assert (kpa.metric, kpa.target_value, kpa.stable_window, kpa.panic_window) == ("rps", 120.0, 120, 24)
    assert (kpa.panic_threshold, kpa.min_scale, kpa.max_scale, kpa.scale_down_delay) == (1.5, 2, 10, 90.0)
    assert kpa.max_scale_down_rate == 4.0


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}, "use kpa.autoscaling.knative.dev"),
        ({"autoscaling.knative.dev/targt": "10"}, "did you mean autoscaling.knative.dev/target?"),
        ({"autoscaling.knative.dev/window": "60"}, "autoscaling.knative.dev/window is '60': write a duration"),
        ({"autoscaling.knative.dev/window": "5s"}, "stable_window (autoscaling.knative.dev/window) is 5.0"),
        ({"autoscaling.knative.dev/panic-threshold-percentage": "50"}, "use 110 to 1000"),
        ({"autoscaling.knative.dev/metric": "cpu"}, "use concurrency or rps"),
        ({"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "2"}, "max_scale"),
        ({"autoscaling.knative.dev/min-scale": "two"}, "write a whole number"),
    ],
)
def test_invalid_annotations_name_the_setting_and_the_fix(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError) as error:
        KnativePodAutoscaler.from_annotations(annotations)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_policies_table_builds_both_from_their_spec_and_drives_them_the_same_way() -> None:
    hpa = POLICIES["hpa"]({"maxReplicas": 8})
    assert isinstance(hpa, HorizontalPodAutoscaler) and hpa.sync_period == 15.0
    hpa.observe(0.0, [[PodSample(160.0), PodSample(160.0, ready=False), PodSample(None)]])
    assert hpa.decide(0.0, 3) == 3  # one ready pod at 160 %, one starting, one missing: held by the dampening
    hpa.observe(15.0, [[PodSample(160.0), PodSample(160.0), PodSample(160.0)]])
    assert hpa.decide(15.0, 3) == 6
    kpa = POLICIES["kpa"]({"autoscaling.knative.dev/target": "10"})
    assert isinstance(kpa, KnativePodAutoscaler) and kpa.sync_period == 2.0
    assert kpa.decide(0.0, 1) == 1
    for second in range(1, 61):
        kpa.observe(float(second), [[PodSample(14.0), PodSample(14.0, ready=False), PodSample(None)]])
    assert kpa.decide(60.0, 3) == 4  # 28 in flight over a target of 7
    with pytest.raises(ValueError, match="one sample list"):
        kpa.observe(61.0, [[], []])


def test_grouped_pods_record_the_same_total_and_ready_count() -> None:
    """`simulate` passes identical pods as one PodSample with a count."""
    grouped, expanded = KnativePodAutoscaler(target=10), KnativePodAutoscaler(target=10)
    for second in range(70):
        grouped.observe(float(second), [[PodSample(30.0, True, 3), PodSample(0.0, False, 2)]])
        expanded.observe(float(second), [[PodSample(30.0)] * 3 + [PodSample(0.0, False)] * 2])
    assert grouped.decide(70.0, 5) == expanded.decide(70.0, 5) == 13  # 90 in flight / 7 per pod
    assert grouped.last == expanded.last
