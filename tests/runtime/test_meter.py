"""The request meters, compiled and pure Python, against a request cycle of our own.

Both meters must leave the same words in the slot for the same requests: the compiled one is
only a faster way to count (see the live tests in test_instrument.py for uvicorn's cycles).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from asgiscale.runtime.instrument import Instrumentation
from asgiscale.runtime.metrics import BOUNDS_NS, Recorder, Totals, series_labels, share_pairs
from asgiscale.runtime.shm import Field, SlotTable
from tests.conftest import require_compiled_meter

App = Callable[[Any, Any, Any], Any]


class Cycle:
    """The part of uvicorn's RequestResponseCycle a meter relies on; `sent` keeps what reached it."""

    def __init__(self, method: str = "GET") -> None:
        self.scope = {"type": "http", "method": method}
        self.sent: list[Any] = []

    async def run_asgi(self, app: App) -> None:
        await app(self.scope, self.receive, self.send)

    async def send(self, message: Any) -> None:
        self.sent.append(message)

    async def receive(self) -> Any:
        return {"type": "http.request", "body": b"abc", "more_body": False}


def answer(status: int, *chunks: bytes) -> App:
    chunks = chunks or (b"",)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": status, "headers": []})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


def measured(compiled: bool) -> tuple[Instrumentation, type, SlotTable]:
    table = SlotTable(1)
    share_pairs(table, [0])
    instrumentation = Instrumentation(Recorder(table.slot(0)), compiled=compiled)
    return instrumentation, instrumentation.cycle_class(Cycle), table


def words(table: SlotTable) -> list[int]:
    return table.slot(0).read()


@pytest.fixture
def both() -> None:
    """Tests comparing the two meters need the compiled one built."""
    require_compiled_meter()


@pytest.mark.usefixtures("both")
def test_both_meters_count_the_same_requests_the_same_way() -> None:
    requests = [("GET", answer(200, b"hello")), ("POST", answer(201, b"a", b"bc", b"")), ("GET", answer(404, b""))]
    requests += [("DELETE", answer(204)), ("GET", answer(200, b"x" * 1000)), ("BREW", answer(418, b"tea"))]
    for compiled in (True, False):
        instrumentation, cycle_class, table = measured(compiled)
        for method, app in requests:
            asyncio.run(cycle_class(method).run_asgi(app))
        instrumentation.flush()
        assert instrumentation.active == 0
        assert instrumentation.busy_ns() > 0
        totals = Totals.sum([words(table)])
        counts = {series_labels(key): sum(buckets) for key, (buckets, _) in totals.series.items()}
        assert counts == {("GET", 200): 2, ("POST", 201): 1, ("GET", 404): 1, ("DELETE", 204): 1, ("_OTHER", 418): 1}
        assert totals.counters[Field.RESPONSE_BYTES] == 5 + 3 + 1000 + 3
        assert totals.counters[Field.REQUEST_BYTES] == 3 * len(requests)
    # Not the buckets: a request here takes microseconds, or milliseconds on a busy machine. The next test gives both
    # meters the same durations and compares where they fall.


@pytest.mark.usefixtures("both")
def test_durations_fall_in_the_same_buckets_and_overflowing_pairs_share_the_last_series() -> None:
    durations = [0, 1, *BOUNDS_NS, *(bound + 1 for bound in BOUNDS_NS), 10**13]
    slots = []
    for compiled in (True, False):
        instrumentation, _, table = measured(compiled)
        instrumentation.cycle_class(Cycle)
        for status in range(200, 240):  # more pairs than a slot has series
            for duration in durations:
                instrumentation.meter.count("GET", status, duration)
        instrumentation.flush()
        slots.append(words(table))
    assert slots[0] == slots[1]
    totals = Totals.sum([slots[0]])
    assert totals.requests == 40 * len(durations)
    assert sum(buckets[0] for buckets, _ in totals.series.values()) == 40 * 3  # 0, 1 and exactly 5 ms


def test_a_streamed_response_is_one_request_counted_when_its_last_part_is_sent(meter: bool) -> None:
    instrumentation, cycle_class, table = measured(meter)
    cycle = cycle_class()
    gate = asyncio.Event()

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await gate.wait()
        await send({"type": "http.response.body", "body": b"end", "more_body": False})

    async def scenario() -> None:
        task = asyncio.create_task(cycle.run_asgi(stream))
        await asyncio.sleep(0.01)
        assert instrumentation.active == 1
        gate.set()
        await task

    asyncio.run(scenario())
    instrumentation.flush()
    assert instrumentation.active == 0
    assert Totals.sum([words(table)]).requests == 1
    assert [m.get("body") for m in cycle.sent[1:]] == [b"part", b"end"]


def test_messages_the_meter_does_not_know_reach_the_cycle_untouched(meter: bool) -> None:
    instrumentation, cycle_class, table = measured(meter)
    # Not all valid ASGI: rejecting them is uvicorn's send's job, not the meter's.
    odd: list[Any] = [{"type": "http.response.body", "body": None}, {"type": "http.response.body", "more_body": "yes"}]
    odd += [{"type": 42}, {"type": "http.response.trailers"}, {"type": "http.response.start", "status": "200"}]
    cycle = cycle_class()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in odd:
            await send(message)

    asyncio.run(cycle.run_asgi(app))
    assert cycle.sent == odd
    assert all(a is b for a, b in zip(cycle.sent, odd, strict=True))


def test_the_meter_keeps_no_reference_to_a_finished_request(meter: bool) -> None:
    instrumentation, cycle_class, _ = measured(meter)
    cycle = cycle_class()
    asyncio.run(cycle.run_asgi(answer(200, b"ok")))
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None
    assert instrumentation.active == 0


def test_the_compiled_meter_counts_in_the_slot_at_once_the_python_one_at_each_flush(meter: bool) -> None:
    instrumentation, cycle_class, table = measured(meter)
    asyncio.run(cycle_class().run_asgi(answer(200, b"ok")))
    # A worker killed outright (SIGKILL) loses nothing from the compiled meter; the
    # pure-Python one loses what it gathered since its last 100 ms tick.
    assert Totals.sum([words(table)]).requests == (1 if meter else 0)
    instrumentation.flush()
    assert Totals.sum([words(table)]).requests == 1
