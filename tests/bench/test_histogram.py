"""The log-linear latency histogram: bucket arithmetic, percentiles against an exact nearest rank, merging."""

from __future__ import annotations

import json
import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from asgiscale.bench.histogram import Histogram, bucket_bounds, bucket_of

HOUR_US = 3600 * 1_000_000
# Whole percentiles and a few usual fractional ones: with these and the list sizes below, the float
# rank and the decimal nearest rank agree (see test_nearest_rank_of_a_decimal_percentile).
percents = st.integers(1, 99) | st.sampled_from([0.1, 12.5, 99.5, 99.9, 99.99])
latencies = st.lists(st.integers(0, HOUR_US), min_size=1, max_size=300)


def nearest_rank(values: list[int], percent: float, missing: int = 0) -> int | None:
    """The exact nearest-rank percentile of `values` plus `missing` infinite ones, `percent` read as decimal."""
    ordered = sorted(values)
    rank = max(1, math.ceil(Fraction(str(percent)) * (len(ordered) + missing) / 100))
    return ordered[rank - 1] if rank <= len(ordered) else None


def filled(values: list[int]) -> Histogram:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    return histogram


@given(st.integers(0, HOUR_US))
def test_a_value_falls_in_its_own_bucket(value: int) -> None:
    low, high = bucket_bounds(bucket_of(value))
    assert low <= value <= high
    assert bucket_of(low) == bucket_of(high) == bucket_of(value)


@given(st.integers(0, HOUR_US))
def test_a_bucket_is_never_wider_than_a_128th_of_its_lower_edge(value: int) -> None:
    low, high = bucket_bounds(bucket_of(value))
    if value < 256:
        assert low == high == value
    else:
        assert (high + 1 - low) * 128 <= low
        assert high <= value * (1 + 1 / 128)


@given(st.integers(0, bucket_of(HOUR_US)))
def test_buckets_tile_the_line_without_gaps(index: int) -> None:
    low, high = bucket_bounds(index)
    assert bucket_of(low) == index
    assert bucket_of(high) == index
    assert bucket_bounds(index + 1)[0] == high + 1


def test_bucket_edges_around_the_first_power_of_two() -> None:
    assert [bucket_bounds(bucket_of(v)) for v in (255, 256, 257, 258, 511, 512)] == [
        (255, 255),
        (256, 257),
        (256, 257),
        (258, 259),
        (510, 511),
        (512, 515),
    ]


@given(latencies, percents)
def test_value_at_is_the_nearest_rank_rounded_up_to_its_bucket(values: list[int], percent: float) -> None:
    truth = nearest_rank(values, percent)
    assert truth is not None
    found = filled(values).value_at(percent)
    assert found is not None
    assert truth <= found <= truth * (1 + 1 / 128)


@given(latencies, st.integers(0, 50), percents)
def test_missing_answers_count_as_infinitely_slow(values: list[int], missing: int, percent: float) -> None:
    truth = nearest_rank(values, percent, missing)
    found = filled(values).value_at(percent, missing=missing)
    if truth is None:
        assert found is None
    else:
        assert found is not None
        assert truth <= found <= truth * (1 + 1 / 128)


def test_a_percentile_reaching_the_missing_requests_is_none() -> None:
    histogram = Histogram()
    histogram.record(1000, times=99)
    assert histogram.value_at(99, missing=1) == 1000  # rank 99 of 100: the last answer
    assert histogram.value_at(99, missing=2) is None  # rank 100 of 101: a request that never answered
    assert histogram.value_at(50, missing=2) == 1000


def test_a_percentile_reads_the_upper_edge_of_its_bucket_but_never_past_the_maximum() -> None:
    histogram = filled([1000, 2000, 3000, 50_000])
    assert bucket_bounds(bucket_of(2000)) == (2000, 2007)
    assert histogram.value_at(50) == 2007
    assert bucket_bounds(bucket_of(50_000)) == (49_920, 50_175)
    assert histogram.value_at(100) == 50_000
    assert (histogram.min, histogram.max, histogram.mean()) == (1000, 50_000, 14_000)


def test_nearest_rank_of_a_decimal_percentile() -> None:
    histogram = Histogram()
    histogram.record(1000, times=40_959)
    histogram.record(100_000, times=41)
    # p99.9 of 41,000 is rank 40,959 (99.9 % x 41,000 is a whole number); rank 40,960 is one of the slow ones.
    assert histogram.value_at(99.9) == bucket_bounds(bucket_of(1000))[1]


@given(st.lists(latencies, min_size=1, max_size=4))
def test_merging_equals_recording_everything_in_one(parts: list[list[int]]) -> None:
    merged = Histogram()
    for part in parts:
        merged.merge(filled(part))
    whole = filled([v for part in parts for v in part])
    assert merged.to_dict() == whole.to_dict()
    assert merged.count == whole.count
    assert [merged.value_at(p) for p in (50, 90, 99, 100)] == [whole.value_at(p) for p in (50, 90, 99, 100)]


def test_merging_into_an_empty_histogram_takes_the_other_minimum() -> None:
    merged = Histogram()
    merged.merge(Histogram())
    merged.merge(filled([7000, 9000]))
    assert (merged.count, merged.min, merged.max) == (2, 7000, 9000)


@given(st.lists(st.integers(0, HOUR_US), max_size=100))
def test_to_dict_and_from_dict_round_trip_through_json(values: list[int]) -> None:
    histogram = filled(values)
    restored = Histogram.from_dict(json.loads(json.dumps(histogram.to_dict())))
    assert restored.counts == histogram.counts
    assert (restored.count, restored.total, restored.min, restored.max) == (
        histogram.count,
        histogram.total,
        histogram.min,
        histogram.max,
    )
    assert restored.value_at(99) == histogram.value_at(99)


def test_an_empty_histogram_has_no_percentile_and_no_mean() -> None:
    histogram = Histogram()
    assert histogram.value_at(50) is None
    assert histogram.value_at(99, missing=0) is None
    assert histogram.mean() is None
    restored = Histogram.from_dict(histogram.to_dict())
    assert restored.count == 0
    assert restored.value_at(50) is None


def test_only_failures_make_every_percentile_none() -> None:
    assert Histogram().value_at(1, missing=10) is None


def test_negative_values_are_recorded_as_zero() -> None:
    histogram = filled([-5, 10])
    assert (histogram.min, histogram.value_at(50)) == (0, 0)
