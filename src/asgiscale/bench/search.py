"""The search for the highest arrival rate that meets the objective. Pure: rates in, rates out.

It ramps up geometrically from a starting rate until a step misses the objective, then bisects
(geometrically) between the highest rate that met it and the lowest that did not, until the two
are within `precision` of each other. If the very first step misses, it ramps down instead, and
gives up below `floor`. A step whose generator fell behind its schedule ends the search: the
capacity is then only known to be at least the highest rate met.

    >>> search = CapacitySearch(100)
    >>> search.next_rate()
    100.0
    >>> search.record(100, met=True); search.next_rate()
    200.0
    >>> search.record(200, met=False); round(search.next_rate())
    141
"""

from __future__ import annotations

import math


class CapacitySearch:
    """The rates to try, one at a time: `next_rate()`, run it, `record()` the verdict."""

    def __init__(
        self, start: float, *, growth: float = 2.0, precision: float = 0.05, floor: float = 1.0, max_steps: int = 24
    ) -> None:
        if not (start > 0 and growth > 1 and precision > 0):
            raise ValueError("start > 0, growth > 1 and precision > 0")
        self.start = float(start)
        self.growth = growth
        self.precision = precision
        self.floor = floor
        self.max_steps = max_steps
        self.met: float | None = None  # the highest rate that met the objective
        self.missed: float | None = None  # the lowest rate above `met` that did not
        self.steps = 0
        self.stopped = ""  # why the search ended early, if it did

    def next_rate(self) -> float | None:
        """The next rate to try, or None when the search is over."""
        if self.stopped or self.steps >= self.max_steps:
            return None
        if self.steps == 0:
            return self.start
        if self.missed is None:
            assert self.met is not None
            return self.met * self.growth
        if self.met is None:
            lower = self.missed / self.growth
            return lower if lower >= self.floor else None
        if self.missed / self.met <= 1 + self.precision:
            return None
        return math.sqrt(self.met * self.missed)

    def record(self, rate: float, *, met: bool, generator_behind: bool = False) -> None:
        self.steps += 1
        if generator_behind:
            self.stopped = "the generator fell behind"
            return
        if met:
            if self.met is None or rate > self.met:
                self.met = rate
            if self.missed is not None and self.missed <= rate:  # noise: a lower rate missed, a higher one met
                self.missed = None
        elif self.missed is None or rate < self.missed:
            self.missed = rate
            if self.met is not None and self.met >= rate:
                self.met = None

    @property
    def capacity(self) -> float | None:
        """The highest rate known to meet the objective (None: none found)."""
        return self.met

    @property
    def exact(self) -> bool:
        """Whether the capacity is bracketed within `precision` (else it is a lower bound)."""
        return self.met is not None and self.missed is not None and self.missed / self.met <= 1 + self.precision
