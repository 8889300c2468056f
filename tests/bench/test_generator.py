"""The pure parts of the load generator: the arrival schedule of a step and the result it fills in."""

from __future__ import annotations

import collections
import itertools
import json
import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgiscale.bench.generator import Step, StepResult, Target

URL = Target("127.0.0.1", 8000)


def constant(rate: float, duration: float) -> Step:
    return Step(URL, rate=rate, duration=duration)


def poisson(rate: float, duration: float, seed: int = 0) -> Step:
    return Step(URL, rate=rate, duration=duration, arrivals="poisson", seed=seed)


@given(rate=st.floats(0.5, 5000), duration=st.floats(0.1, 10), parts=st.integers(1, 8))
def test_constant_arrivals_split_over_parts_are_the_single_schedule(rate: float, duration: float, parts: int) -> None:
    step = constant(rate, duration)
    single = list(step.schedule())
    shares = [list(step.schedule(part, parts)) for part in range(parts)]
    assert sorted(t for share in shares for t in share) == single
    for part, share in enumerate(shares):
        assert share == single[part::parts]  # round robin


def test_constant_arrivals_split_over_three_parts() -> None:
    step = constant(10, 1)
    assert [list(step.schedule(part, 3)) for part in range(3)] == [
        [0.0, 0.3, 0.6, 0.9],
        [0.1, 0.4, 0.7],
        [0.2, 0.5, 0.8],
    ]


@given(rate=st.floats(0.5, 5000), duration=st.floats(0.1, 10))
def test_constant_arrivals_are_evenly_spaced_within_the_step(rate: float, duration: float) -> None:
    due = list(constant(rate, duration).schedule())
    assert due[0] == 0
    assert all(0 <= t < duration for t in due)
    assert all(math.isclose(b - a, 1 / rate, rel_tol=1e-6) for a, b in itertools.pairwise(due))
    assert abs(len(due) - rate * duration) <= 1


@pytest.mark.parametrize("rate", [49, 98, 103])
def test_constant_arrivals_send_rate_times_duration_requests(rate: int) -> None:
    assert len(list(constant(rate, 1).schedule())) == rate


def test_poisson_arrivals_count_is_near_rate_times_duration() -> None:
    rate, duration = 2000, 50
    due = list(poisson(rate, duration).schedule())
    expected = rate * duration
    assert abs(len(due) - expected) <= 5 * math.sqrt(expected)
    assert due == sorted(due)
    assert all(0 < t < duration for t in due)
    assert statistics.fmean(b - a for a, b in itertools.pairwise(due)) == pytest.approx(1 / rate, rel=0.02)


def test_poisson_arrivals_are_bursty_unlike_constant_ones() -> None:
    # Counts per second of a Poisson stream have a variance about equal to their mean.
    due = list(poisson(1000, 60, seed=7).schedule())
    per_second = collections.Counter(int(t) for t in due)
    counts = [per_second[s] for s in range(60)]
    dispersion = statistics.variance(counts) / statistics.fmean(counts)
    assert 0.4 < dispersion < 1.8
    steady = collections.Counter(int(t) for t in constant(1000, 60).schedule())
    assert statistics.pvariance([steady[s] for s in range(60)]) < 1


def test_poisson_arrivals_are_deterministic_for_a_seed() -> None:
    first = list(poisson(500, 5, seed=3).schedule())
    assert list(poisson(500, 5, seed=3).schedule()) == first
    assert list(poisson(500, 5, seed=4).schedule()) != first


def test_poisson_arrivals_over_parts_are_independent_streams_of_a_share_of_the_rate() -> None:
    rate, duration, parts = 3000, 20, 3
    step = poisson(rate, duration)
    shares = [list(step.schedule(part, parts)) for part in range(parts)]
    assert shares[0] != shares[1] != shares[2]
    for share in shares:
        assert abs(len(share) - rate / parts * duration) <= 5 * math.sqrt(rate / parts * duration)
    total = sum(len(share) for share in shares)
    assert abs(total - rate * duration) <= 5 * math.sqrt(rate * duration)
    assert [list(step.schedule(part, parts)) for part in range(parts)] == shares


def test_a_step_result_counts_unanswered_requests_as_failed() -> None:
    result = StepResult(rate=100, duration=2)
    result.sent = 10
    for latency in (1000, 2000, 3000, 4000, 5000, 6000, 7000):
        result.latency.record(latency)
    result.on_time = 6
    assert (result.ok, result.failed) == (7, 3)
    assert result.goodput() == 3


def test_step_results_merge_and_round_trip_through_json() -> None:
    one = StepResult(rate=300, duration=5, sent=3, statuses=collections.Counter({200: 2, 503: 1}))
    one.latency.record(1000, 2)
    one.send_lag.record(50, 3)
    other = StepResult(rate=300, duration=5, sent=2, errors=collections.Counter({"timeout": 1}), connections=4)
    other.latency.record(9000)
    other.send_lag.record(80, 2)
    one.merge(other)
    assert (one.sent, one.ok, one.failed, one.connections) == (5, 3, 2, 4)
    assert one.statuses == {200: 2, 503: 1}
    assert one.errors == {"timeout": 1}
    restored = StepResult.from_dict(json.loads(json.dumps(one.to_dict())))
    assert restored.to_dict() == one.to_dict()
    assert (restored.ok, restored.failed, restored.latency.value_at(100)) == (3, 2, 9000)
