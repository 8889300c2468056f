"""Which (method, status) pairs get a series of their own, so that no count ever goes backwards: pure.

A worker gives each pair it answers a series of its own in its slot ("names" it), and the
pair is visible on /metrics from then on. When the worker dies its counts move to the
retired slot, whose series are bounded too; a pair that found no retired series of its own
there would fall into the `_OTHER` series and its visible count would drop. So a pair, once
named anywhere, must be sure of a retired series. The supervisor makes sure of it:

* on every tick it gives each pair a live worker named a retired series of its own at once
  (with no counts yet: the worker still holds them), so that any worker may name that
  pair from then on;
* each worker may name pairs the retired slot lacks only within an *allowance* the
  supervisor grants it out of the retired series nobody has claimed yet, and never lowers.

So the retired slot always has room for every pair the live workers can name, and a pair
never seen before overflows into `_OTHER` only once the retired series are all claimed.
Both sides read without locks: a worker compares its count of named series with its
allowance, and the supervisor reads a worker's pairs knowing that only more may appear.

    >>> plan(frozenset(), room=255, own=31, workers=[Worker(frozenset(), allowed=0)])
    Plan(register=[], allowed=[31])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Worker:
    """A live worker as the supervisor reads its slot."""

    keys: frozenset[int]  # the pairs it named (series keys), in the order it met them or not
    allowed: int  # it names a pair the retired slot lacks only while it has named fewer pairs than this


@dataclasses.dataclass(frozen=True)
class Plan:
    register: list[int]  # pairs that get their retired series now
    allowed: list[int]  # each worker's allowance, in the order given; never lower than before


def plan(registered: frozenset[int], *, room: int, own: int, workers: Sequence[Worker]) -> Plan:
    """The pairs to register and the workers' new allowances.

    `registered`: the pairs the retired slot holds; `room`: the retired series for named
    pairs; `own`: the series a worker slot has for named pairs. The retired series nobody
    has claimed are shared out evenly among the live workers, the first ones taking any remainder.
    """
    seen = frozenset().union(*(w.keys for w in workers))
    register = sorted(seen - registered)[: max(room - len(registered), 0)]
    claimed = len(registered) + len(register)
    # What each worker may still name without asking: its reserve of retired series.
    spare = [_spare(w, own) for w in workers]
    free = room - claimed - sum(spare)
    share = -(-(room - claimed) // max(len(workers), 1))  # rounded up: no series is left to nobody
    allowed = []
    for worker, reserve in zip(workers, spare, strict=True):
        extra = min(max(min(share, own - len(worker.keys)) - reserve, 0), max(free, 0))
        free -= extra
        allowed.append(len(worker.keys) + reserve + extra if extra else worker.allowed)
    return Plan(register, allowed)


def _spare(worker: Worker, own: int) -> int:
    """How many more pairs the retired slot lacks `worker` may name: within its allowance and its slot."""
    return max(min(worker.allowed, own) - len(worker.keys), 0)
