"""The capacity search, driven against a simulated server whose true capacity is known."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgiscale.bench.search import CapacitySearch


def run(search: CapacitySearch, capacity: float) -> list[float]:
    """Drive `search` to its end against a server that meets the objective up to `capacity` req/s."""
    rates: list[float] = []
    while (rate := search.next_rate()) is not None:
        rates.append(rate)
        search.record(rate, met=rate <= capacity)
        assert len(rates) <= search.max_steps
    return rates


def steps_bound(capacity: float, start: float, growth: float, precision: float) -> int:
    """Ramp steps until the capacity is passed (up or down), then geometric bisection to `precision`."""
    ramp = math.floor(abs(math.log(capacity / start)) / math.log(growth)) + 2
    bisect = math.ceil(math.log2(math.log(growth) / math.log(1 + precision))) + 1
    return ramp + bisect


@given(
    capacity=st.floats(2, 100_000),
    start=st.floats(1, 100_000),
)
def test_finds_the_capacity_within_precision_from_below(capacity: float, start: float) -> None:
    search = CapacitySearch(start)
    rates = run(search, capacity)
    assert search.capacity is not None
    assert search.capacity <= capacity
    assert capacity <= search.capacity * (1 + search.precision)
    assert search.exact
    assert search.stopped == ""
    assert len(rates) <= steps_bound(capacity, start, search.growth, search.precision) <= search.max_steps
    assert search.next_rate() is None


@given(
    capacity=st.floats(10, 1e6),
    start=st.floats(1, 1e6),
    growth=st.floats(1.2, 8),
    precision=st.floats(0.005, 0.5),
)
def test_any_growth_and_precision_bracket_the_capacity(
    capacity: float, start: float, growth: float, precision: float
) -> None:
    search = CapacitySearch(start, growth=growth, precision=precision, max_steps=1000)
    rates = run(search, capacity)
    assert search.capacity is not None
    assert capacity / (1 + precision) <= search.capacity <= capacity
    assert search.exact
    assert len(rates) <= steps_bound(capacity, start, growth, precision)


def test_ramps_up_geometrically_then_bisects() -> None:
    search = CapacitySearch(100)
    rates = run(search, 170)
    assert rates[:3] == [100, 200, pytest.approx(math.sqrt(100 * 200))]
    assert all(100 <= rate <= 200 for rate in rates)
    assert search.capacity is not None and 170 / 1.05 <= search.capacity <= 170


def test_a_first_step_that_misses_ramps_down() -> None:
    search = CapacitySearch(100)
    rates = run(search, 30)
    assert rates[:3] == [100, 50, 25]
    assert all(25 <= rate <= 50 for rate in rates[2:])
    assert search.capacity is not None and 30 / 1.05 <= search.capacity <= 30
    assert search.exact


def test_nothing_met_above_the_floor_ends_without_a_capacity() -> None:
    search = CapacitySearch(100, floor=10)
    rates = run(search, 5)
    assert rates == [100, 50, 25, 12.5]
    assert search.next_rate() is None
    assert search.capacity is None
    assert not search.exact


def test_a_generator_behind_its_schedule_stops_the_ramp() -> None:
    search = CapacitySearch(100)
    search.record(100, met=True)
    assert search.next_rate() == 200
    search.record(200, met=True, generator_behind=True)
    assert search.next_rate() is None
    assert search.stopped == "the generator fell behind"
    assert search.capacity == 100  # the step the generator could not keep up with does not count
    assert not search.exact


def test_a_generator_behind_its_schedule_stops_the_bisection() -> None:
    search = CapacitySearch(100)
    search.record(100, met=True)
    search.record(200, met=False)
    rate = search.next_rate()
    assert rate is not None
    search.record(rate, met=True, generator_behind=True)
    assert search.next_rate() is None
    assert search.stopped
    assert search.capacity == 100
    assert not search.exact


def test_max_steps_ends_a_long_ramp_with_a_lower_bound() -> None:
    search = CapacitySearch(1, max_steps=5)
    rates = run(search, 1e9)
    assert rates == [1, 2, 4, 8, 16]
    assert search.next_rate() is None
    assert search.capacity == 16
    assert not search.exact


@given(st.floats(1, 1000), st.lists(st.booleans(), max_size=40))
def test_noisy_verdicts_keep_the_bracket_consistent(start: float, verdicts: list[bool]) -> None:
    search = CapacitySearch(start, floor=0.01)
    for met in verdicts:
        rate = search.next_rate()
        if rate is None:
            break
        if search.met is not None and search.missed is not None:
            assert search.met < rate < search.missed
        search.record(rate, met=met)
        if search.met is not None and search.missed is not None:
            assert search.met < search.missed
        assert search.capacity == search.met
    assert search.steps <= search.max_steps


@pytest.mark.parametrize(
    "arguments",
    [{"start": 0}, {"start": -5}, {"start": 100, "growth": 1}, {"start": 100, "precision": 0}],
)
def test_bad_settings_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CapacitySearch(**arguments)
