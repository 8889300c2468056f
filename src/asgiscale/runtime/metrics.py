"""Request metrics in the shared slots: the worker's writer, the supervisor's fold, the readers' view.

A worker records each finished request into its own slot (`Recorder`); when a worker
dies the supervisor adds the slot's counts to the retired slot (`fold`); readers take a
consistent `Reading` of the whole table (`read`) and sum it (`Totals`). Counts of the dead
live on in the retired slot, under the same (method, status) pair: the supervisor makes
sure every pair a worker names has a retired series waiting (`share_pairs`, decided by
`asgiscale.runtime.pairs`), so no series ever goes backwards.

    >>> table = SlotTable(2)
    >>> share_pairs(table, [0])  # as the supervisor does before it forks a worker into slot 0
    >>> recorder = Recorder(table.slot(0))
    >>> recorder.record("GET", 200, 3_000_000)
    >>> recorder.flush()
    >>> Totals.of(read(table)).requests
    1
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import time
from collections.abc import Iterable

from asgiscale.runtime import pairs
from asgiscale.runtime.shm import (
    BLOCK_WORDS,
    BUCKETS,
    COUNTERS,
    DURATION_BUCKETS,
    HEADER_WORDS,
    SERIES,
    SERIES_SUM,
    SERIES_WORDS,
    Block,
    Field,
    Slot,
    SlotTable,
    WorkerState,
)

# OpenTelemetry's label value for a method outside the ones it names, and ours for both labels of the
# overflow series.
OTHER = "_OTHER"
METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE", OTHER)
_METHOD_CODE = {name: code for code, name in enumerate(METHODS, start=1)}
_OTHER_METHOD = _METHOD_CODE[OTHER]
# The series a slot's pairs share once they may not have one of their own.
OVERFLOW_KEY = _OTHER_METHOD << 16
BOUNDS_NS = [round(bound * 1e9) for bound in DURATION_BUCKETS]


def series_key(method: str, status: int) -> int:
    return _METHOD_CODE.get(method, _OTHER_METHOD) << 16 | status


def series_labels(key: int) -> tuple[str, int]:
    """(method, status) of a series key; status 0 is the overflow series."""
    return METHODS[(key >> 16) - 1], key & 0xFFFF


def label_values(key: int) -> tuple[str, str]:
    """The `http_request_method` and `http_response_status_code` of a series key, as exposed."""
    method, status = series_labels(key)
    return method, str(status) if status else OTHER


class Recorder:
    """The writing end of one worker's slot; only that worker may hold one.

    Each (method, status) pair the worker sees takes the next free series of the slot
    (`place`) if the retired slot has a series for it, or if the worker's allowance of pairs
    the retired slot lacks is not used up (`asgiscale.runtime.pairs`); once the slot's own
    series are all taken, or for a pair that may not have one, it shares the last one
    (`_OTHER`), for the worker's life. The compiled meter (`asgiscale.runtime._meter`) adds
    to a series' words in place. The pure-Python path gathers counts in plain lists instead
    (`counts`, a few list operations per request) and `flush` copies them into the slot: the
    worker does so on every 100 ms tick and when it stops, so only a worker killed outright
    (SIGKILL) loses its last unflushed counts. A worker uses one path or the other, never both.
    """

    def __init__(self, slot: Slot) -> None:
        self.words = slot.words
        self.slot = slot
        self.request_bytes = 0
        self.response_bytes = 0
        self.series: dict[str, dict[int, list[int]]] = {}  # method -> status -> buckets + [sum]
        self._places: dict[int, int] = {}  # series key -> its word index
        self._taken = 0  # the slot's own series given out so far
        self._lists: dict[int, list[int]] = {}  # word index -> the counts copied there

    def record(self, method: str, status: int, duration_ns: int) -> None:
        """One finished HTTP request."""
        counts = self.counts(method, status)
        counts[bisect.bisect_left(BOUNDS_NS, duration_ns)] += 1
        counts[BUCKETS] += duration_ns

    def place(self, method: str, status: int) -> int:
        """The word index of the series of (method, status) in the slot: its key, then one
        count per duration bucket, then the sum of durations (ns)."""
        pair = series_key(method, status)
        position = self._places.get(pair)
        if position is None:
            slot = self.slot
            if self._taken < slot.series - 1 and (self._taken < slot.get(Field.NAMES) or self._registered(pair)):
                key, position = pair, _series_position(slot, self._taken)
                self._taken += 1
            else:
                key, position = OVERFLOW_KEY, _series_position(slot, slot.series - 1)
            # The slot was reset at fork, so the counts are zero; the key makes the series visible.
            self.words[position] = key
            self._places[pair] = position
        return position

    def _registered(self, key: int) -> bool:
        """Whether the retired slot has a series for `key`: then it always will."""
        retired = self.slot.retired
        return retired is not None and key in _keys(self.words, retired)

    def counts(self, method: str, status: int) -> list[int]:
        """The counts of (method, status): one per duration bucket, then the sum of durations (ns)."""
        try:
            return self.series[method][status]
        except KeyError:
            position = self.place(method, status)
            counts = self._lists.setdefault(position, [0] * (BUCKETS + 1))
            self.series.setdefault(method, {})[status] = counts
            return counts

    def flush(self) -> None:
        words, base = self.words, self.slot.base
        words[base + Field.REQUEST_BYTES] = self.request_bytes
        words[base + Field.RESPONSE_BYTES] = self.response_bytes
        for position, counts in self._lists.items():
            words[position + 1 : position + 1 + BUCKETS + 1] = array.array("q", counts)


def fold(table: SlotTable, slot: Slot) -> None:
    """Add a dead worker's counts to the retired slot and free its slot, as one step for readers."""
    words = slot.read()
    retired = table.retired
    table.add(Block.SEQUENCE)  # odd: readers retry until the fold is over
    try:
        for field in COUNTERS:
            table.words[retired.base + field] += words[field]
        for key, offset in _series(words, slot.series):
            position = _find_series(table, retired, key)
            for i in range(1, SERIES_WORDS):
                table.words[position + i] += words[offset + i]
        slot.set(Field.STATE, WorkerState.EMPTY)
        slot.set(Field.PID, 0)
    finally:
        table.add(Block.SEQUENCE)


