"""Per-worker slots in one anonymous shared-memory block.

The supervisor maps the block before it forks anything, so the pre-loaded process and
every worker inherit the same pages. Each slot has exactly one writer, the worker that
owns it; the supervisor only resets a slot while no worker owns it, and reads the others
without locks (aligned 8-byte words are written whole on every platform we run on).

    >>> table = SlotTable(4)
    >>> slot = table.slot(0)
    >>> slot.reset()
    >>> slot.requests
    0
"""

from __future__ import annotations

import enum
import mmap

WORD = 8  # bytes per field: every field is a signed 64-bit integer
SLOT_WORDS = 64


class WorkerState(enum.IntEnum):
    EMPTY = 0
    BOOTING = 1
    READY = 2
    DRAINING = 3


class Field(enum.IntEnum):
    """Word offsets inside a slot."""

    PID = 0
    STATE = 1
    HEARTBEAT_NS = 2  # time.monotonic_ns() of the worker's last event-loop tick
    REQUESTS = 3  # requests started, all kinds
    IN_FLIGHT = 4


class Slot:
    """One worker's view of its own words (and the supervisor's view of them)."""

    __slots__ = ("_words", "_base", "index")

    def __init__(self, words: memoryview, index: int) -> None:
        self._words = words
        self._base = index * SLOT_WORDS
        self.index = index

    @property
    def words(self) -> memoryview:
        return self._words

    def position(self, field: Field) -> int:
        """Absolute index of `field` in `words`, for hot paths that skip the method calls."""
        return self._base + int(field)

    def reset(self) -> None:
        for offset in range(SLOT_WORDS):
            self._words[self._base + offset] = 0

    def get(self, field: Field) -> int:
        return int(self._words[self._base + field])

    def set(self, field: Field, value: int) -> None:
        self._words[self._base + field] = value

    @property
    def pid(self) -> int:
        return self.get(Field.PID)

    @property
    def state(self) -> WorkerState:
        return WorkerState(self.get(Field.STATE))

    @property
    def heartbeat_ns(self) -> int:
        return self.get(Field.HEARTBEAT_NS)

    @property
    def requests(self) -> int:
        return self.get(Field.REQUESTS)

    @property
    def in_flight(self) -> int:
        return self.get(Field.IN_FLIGHT)


class SlotTable:
    """A fixed number of slots in anonymous shared memory, inherited across fork."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, capacity * SLOT_WORDS * WORD)
        self._words = memoryview(self._map).cast("q")

    def slot(self, index: int) -> Slot:
        if not 0 <= index < self.capacity:
            raise IndexError(f"slot {index} outside 0..{self.capacity - 1}")
        return Slot(self._words, index)
