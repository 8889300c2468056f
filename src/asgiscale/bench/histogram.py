"""A latency histogram in the manner of HdrHistogram: constant relative precision, cheap to record, mergeable.

Values are whole microseconds. Up to 256 they have a bucket each; above, every power of two is
cut into 128 equal buckets, so a bucket is never wider than 1/128 of its lower edge (0.8 %).
A percentile is read as the upper edge of the bucket it falls in (the "highest equivalent
value"): never lower than the truth, by at most 0.8 %. Recording is a few integer operations;
histograms of several generator processes merge by adding counts.

    >>> h = Histogram()
    >>> for us in (1000, 2000, 3000, 50_000):
    ...     h.record(us)
    >>> h.count, h.value_at(50), h.value_at(100)
    (4, 2007, 50000)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_SUB_BITS = 8
_SUB = 1 << _SUB_BITS  # 256 buckets of width 1 below 256 us
_HALF = _SUB >> 1  # then 128 buckets per power of two


def bucket_of(value: int) -> int:
    """The index of the bucket holding `value` (microseconds, >= 0)."""
    if value < _SUB:
        return value
    shift = value.bit_length() - _SUB_BITS
    return _SUB + (shift - 1) * _HALF + (value >> shift) - _HALF


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high]: the smallest and largest value bucket `index` holds."""
    if index < _SUB:
        return index, index
    shift, offset = divmod(index - _SUB, _HALF)
    shift += 1
    low = (offset + _HALF) << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts of microsecond values in log-linear buckets; see the module doc."""

    __slots__ = ("counts", "count", "total", "min", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0  # sum of the recorded values, for the mean
        self.min = 0
        self.max = 0

    def record(self, value: int, times: int = 1) -> None:
        value = max(value, 0)
        index = bucket_of(value)
        self.counts[index] = self.counts.get(index, 0) + times
        self.min = value if not self.count else min(self.min, value)
        self.max = max(self.max, value)
        self.count += times
        self.total += value * times

    def merge(self, other: Histogram) -> None:
        if not other.count:
            return
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.min = other.min if not self.count else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def value_at(self, percent: float, *, missing: int = 0) -> int | None:
        """The value `percent` % of the recordings are at or below, or None when none is.

        `missing` counts requests that never got an answer as if they had taken forever:
        a percentile they reach is None (infinite), so failures cannot make latency look better.
        """
        population = self.count + missing
        if not population:
            return None
        # Nearest rank, rounded up; rounded first so that 99.9 x 41000 / 100 is 40959, not 40959.000000001.
        rank = max(1, math.ceil(round(percent * population / 100, 9)))
        if rank > self.count:
            return None
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_bounds(index)[1], self.max)
        raise AssertionError("unreachable: rank <= count")

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form; `from_dict` reads it back."""
        return {
            "counts": {str(k): v for k, v in sorted(self.counts.items())},
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Histogram:
        histogram = cls()
        counts = data["counts"]
        assert isinstance(counts, Mapping)
        histogram.counts = {int(k): int(v) for k, v in counts.items()}
        histogram.count = sum(histogram.counts.values())
        histogram.total = int(data["total"])  # type: ignore[call-overload]
        histogram.min = int(data["min"])  # type: ignore[call-overload]
        histogram.max = int(data["max"])  # type: ignore[call-overload]
        return histogram