def share_pairs(table: SlotTable, live: Iterable[int]) -> None:
    """Give every pair the workers in the `live` slots named a retired series, and top up their
    allowances of pairs the retired slot lacks (`asgiscale.runtime.pairs`).

    The supervisor calls it on every tick, and for a slot it has just reset, before it forks a
    worker into it. Readers need no sequence: a retired series without counts adds nothing.
    """
    retired = table.retired
    slots = [table.slot(index) for index in live]
    workers = [pairs.Worker(frozenset(_keys(table.words, slot)), slot.get(Field.NAMES)) for slot in slots]
    registered = frozenset(_keys(table.words, retired))
    decided = pairs.plan(registered, room=retired.series - 1, own=SERIES - 1, workers=workers)
    for key in decided.register:
        _find_series(table, retired, key)
    for slot, allowed in zip(slots, decided.allowed, strict=True):
        slot.set(Field.NAMES, allowed)


def _find_series(table: SlotTable, slot: Slot, key: int) -> int:
    """The position of `key`'s series in the retired `slot`, given one if it has none."""
    last = _series_position(slot, slot.series - 1)
    if key != OVERFLOW_KEY:
        for index in range(slot.series - 1):
            position = _series_position(slot, index)
            found = table.words[position]
            if found == key:
                return position
            if found == 0:
                table.words[position] = key
                return position
    # Only for a pair never named, since share_pairs keeps a series for every named one.
    table.words[last] = OVERFLOW_KEY
    return last


def _series_position(slot: Slot, index: int) -> int:
    return slot.base + HEADER_WORDS + index * SERIES_WORDS


