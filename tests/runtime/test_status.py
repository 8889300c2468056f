"""The probe decisions and the /status document, from plain readings (no processes)."""

from __future__ import annotations

import dataclasses

from asgiscale.runtime.metrics import Recorder, read, share_pairs
from asgiscale.runtime.shm import Block, Field, SlotTable, WorkerState
from asgiscale.runtime.status import History, Process, probe_health, probe_readiness, sample_of, status

SECOND = 1_000_000_000


def table_with(*states: WorkerState) -> SlotTable:
    table = SlotTable(4)
    for index, state in enumerate(states):
        slot = table.slot(index)
        slot.reset()
        slot.set(Field.PID, 100 + index)
        slot.set(Field.STATE, state)
    share_pairs(table, range(len(states)))
    return table


def fresh(table: SlotTable, heartbeat_age: float = 0.0):  # type: ignore[no-untyped-def]
    reading = read(table)
    reading.block[Block.HEARTBEAT_NS] = reading.taken_ns - int(heartbeat_age * SECOND)
    return reading


def test_health_needs_a_turning_supervisor_loop_and_a_live_worker() -> None:
    assert probe_health(fresh(table_with(WorkerState.BOOTING)))[0] is True
    assert probe_health(fresh(table_with())) == (False, "no worker is alive")
    stuck = probe_health(fresh(table_with(WorkerState.READY), heartbeat_age=20))
    assert stuck == (False, "the supervisor loop has not run for 20s")


def test_readiness_needs_a_ready_worker_that_passes_the_app_check_and_no_stop() -> None:
    assert probe_readiness(fresh(table_with(WorkerState.BOOTING)), app_check=False) == (
        False,
        "no worker is ready yet",
    )
    table = table_with(WorkerState.READY, WorkerState.DRAINING)
    assert probe_readiness(fresh(table), app_check=False) == (True, "1 worker(s) ready")
    assert probe_readiness(fresh(table), app_check=True)[0] is False
    table.slot(0).set(Field.APP_READY, 1)
    assert probe_readiness(fresh(table), app_check=True)[0] is True
    table.set(Block.STAGE, 1)
    assert probe_readiness(fresh(table), app_check=True) == (False, "the service is stopping")


def test_status_has_rates_and_percentiles_from_the_history() -> None:
    table = table_with(WorkerState.READY)
    recorder = Recorder(table.slot(0))
    history = History()
    first = read(table)
    history.add(sample_of(first, {}, wall=1000.0))
    for _ in range(50):
        recorder.record("GET", 200, 2_000_000)  # 2 ms
    recorder.record("GET", 503, 40_000_000)  # 40 ms
    recorder.flush()
    later = read(table)
    later = dataclasses.replace(later, taken_ns=first.taken_ns + 2 * SECOND)
    history.add(sample_of(later, {100: Process(1.0, 50 << 20, 25.0)}, wall=1002.0))
    document = status(
        later, history, procs={100: Process(1.0, 50 << 20, 25.0)}, events=[], info={"wall": 1002.0}, history_seconds=60
    )
    assert document["rates"]["requests_per_second"] == 25.5
    assert document["totals"]["requests"] == 51 and document["totals"]["errors"] == 1
    assert document["totals"]["by_status"] == {"200": 50, "503": 1}
    assert 0 < document["latency"]["p50"] <= 0.005 and 0.025 < document["latency"]["p99"] <= 0.05
    (point,) = document["history"]
    assert point["rps"] == 25.5 and point["errors_per_second"] == 0.5
    assert point["cpu_percent"] == {"100": 25.0} and point["rss_bytes"] == {"100": 50 << 20}
    (worker,) = document["workers"]
    assert worker["pid"] == 100 and worker["requests"] == 51 and worker["cpu_percent"] == 25.0
