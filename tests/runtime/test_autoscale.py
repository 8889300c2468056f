"""What the runtime feeds the scaling policy: per-worker load over each sync period (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest

from asgiscale.config import Config
from asgiscale.runtime.autoscale import Autoscaler, Reading
from asgiscale.scaling import Target, parse_targets


class Recording:
    """A policy that answers a fixed count and keeps what it was given, per worker."""

    sync_period = 1.0

    def __init__(self, answer: int, targets: tuple[Target, ...]) -> None:
        self.answer = answer
        self.metrics = [t.metric for t in targets]
        self.calls: list[tuple[Any, ...]] = []
        self.pending: Any = None

    def observe(self, now: float, samples: Any) -> None:
        self.pending = samples

    def decide(self, now: float, current: int) -> int:
        # Workers come in the order of the readings: index 0, 1, ...
        per_worker: dict[int, dict[str, float | None]] = {}
        ready: dict[int, bool] = {}
        for metric, pods in zip(self.metrics, self.pending, strict=True):
            for index, pod in enumerate(pods):
                per_worker.setdefault(index, {})[metric] = pod.value
                ready[index] = pod.ready
        self.calls.append((now, current, per_worker, ready))
        return self.answer


def test_each_worker_is_measured_over_the_window_since_the_last_sync() -> None:
    targets = parse_targets(["cpu=50", "concurrency=4", "rps=10"])
    policy = Recording(3, targets)
    scaler = Autoscaler(targets, policy, sync_period=1.0)
    for tick in range(10):
        now = tick / 10
        scaler.sample(
            now,
            [
                Reading(pid=1, ready=True, in_flight=2 + tick % 2, requests=10 * tick),
                Reading(pid=2, ready=False, in_flight=0, requests=0),
            ],
        )
    assert not scaler.due(0.9) and scaler.due(1.0)
    first = scaler.decide(1.0, current=2, cpu={1: 5.0, 2: 0.1})
    ((_, current, per_worker, ready),) = policy.calls
    assert current == 2 and ready == {0: True, 1: False}
    # CPU needs a value at the start of the window: the first window has none. rps: 90 answered, and one more
    # in progress at the end (3) than at the start (2).
    assert per_worker[0] == {"cpu": None, "concurrency": 2.5, "rps": 91.0}
    assert per_worker[1] == {"cpu": None, "concurrency": 0.0, "rps": 0.0}
    assert (first.desired, first.change, first.workers, first.ready) == (3, True, 2, 1)
    assert first.values == {"cpu": None, "concurrency": 1.25, "rps": 45.5}
    assert "cpu n/a/worker" in first.describe()

    # Second window: worker 2 is gone (drained), worker 3 is new.
    for tick in range(10, 20):
        scaler.sample(
            tick / 10,
            [Reading(1, True, 1, 90 + 20 * (tick - 9)), Reading(3, False, 0, 0)],
        )
    scaler.decide(2.0, current=3, cpu={1: 5.75, 3: 0.02})
    _, _, per_worker, ready = policy.calls[-1]
    assert ready == {0: True, 1: False}  # workers 1 and 3
    assert per_worker[0]["cpu"] == pytest.approx(75.0)
    assert per_worker[0]["rps"] == pytest.approx(198.0)  # 200 answered, 2 fewer in progress (3 -> 1)
    assert per_worker[0]["concurrency"] == 1.0
    assert per_worker[1]["cpu"] is None


def test_rps_counts_each_request_when_it_arrives_whether_served_queued_or_shed() -> None:
    targets = parse_targets(["rps=10"])
    policy = Recording(1, targets)
    scaler = Autoscaler(targets, policy, sync_period=1.0)
    windows = [
        # (in flight, answered so far) at the end of each one-second window
        (6, 0),  # 6 slow requests arrive; none answered yet
        (5, 14),  # 4 of them served, 10 more shed at once, 3 more wait for admission: 13 arrived
        (0, 19),  # nothing new; the 5 in progress are answered
    ]
    scaler.sample(0.0, [Reading(1, True, 0, 0)])
    for second, (in_flight, answered) in enumerate(windows, start=1):
        scaler.sample(second - 0.1, [Reading(1, True, in_flight, answered)])
        scaler.decide(float(second), current=1, cpu={})
    assert [call[2][0]["rps"] for call in policy.calls] == [6.0, 13.0, 0.0]


def test_the_real_hpa_scales_up_on_requests_still_in_progress() -> None:
    # 8 requests of a minute each reach one worker: none is answered within the sync period, yet they are the
    # load to carry. At 2 per worker the HPA wants 4.
    config = Config(app="m:app", max_workers=8, scale_targets=("rps=2",), scale_sync_period=1.0)
    scaler = Autoscaler.from_config(config)
    scaler.sample(0.0, [Reading(1, True, 0, 0)])
    scaler.sample(0.5, [Reading(1, True, 8, 0)])
    decision = scaler.decide(1.0, current=1, cpu={})
    assert decision.values == {"rps": 8.0}
    assert (decision.current, decision.desired) == (1, 4)


def test_the_real_hpa_scales_up_from_what_the_workers_carried() -> None:
    config = Config(app="m:app", max_workers=8, scale_targets=("concurrency=2",), scale_sync_period=0.5)
    scaler = Autoscaler.from_config(config)
    assert scaler.sync_period == 0.5
    for tick in range(5):
        scaler.sample(tick / 10, [Reading(1, True, 7, 0), Reading(2, True, 5, 0)])
    decision = scaler.decide(0.5, current=2, cpu={})
    # 6 in flight per worker against 2: ratio 3, ceil(3 x 2) = 6 recommended; with no
    # `behavior` one sync may grow to max(2 x 2, 4) = 4.
    assert (decision.current, decision.desired) == (2, 4)
    assert decision.values == {"concurrency": 6.0}
    assert "ratio 3.00 -> 6" in decision.detail and "recommended 6" in decision.detail
    assert "ScaleUpLimit" in decision.detail


def test_the_real_kpa_follows_its_panic_window() -> None:
    config = Config(app="m:app", max_workers=10, scale_policy="kpa", scale_targets=("concurrency=10",))
    scaler = Autoscaler.from_config(config)
    second = 0.0
    for second in range(1, 8):
        scaler.sample(second - 0.5, [Reading(1, True, 35, 0)])
        decision = scaler.decide(float(second), current=1, cpu={})
    # 35 in flight against 7 per pod (70 % of 10): 5 pods, which is past the 200 % panic threshold.
    assert decision.desired == 5
    assert "panic mode" in decision.detail
