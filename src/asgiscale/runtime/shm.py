"""Per-worker slots and the supervisor's block, in one anonymous shared-memory map.

The supervisor maps the block before it forks anything, so the admin process, the
pre-loaded processes and every worker inherit the same pages. Each slot has exactly one
writer, the worker that owns it, but for its allowance of pairs (`Field.NAMES`); the
supervisor writes its own block and the retired slot, and when a worker has died it folds
the slot's final counts into the retired slot. Readers take no locks:
aligned 8-byte words are written whole on every platform we run on, and the fold is
published under a sequence counter (see `asgiscale.runtime.metrics.read`).

A slot is a header of single words (`Field`) followed by `SERIES` request series, one
per (method, status) pair the worker has named (`asgiscale.runtime.pairs`): a key word,
one count per duration bucket and the sum of durations in nanoseconds.

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

# Upper bounds (seconds) of the request duration buckets: the ones the OpenTelemetry HTTP
# semantic conventions advise for http.server.request.duration. A last bucket has no bound.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BUCKETS = len(DURATION_BUCKETS) + 1


class WorkerState(enum.IntEnum):
    EMPTY = 0
    BOOTING = 1
    READY = 2
    DRAINING = 3


class Field(enum.IntEnum):
    """Word offsets inside a slot's header."""

    PID = 0
    STATE = 1
    HEARTBEAT_NS = 2  # time.monotonic_ns() of the worker's last event-loop tick
    REQUESTS = 3  # HTTP responses finished, served or shed, as uvicorn counts them (--limit-max-requests)
    IN_FLIGHT = 4  # HTTP requests being answered
    STARTED_NS = 5  # time.time_ns() when the worker was forked
    GENERATION = 6  # the code generation the worker runs
    APP_READY = 7  # the --readiness check: 1 passed, 0 not yet or failed
    WS_ACTIVE = 8
    WS_TOTAL = 9  # WebSocket connections accepted for handling
    BUSY_NS = 10  # time with at least one HTTP request in flight
    REQUEST_BYTES = 11  # request bodies received by the app
    RESPONSE_BYTES = 12  # response bodies sent by the app
    QUEUED = 13  # requests that waited for admission
    QUEUE_WAIT_NS = 14  # their total wait
    SHED = 15  # requests refused by admission control
    NAMES = 16  # the worker's allowance of pairs the retired slot lacks (written by the supervisor, never lowered)
    MALFORMED = 17  # requests uvicorn's HTTP parser refused with 400, without calling the app


HEADER_WORDS = 24  # room for fields to come
# Header fields that count up for the life of a worker and are kept when it dies. WS_TOTAL
# and BUSY_NS are copied in on the worker's 100 ms tick: a SIGKILL loses at most that much.
COUNTERS = (
    Field.WS_TOTAL,
    Field.BUSY_NS,
    Field.REQUEST_BYTES,
    Field.RESPONSE_BYTES,
    Field.QUEUED,
    Field.QUEUE_WAIT_NS,
    Field.SHED,
    Field.MALFORMED,
)

SERIES = 32  # distinct (method, status) pairs per worker slot; the rest share the last one
# The retired slot gathers the pairs of every worker that ever ran, so it has room for more; once its
# series are all claimed, pairs never seen before share its last one.
RETIRED_SERIES = 256
SERIES_WORDS = 1 + BUCKETS + 1  # key, bucket counts, sum of durations (ns)
SERIES_SUM = 1 + BUCKETS  # offset of the sum inside a series
SLOT_WORDS = HEADER_WORDS + SERIES * SERIES_WORDS
RETIRED_WORDS = HEADER_WORDS + RETIRED_SERIES * SERIES_WORDS


class Block(enum.IntEnum):
    """Word offsets inside the supervisor's block."""

    SEQUENCE = 0  # odd while the supervisor folds a slot into the retired totals
    PID = 1
    HEARTBEAT_NS = 2  # time.monotonic_ns() of the supervisor loop's last turn
    STAGE = 3  # 0 running, 1 told to stop (still serving), 2 draining
    TARGET = 4  # workers wanted
    GENERATION = 5
    STARTED_NS = 6  # time.time_ns() when the supervisor started
    SCALE_UP = 7
    SCALE_DOWN = 8
    RESTARTS = 9  # first of len(RESTART_REASONS) counters


# Why a worker was replaced; the order fixes the words of Block.RESTARTS.
RESTART_REASONS = ("crash", "timeout", "startup-timeout", "reload", "max-requests")
BLOCK_WORDS = 32


class Slot:
    """One worker's view of its own words (and the supervisor's view of them)."""

    __slots__ = ("_words", "base", "index", "retired", "series", "size")

    def __init__(self, words: memoryview, index: int, series: int = SERIES, retired: Slot | None = None) -> None:
        self._words = words
        self.base = BLOCK_WORDS + index * SLOT_WORDS
        self.index = index
        self.series = series
        self.size = HEADER_WORDS + series * SERIES_WORDS
        self.retired = retired  # the table's retired slot, for a worker slot

    @property
    def words(self) -> memoryview:
        return self._words

    def reset(self) -> None:
        for offset in range(self.size):
            self._words[self.base + offset] = 0

    def get(self, field: Field) -> int:
        return int(self._words[self.base + field])

    def set(self, field: Field, value: int) -> None:
        self._words[self.base + field] = value

    def read(self) -> list[int]:
        """A copy of every word of the slot."""
        return self._words[self.base : self.base + self.size].tolist()

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
    """The supervisor's block, `capacity` worker slots and the retired slot, inherited across fork."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, (BLOCK_WORDS + capacity * SLOT_WORDS + RETIRED_WORDS) * WORD)
        self.words = memoryview(self._map).cast("q")
        self.retired = Slot(self.words, capacity, RETIRED_SERIES)

    def slot(self, index: int) -> Slot:
        if not 0 <= index < self.capacity:
            raise IndexError(f"slot {index} outside 0..{self.capacity - 1}")
        return Slot(self.words, index, retired=self.retired)

    def get(self, field: Block) -> int:
        return int(self.words[field])

    def set(self, field: Block | int, value: int) -> None:
        self.words[field] = value

    def add(self, field: Block | int, amount: int = 1) -> None:
        self.words[field] += amount
