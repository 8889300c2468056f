"""The metric slots as pure data: recording, folding the dead, reading consistently."""

from __future__ import annotations

import random
import sys
import threading

import pytest

from asgiscale.runtime import metrics
from asgiscale.runtime.metrics import (
    OVERFLOW_KEY,
    Recorder,
    Totals,
    fold,
    label_values,
    quantile,
    read,
    series_key,
    series_labels,
    share_pairs,
)
from asgiscale.runtime.shm import BUCKETS, RETIRED_SERIES, SERIES, Block, Field, SlotTable, WorkerState


def live_slot(table: SlotTable, index: int, pid: int, live: tuple[int, ...] = ()) -> Recorder:
    """A worker in slot `index`, forked as the supervisor does it: slot reset, then its allowance of pairs."""
    slot = table.slot(index)
    slot.reset()
    share_pairs(table, [*live, index])
    slot.set(Field.PID, pid)
    slot.set(Field.STATE, WorkerState.READY)
    return Recorder(slot)


def by_label(totals: Totals) -> dict[tuple[str, int], int]:
    return {series_labels(key): sum(buckets) for key, (buckets, _) in totals.series.items()}


def test_requests_land_in_their_method_status_and_duration_bucket() -> None:
    table = SlotTable(2)
    recorder = live_slot(table, 0, 100)
    recorder.record("GET", 200, 3_000_000)  # 3 ms: first bucket (le 0.005)
    recorder.record("GET", 200, 5_000_000)  # exactly on a bound: that bucket (le is inclusive)
    recorder.record("POST", 201, 80_000_000)  # 80 ms: le 0.1
    recorder.record("BREW", 418, 20_000_000_000)  # 20 s: past the last bound
    recorder.request_bytes, recorder.response_bytes = 7, 10
    assert Totals.of(read(table)).requests == 0  # nothing is shared before the flush
    recorder.flush()
    totals = Totals.of(read(table))
    assert by_label(totals) == {("GET", 200): 2, ("POST", 201): 1, ("_OTHER", 418): 1}
    get_buckets, get_sum = totals.series[metrics.series_key("GET", 200)]
    assert get_buckets[0] == 2 and get_sum == 8_000_000
    post_buckets, _ = totals.series[metrics.series_key("POST", 201)]
    assert post_buckets[5] == 1  # (0.075, 0.1]
    assert totals.series[metrics.series_key("BREW", 418)][0][BUCKETS - 1] == 1
    assert totals.requests == 4
    assert totals.counters[Field.RESPONSE_BYTES] == 10 and totals.counters[Field.REQUEST_BYTES] == 7


def test_pairs_beyond_the_slot_share_the_overflow_series() -> None:
    table = SlotTable(1)
    recorder = live_slot(table, 0, 100)
    for status in range(200, 200 + SERIES + 5):
        recorder.record("GET", status, 1)
    recorder.flush()
    labels = by_label(Totals.of(read(table)))
    assert len(labels) == SERIES
    assert labels[("_OTHER", 0)] == 6  # the last own series is the overflow one
    assert sum(labels.values()) == SERIES + 5


def test_the_overflow_series_is_labelled_other_twice_and_a_method_outside_the_standard_ones_once() -> None:
    assert label_values(OVERFLOW_KEY) == ("_OTHER", "_OTHER")
    assert label_values(series_key("BREW", 418)) == ("_OTHER", "418")
    assert label_values(series_key("GET", 200)) == ("GET", "200")


def test_a_worker_names_a_pair_the_retired_slot_lacks_only_within_its_allowance() -> None:
    table = SlotTable(2)
    recorder = live_slot(table, 0, 100)
    table.slot(0).set(Field.NAMES, 2)  # as if the retired series were nearly all claimed
    table.words[table.retired.base + metrics.HEADER_WORDS] = series_key("GET", 503)  # registered: always nameable
    for status in (200, 201, 202, 503):
        recorder.record("GET", status, 1)
    recorder.flush()
    assert by_label(Totals.sum([table.slot(0).read()])) == {
        ("GET", 200): 1,
        ("GET", 201): 1,
        ("GET", 503): 1,
        ("_OTHER", 0): 1,
    }