def _keys(words: memoryview, slot: Slot) -> list[int]:
    """The pairs `slot` gives a series of their own (not its overflow series), as keys."""
    start = _series_position(slot, 0)
    keys: list[int] = words[start : start + (slot.series - 1) * SERIES_WORDS : SERIES_WORDS].tolist()
    return [key for key in keys if key]


def _series(words: list[int], count: int) -> list[tuple[int, int]]:
    """(key, offset) of every series in use in a slot's words."""
    found = []
    for index in range(count):
        offset = HEADER_WORDS + index * SERIES_WORDS
        if words[offset]:
            found.append((words[offset], offset))
    return found


@dataclasses.dataclass(frozen=True)
class Reading:
    """Every word that matters, taken while no fold was under way."""

    block: list[int]
    workers: dict[int, list[int]]  # slot index -> the words of a slot in use
    retired: list[int]
    taken_ns: int  # time.monotonic_ns() of the reading

    def worker_slots(self) -> list[tuple[int, list[int]]]:
        return sorted(self.workers.items())


def read(table: SlotTable, attempts: int = 1000) -> Reading:
    """A consistent reading of the table: no dead worker counted twice or not at all."""
    words = table.words
    for _ in range(attempts):
        before = words[Block.SEQUENCE]
        if before % 2:
            time.sleep(0.0001)
            continue
        workers = {}
        for index in range(table.capacity):
            slot = table.slot(index)
            if words[slot.base + Field.STATE] != WorkerState.EMPTY:
                workers[index] = slot.read()
        reading = Reading(
            block=words[:BLOCK_WORDS].tolist(),
            workers=workers,
            retired=table.retired.read(),
            taken_ns=time.monotonic_ns(),
        )
        if words[Block.SEQUENCE] == before:
            return reading
    raise TimeoutError("the supervisor kept the metric table busy")


@dataclasses.dataclass(frozen=True)
class Totals:
    """Counts summed over live workers and retired ones."""

    counters: dict[Field, int]
    series: dict[int, tuple[list[int], int]]  # key -> (count per bucket, sum of durations in ns)

    @classmethod
    def of(cls, reading: Reading) -> Totals:
        return cls.sum([words for _, words in reading.worker_slots()] + [reading.retired])

    @classmethod
    def sum(cls, slots: list[list[int]]) -> Totals:
        """The totals of some slots' words (a worker slot or the retired one, which has more series)."""
        counters = {field: 0 for field in COUNTERS}
        series: dict[int, tuple[list[int], int]] = {}
        for words in slots:
            for field in COUNTERS:
                counters[field] += words[field]
            for key, offset in _series(words, (len(words) - HEADER_WORDS) // SERIES_WORDS):
                buckets, total = series.get(key, ([0] * BUCKETS, 0))
                added = [a + b for a, b in zip(buckets, words[offset + 1 : offset + 1 + BUCKETS], strict=True)]
                series[key] = (added, total + words[offset + SERIES_SUM])
        return cls(counters, series)

    @property
    def requests(self) -> int:
        """HTTP requests answered (the count of the duration histogram)."""
        return sum(sum(buckets) for buckets, _ in self.series.values())

    @property
    def errors(self) -> int:
        """HTTP requests answered with a 5xx status."""
        return sum(sum(buckets) for key, (buckets, _) in self.series.items() if series_labels(key)[1] >= 500)

    def buckets(self) -> list[int]:
        """Requests per duration bucket, over every method and status."""
        merged = [0] * BUCKETS
        for buckets, _ in self.series.values():
            merged = [a + b for a, b in zip(merged, buckets, strict=True)]
        return merged


def quantile(q: float, buckets: list[int]) -> float | None:
    """The q-quantile (seconds) of counts per duration bucket, interpolated inside the bucket.

    Like Prometheus's histogram_quantile: a value past the last bound is reported as that bound.
    """
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index == len(DURATION_BUCKETS):
                return DURATION_BUCKETS[-1]
            lower = DURATION_BUCKETS[index - 1] if index else 0.0
            upper = DURATION_BUCKETS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return DURATION_BUCKETS[-1]
