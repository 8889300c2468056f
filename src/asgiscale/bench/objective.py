"""Latency objectives (`p99=50ms`) and the verdict of one load step against them. Pure: no I/O.

A request that got no successful answer (an error status, a timeout, a broken connection) counts
as infinitely slow, so failures can only push a percentile up, and `max_errors` bounds their share
on its own. A step is only judged if the generator kept to its schedule: when its own sends were
late, the measurement is of the generator, and the verdict says so.

    >>> objectives = parse_objectives(["p99=50ms", "p50=10ms"])
    >>> [str(o) for o in objectives]
    ['p99 ≤ 50 ms', 'p50 ≤ 10 ms']
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from asgiscale.bench.generator import StepResult

_OBJECTIVE = re.compile(r"p(\d{1,2}(?:\.\d+)?)\s*(?:=|<=|<)\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s)", re.IGNORECASE)
_UNITS = {"us": 1, "µs": 1, "ms": 1000, "s": 1_000_000}
# The generator is behind its schedule when its median send lag passes GENERATOR_LAG_US and a
# fifth of the tightest objective (it cannot keep up: a backlog moves the median), or when its p99
# passes GENERATOR_LAG_US and half the objective (its jitter alone could decide the verdict). A
# shorter tail of lateness, such as a busy machine's scheduling delays, stays in the latencies
# measured from the schedule, where it belongs.
GENERATOR_LAG_US = 5_000
GENERATOR_LAG_SHARE = 0.2  # of the tightest objective, for the median
GENERATOR_JITTER_SHARE = 0.5  # of the tightest objective, for the p99


class ObjectiveError(ValueError):
    """An objective that cannot be read; one line naming it and the fix."""


@dataclasses.dataclass(frozen=True)
class Objective:
    """`percentile` % of requests answer successfully within `limit_us` microseconds."""

    percentile: float
    limit_us: int

    @property
    def name(self) -> str:
        return f"p{self.percentile:g}"

    def __str__(self) -> str:
        return f"{self.name} ≤ {format_us(self.limit_us)}"

    def spec(self) -> str:
        """The form `parse_objectives` reads, like `p99=50ms`."""
        for unit, scale in (("s", 1_000_000), ("ms", 1000)):
            if self.limit_us % scale == 0:
                return f"{self.name}={self.limit_us // scale}{unit}"
        return f"{self.name}={self.limit_us}us"


def parse_objectives(texts: Iterable[str]) -> tuple[Objective, ...]:
    objectives: dict[float, Objective] = {}
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            found = _OBJECTIVE.fullmatch(part)
            if found is None:
                raise ObjectiveError(
                    f"objective {part!r} is not like p99=50ms (a percentile, '=', a time in us, ms or s)"
                )
            percentile = float(found[1])
            limit = round(float(found[2]) * _UNITS[found[3].lower()])
            if not 0 < percentile < 100:
                raise ObjectiveError(f"objective {part!r}: the percentile must be above 0 and below 100, like p99")
            if limit <= 0:
                raise ObjectiveError(f"objective {part!r}: the latency must be above zero")
            if percentile in objectives:
                raise ObjectiveError(f"objective p{percentile:g} is given twice; keep one")
            objectives[percentile] = Objective(percentile, limit)
    if not objectives:
        raise ObjectiveError("no objective given: pass --slo like p99=50ms")
    return tuple(objectives.values())


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether one step met every objective, and why not."""

    met: bool
    reasons: tuple[str, ...]  # one per objective missed, or the error share, or the generator
    percentiles: dict[str, int | None]  # objective name -> microseconds (None: beyond every answer)
    error_share: float
    generator_behind: bool = False


def judge(result: StepResult, objectives: Iterable[Objective], max_errors: float) -> Verdict:
    objectives = tuple(objectives)
    reasons = []
    percentiles: dict[str, int | None] = {}
    for objective in objectives:
        value = result.latency.value_at(objective.percentile, missing=result.failed)
        percentiles[objective.name] = value
        if value is None or value > objective.limit_us:
            shown = "beyond every answer" if value is None else format_us(value)
            reasons.append(f"{objective.name} {shown} > {format_us(objective.limit_us)}")
    error_share = result.failed / result.sent if result.sent else 0.0
    if error_share > max_errors:
        reasons.append(f"{error_share:.1%} failed > {max_errors:.1%}")
    median, tail = result.send_lag.value_at(50) or 0, result.send_lag.value_at(99) or 0
    tightest = min(o.limit_us for o in objectives)
    behind = median > max(GENERATOR_LAG_US, GENERATOR_LAG_SHARE * tightest) or tail > max(
        GENERATOR_LAG_US, GENERATOR_JITTER_SHARE * tightest
    )
    if behind:
        reasons.append(f"the generator fell behind (send lag p50 {format_us(median)}, p99 {format_us(tail)})")
    return Verdict(not reasons and result.sent > 0, tuple(reasons), percentiles, error_share, behind)


def format_us(us: float) -> str:
    """A duration in the unit that reads best: 850 us, 12.5 ms, 1.2 s."""
    if us < 1000:
        return f"{us:.0f} us"
    if us < 1_000_000:
        return f"{us / 1000:.3g} ms"
    return f"{us / 1_000_000:.3g} s"
