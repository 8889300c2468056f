"""The supervisor's decisions, with a fake clock: no processes, no sleeps."""

from __future__ import annotations

import random

import pytest

from asgiscale.runtime.fleet import AbandonGeneration, Drain, Exit, Fatal, Fleet, Kill, Phase, Spawn

CRASH = Exit(code=1)


class Harness:
    """Executes a fleet's plan the way the supervisor does, with made-up pids."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.next_pid = 100
        self.now = 0.0

    def step(self, dt: float = 0.1) -> list[object]:
        self.now += dt
        actions = self.fleet.plan(self.now)
        for action in actions:
            if isinstance(action, Spawn):
                self.next_pid += 1
                self.fleet.spawned(self.next_pid, self.next_pid % 64, action.generation, self.now)
        return list(actions)

    def ready_all(self) -> None:
        for worker in list(self.fleet.workers.values()):
            if worker.phase is Phase.BOOTING:
                self.fleet.observe(worker.pid, ready=True, heartbeat=self.now, requests=0, now=self.now)

    def beat_all(self) -> None:
        for worker in self.fleet.workers.values():
            self.fleet.observe(
                worker.pid,
                ready=worker.phase is not Phase.BOOTING,
                heartbeat=self.now,
                requests=worker.requests,
                now=self.now,
            )

    def phases(self) -> list[tuple[int, str]]:
        return sorted((w.generation, w.phase.value) for w in self.fleet.workers.values())


def started(workers: int = 2, **kwargs: object) -> Harness:
    fleet = Fleet(target=workers, graceful_timeout=30, worker_timeout=5, **kwargs)  # type: ignore[arg-type]
    fleet.start_generation(1)
    harness = Harness(fleet)
    harness.step()
    harness.ready_all()
    return harness


def test_nothing_spawns_before_code_is_loaded() -> None:
    fleet = Fleet(target=3, graceful_timeout=30, worker_timeout=5)
    assert fleet.plan(0.0) == []
    fleet.start_generation(1)
    assert fleet.plan(0.0) == [Spawn(1, "start")] * 3


def test_steady_state_does_nothing() -> None:
    h = started(3)
    h.beat_all()
    assert h.step() == []


def test_crashed_worker_is_replaced_immediately() -> None:
    h = started(2)
    pid = next(iter(h.fleet.workers))
    h.fleet.exited(pid, Exit(signal=9), h.now)
    assert h.step() == [Spawn(1, "replace")]
    assert h.fleet.restarts["crash"] == 1


def test_a_higher_target_spawns_scale_ups_and_a_crash_at_the_same_time_one_replacement() -> None:
    h = started(2)
    h.beat_all()
    h.fleet.exited(next(iter(h.fleet.workers)), Exit(signal=9), h.now)
    h.fleet.target = 4
    assert h.step() == [Spawn(1, "replace"), Spawn(1, "scale-up"), Spawn(1, "scale-up")]


def test_workers_that_were_serving_are_replaced_at_once_however_often_they_die() -> None:
    h = started(1)
    for _ in range(10):
        h.fleet.exited(next(iter(h.fleet.workers)), CRASH, h.now)
        assert h.step(0.01) == [Spawn(1, "replace")]
        h.ready_all()
    assert h.fleet.restarts["crash"] == 10


def die_while_booting(h: Harness, times: int) -> list[float]:
    """Let the booting worker die `times` times; the delay before each replacement."""
    delays = []
    for _ in range(times):
        booting = next(w for w in h.fleet.workers.values() if w.phase is Phase.BOOTING)
        h.fleet.exited(booting.pid, CRASH, h.now)
        died_at = h.now
        while not any(isinstance(a, Spawn) for a in h.step(0.01)):
            pass
        delays.append(round(h.now - died_at, 2))
    return delays


def test_workers_of_proven_code_that_die_before_they_are_ready_back_off_exponentially() -> None:
    h = started(2)
    h.fleet.target = 3
    h.step()
    assert die_while_booting(h, 6) == pytest.approx([0.01, 0.1, 0.2, 0.4, 0.8, 1.6], abs=0.011)


def test_while_booting_workers_back_off_a_serving_worker_that_dies_is_still_replaced_first() -> None:
    h = started(2)
    h.fleet.target = 3
    h.step()
    die_while_booting(h, 4)
    booting = next(w for w in h.fleet.workers.values() if w.phase is Phase.BOOTING)
    h.fleet.exited(booting.pid, CRASH, h.now)  # the fifth in a row: its replacement waits 0.8 s
    serving = next(w for w in h.fleet.workers.values() if w.phase is Phase.READY)
    h.fleet.exited(serving.pid, CRASH, h.now)
    assert h.step(0.01) == [Spawn(1, "replace")]  # the serving worker's replacement, at once
    assert h.step(0.01) == []
    h.now += 0.8
    assert h.step(0.01) == [Spawn(1, "replace")]


def test_thirty_seconds_without_a_failed_boot_resets_the_back_off() -> None:
    h = started(2)
    h.fleet.target = 3
    h.step()
    die_while_booting(h, 5)
    h.now += 30
    assert die_while_booting(h, 2) == pytest.approx([0.01, 0.1], abs=0.011)


def test_a_worker_that_served_a_request_was_ready_however_soon_it_died() -> None:
    fleet = Fleet(target=2, graceful_timeout=30, worker_timeout=5)
    fleet.start_generation(1)
    h = Harness(fleet)
    h.step()
    first = next(iter(fleet.workers))
    # Its slot says BOOTING (READY not observed yet), but it answered a request: the code starts.
    fleet.observe(first, ready=False, heartbeat=h.now, requests=1, now=h.now)
    fleet.exited(first, Exit(signal=9), h.now)
    assert h.step() == [Spawn(1, "replace")]


def test_first_generation_failing_to_start_is_fatal_not_a_loop() -> None:
    fleet = Fleet(target=2, graceful_timeout=30, worker_timeout=5)
    fleet.start_generation(1)
    h = Harness(fleet)
    h.step()
    pid = next(iter(fleet.workers))
    fleet.exited(pid, Exit(code=3), h.now)
    actions = h.step()
    assert actions == [Fatal(f"worker {pid} failed to start (exit code 3)")]


def test_reload_that_cannot_start_falls_back_to_the_running_code() -> None:
    h = started(2)
    h.fleet.start_generation(2)
    assert h.step() == [Spawn(2, "reload")]
    new = max(h.fleet.workers)
    h.fleet.exited(new, Exit(code=3), h.now)
    actions = h.step()
    assert isinstance(actions[0], AbandonGeneration) and actions[0].generation == 2
    assert h.fleet.generation == 1
    assert h.step() == []
    assert h.phases() == [(1, "ready"), (1, "ready")]


def test_rolling_reload_keeps_capacity_and_replaces_one_at_a_time() -> None:
    h = started(3)
    h.fleet.start_generation(2)
    history = []
    for _ in range(20):
        h.step()
        ready = sum(1 for w in h.fleet.workers.values() if w.phase is Phase.READY)
        booting = sum(1 for w in h.fleet.workers.values() if w.phase is Phase.BOOTING)
        history.append((ready, booting))
        assert ready >= 3, "capacity dropped below the target during the reload"
        assert booting <= 1, "more than one replacement at a time"
        h.ready_all()
        for w in [w for w in h.fleet.workers.values() if w.phase is Phase.DRAINING]:
            h.fleet.exited(w.pid, Exit(code=0), h.now)
    assert h.phases() == [(2, "ready")] * 3
    assert h.fleet.restarts["reload"] == 3
    assert h.fleet.generations_in_use == {2}


def test_blocked_worker_is_killed_after_worker_timeout() -> None:
    h = started(2)
    h.beat_all()
    stuck = min(h.fleet.workers)
    for _ in range(49):
        h.now += 0.1
        for w in h.fleet.workers.values():
            if w.pid != stuck:
                h.fleet.observe(w.pid, ready=True, heartbeat=h.now, requests=0, now=h.now)
        assert not [a for a in h.fleet.plan(h.now) if isinstance(a, Kill)]
    h.now += 0.2
    # The replacement starts at once, while the stuck worker is being killed.
    assert h.step(0) == [Kill(stuck, "timeout"), Spawn(1, "replace")]
    assert h.step(0) == []  # killed once
    h.fleet.exited(stuck, Exit(signal=9), h.now)
    assert h.fleet.restarts["timeout"] == 1
    assert h.step() == []


def test_draining_worker_is_killed_after_graceful_timeout() -> None:
    h = started(2)
    h.fleet.target = 1
    drained = [a for a in h.step() if isinstance(a, Drain)]
    assert len(drained) == 1
    h.now += 30 + 4.9
    h.beat_all()
    assert h.fleet.plan(h.now) == []
    h.now += 0.2
    h.beat_all()
    assert h.fleet.plan(h.now) == [Kill(drained[0].pid, "graceful-timeout")]


def test_scale_down_drains_the_newest_and_never_below_target() -> None:
    h = started(3)
    newest = max(h.fleet.workers)
    h.fleet.target = 2
    assert h.step() == [Drain(newest, "scale-down")]
    assert h.step() == []


def test_max_requests_recycles_one_worker_at_a_time() -> None:
    h = started(3, request_limit=100, request_jitter=0, rng=random.Random(1))
    for w in h.fleet.workers.values():
        h.fleet.observe(w.pid, ready=True, heartbeat=h.now, requests=150, now=h.now)
    assert h.step() == [Spawn(1, "max-requests")]
    assert h.step() == []  # the replacement is not ready yet: nobody drains, nobody else spawns
    h.ready_all()
    actions = h.step()
    assert [type(a) for a in actions] == [Spawn, Drain]
    ready = [w for w in h.fleet.workers.values() if w.phase is Phase.READY]
    assert len(ready) == 3


def test_jitter_spreads_limits() -> None:
    fleet = Fleet(
        target=1, graceful_timeout=1, worker_timeout=1, request_limit=1000, request_jitter=50, rng=random.Random(7)
    )
    limits = {fleet.spawned(pid, pid, 1, 0.0).request_limit for pid in range(20)}
    assert all(limit is not None and 1000 <= limit <= 1050 for limit in limits)
    assert len(limits) > 5


def test_stop_drains_everyone_and_spawns_nothing() -> None:
    h = started(2)
    h.fleet.stop()
    actions = h.step()
    assert sorted(a.pid for a in actions if isinstance(a, Drain)) == sorted(h.fleet.workers)
    for pid in list(h.fleet.workers):
        h.fleet.exited(pid, Exit(code=0), h.now)
    assert h.step() == []
    assert h.fleet.generations_in_use == set()


def test_code_loaded_out_of_order_never_rolls_back() -> None:
    h = started(1)
    h.fleet.start_generation(3)
    h.fleet.start_generation(2)
    assert h.fleet.generation == 3


def test_worker_stuck_in_startup_is_killed_and_counts_as_a_failed_start() -> None:
    fleet = Fleet(target=1, graceful_timeout=30, worker_timeout=5, startup_timeout=10)
    fleet.start_generation(1)
    h = Harness(fleet)
    h.step()
    (pid,) = fleet.workers
    h.now += 9.8
    assert fleet.plan(h.now) == []
    h.now += 0.3
    assert fleet.plan(h.now) == [Kill(pid, "startup-timeout")]
    fleet.exited(pid, Exit(signal=9), h.now)
    assert h.step() == [Fatal(f"worker {pid} failed to start (killed by signal 9)")]


def test_the_newest_proven_code_stays_available_for_a_fallback() -> None:
    h = started(1)
    h.fleet.start_generation(2)
    for _ in range(5):
        h.step()
        h.ready_all()
        for w in [w for w in h.fleet.workers.values() if w.phase is Phase.DRAINING]:
            h.fleet.exited(w.pid, Exit(code=0), h.now)
    assert h.fleet.generations_in_use == {2}
    h.fleet.start_generation(3)
    assert h.fleet.generations_in_use == {2, 3}


def test_resize_holds_the_target_within_its_bounds_and_says_why() -> None:
    fleet = Fleet(target=2, graceful_timeout=30, worker_timeout=5, floor=2, ceiling=4)
    assert fleet.resize(3) is None and fleet.target == 3
    assert fleet.resize(9) == "staying at 4, the most allowed (--max-workers, or what fits)"
    assert fleet.target == 4
    assert fleet.resize(1) == "staying at 2, the fewest allowed (--min-workers, or 1)"
    assert fleet.target == 2