def test_a_dead_workers_overflow_goes_to_the_retired_overflow_series_and_claims_no_named_one() -> None:
    table = SlotTable(1)
    recorder = live_slot(table, 0, 100)
    for status in range(200, 200 + SERIES + 1):
        recorder.record("GET", status, 1)
    recorder.flush()
    fold(table, table.slot(0))
    retired = table.retired.read()
    keys = [retired[metrics.HEADER_WORDS + i * metrics.SERIES_WORDS] for i in range(RETIRED_SERIES)]
    assert keys[SERIES - 1] == 0 and keys[-1] == OVERFLOW_KEY
    assert by_label(Totals.of(read(table)))[("_OTHER", 0)] == 2


def test_no_series_ever_goes_backwards_when_workers_name_more_pairs_than_the_retired_slot_holds() -> None:
    # Three slots of workers living 40 requests each, answering 5 methods x 120 statuses at random: more pairs than
    # the retired slot has series. The supervisor shares the pairs on each tick (every 10 requests here).
    rng = random.Random(17)
    pairs = [(method, status) for method in ("GET", "PUT", "POST", "DELETE", "PATCH") for status in range(400, 520)]
    table = SlotTable(3)
    live = {index: live_slot(table, index, 100 + index, tuple(range(index))) for index in range(3)}
    served = dict.fromkeys(live, 0)
    seen: dict[tuple[str, int], int] = {}
    for request in range(3000):
        index = rng.randrange(3)
        recorder = live[index]
        recorder.record(*rng.choice(pairs), 1_000)
        recorder.flush()
        served[index] += 1
        died = served[index] == 40
        if died:
            fold(table, table.slot(index))
            others = tuple(i for i in live if i != index)
            live[index], served[index] = live_slot(table, index, 1000 + request, others), 0
        if request % 10 == 0:
            share_pairs(table, live)
        if died or request % 10 == 0:
            now = by_label(Totals.of(read(table)))
            assert all(now.get(label, -1) >= count for label, count in seen.items()), "a series went backwards"
            seen = now
    totals = Totals.of(read(table))
    assert totals.requests == 3000
    retired = Totals.sum([table.retired.read()])
    assert len(retired.series) == RETIRED_SERIES  # every retired series named, and the overflow one in use


def test_a_dead_workers_counts_are_kept_and_its_slot_freed() -> None:
    table = SlotTable(3)
    first, second = live_slot(table, 0, 100), live_slot(table, 1, 101)
    for _ in range(5):
        first.record("GET", 200, 1_000)
    second.record("GET", 500, 1_000)
    first.flush()
    second.flush()
    table.slot(0).set(Field.WS_TOTAL, 5)
    before = Totals.of(read(table))
    fold(table, table.slot(0))
    after_reading = read(table)
    after = Totals.of(after_reading)
    assert set(after_reading.workers) == {1}
    assert by_label(after) == by_label(before) == {("GET", 200): 5, ("GET", 500): 1}
    assert after.counters[Field.WS_TOTAL] == 5
    # The slot is reused by a new worker: nothing is counted twice, nothing lost.
    third = live_slot(table, 0, 102)
    third.record("GET", 200, 1_000)
    third.flush()
    assert by_label(Totals.of(read(table))) == {("GET", 200): 6, ("GET", 500): 1}
    assert table.get(Block.SEQUENCE) == 2


def test_readers_never_see_a_fold_half_done() -> None:
    table = SlotTable(2)
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(Totals.of(read(table)).requests)

    thread = threading.Thread(target=reader)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # let the reader run between any two steps of a fold
    thread.start()
    try:
        for pid in range(200):
            recorder = live_slot(table, pid % 2, 1000 + pid)
            recorder.record("GET", 200, 1)
            recorder.flush()
            fold(table, table.slot(pid % 2))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert seen == sorted(seen), "a total went backwards"
    assert Totals.of(read(table)).requests == 200


def test_quantiles_interpolate_like_prometheus() -> None:
    buckets = [0] * BUCKETS
    assert quantile(0.5, buckets) is None
    buckets[0] = 100  # all within 5 ms
    assert quantile(0.5, buckets) == pytest.approx(0.0025)
    buckets[BUCKETS - 1] = 100  # half past 10 s: reported as the last bound
    assert quantile(0.99, buckets) == 10.0
