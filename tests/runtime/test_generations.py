"""The decisions about pre-loaded processes, with a fake clock: no processes, no sleeps."""

from __future__ import annotations

import pytest

from asgiscale.runtime.backoff import Backoff
from asgiscale.runtime.fleet import Exit, Fatal
from asgiscale.runtime.generations import (
    MAX_LOAD_FAILURES,
    SLOW_LOAD,
    Action,
    Generations,
    KillLoad,
    Report,
    Roll,
    StartLoad,
    StopLoad,
)
from asgiscale.runtime.sidecar import Sidecar

KILLED = Exit(signal=9)


class Harness:
    """Executes the plan the way the supervisor does: pids made up, the fleet reduced to its generation."""

    def __init__(self, deadline: float = 120) -> None:
        self.generations = Generations("main:app", deadline=deadline)
        self.running: int | None = None
        self.in_use: set[int] = set()
        self.now = 0.0

    def step(self, dt: float = 0.1) -> list[Action]:
        self.now += dt
        actions = self.generations.plan(self.now, self.running, self.in_use | {self.running} - {None})  # type: ignore[operator]
        for action in actions:
            if isinstance(action, StartLoad):
                self.generations.started(action.generation, 1000 + action.generation, self.now)
            elif isinstance(action, Roll) and (self.running is None or action.generation > self.running):
                self.running = action.generation
        return actions

    def load(self) -> list[Action]:
        """Finish the load under way; the plan that follows."""
        (loading,) = [g for g, load in self.generations.loads.items() if not load.loaded]
        self.generations.loaded(loading)
        return self.step()


def running_on_generation_1() -> Harness:
    h = Harness()
    assert h.step() == [StartLoad(1, "start")]
    assert h.load() == [Roll(1, 1001)]
    assert h.step() == []
    return h


def test_the_first_load_starts_once_and_rolls_the_fleet_onto_it() -> None:
    h = running_on_generation_1()
    assert h.running == 1
    assert h.step(60) == []


def test_reloads_asked_for_during_a_load_become_one_more_load_when_it_ends() -> None:
    h = running_on_generation_1()
    h.generations.reload()
    assert h.step() == [StartLoad(2, "reload")]
    for _ in range(5):
        h.generations.reload()
        assert h.step() == []
    assert h.load() == [Roll(2, 1002), StartLoad(3, "reload")]


def test_a_reload_that_hangs_is_reported_then_killed_and_later_reloads_still_run() -> None:
    h = running_on_generation_1()
    h.generations.reload()
    h.step()
    h.generations.reload()  # a fix, saved while the broken code hangs
    assert h.step(SLOW_LOAD) == [
        Report("Still loading the code (generation 2) after 10s; it is stopped at 120s (--startup-timeout).")
    ]
    assert h.step(60) == []
    assert h.step(50) == [KillLoad(2, 1002, 120)]
    assert h.step() == []  # killed once; its exit is the failure
    h.generations.exited(2, KILLED)
    assert h.step() == [
        StopLoad(2),
        Report("Reload failed: it did not finish within --startup-timeout (120s); the running code keeps serving."),
        StartLoad(3, "reload"),
    ]
    assert h.load() == [Roll(3, 1003)]
    assert h.running == 3


def test_without_a_deadline_a_slow_load_is_only_reported() -> None:
    h = Harness(deadline=0)
    h.step()
    assert h.step(SLOW_LOAD) == [Report("Still loading the code (generation 1) after 10s.")]
    assert h.step(3600) == []


@pytest.mark.parametrize(("code", "expected"), [(4, 4), (0, 3), (None, 3)])
def test_a_first_load_that_fails_is_fatal_with_the_apps_own_exit_code(code: int | None, expected: int) -> None:
    h = Harness()
    h.step()
    h.generations.failed(1, "it called sys.exit(4) while loading", code)
    assert h.step() == [
        StopLoad(1),
        Fatal("could not load the app 'main:app': it called sys.exit(4) while loading", expected),
    ]


def test_a_first_load_that_hangs_is_fatal_at_the_deadline() -> None:
    h = Harness(deadline=5)
    h.step()
    assert h.step(5) == [KillLoad(1, 1001, 5)]
    h.generations.exited(1, KILLED)
    (stop, fatal) = h.step()
    assert stop == StopLoad(1)
    assert fatal == Fatal("could not load the app 'main:app': it did not finish within --startup-timeout (5s)")


def test_a_failed_reload_keeps_the_running_code() -> None:
    h = running_on_generation_1()
    h.generations.reload()
    h.step()
    h.generations.failed(2, "the code did not load (see the error above)")
    assert h.step() == [
        StopLoad(2),
        Report("Reload failed: the code did not load (see the error above); the running code keeps serving."),
    ]
    assert h.running == 1
    assert h.step(60) == []


def test_the_running_codes_lost_process_is_loaded_again_with_back_off_then_fatal() -> None:
    h = running_on_generation_1()
    h.generations.exited(1, KILLED)
    assert h.step() == [
        StopLoad(1),
        Report("The pre-loaded process [1001] died (killed by signal 9)."),
        StartLoad(2, "lost"),
    ]
    delays = []
    for attempt in range(1, MAX_LOAD_FAILURES + 1):
        loading = max(h.generations.loads)
        h.generations.exited(loading, Exit(code=3))
        actions = h.step(0.0)
        assert (
            Report(f"Loading the code again failed ({attempt} in a row): the loading process exit code 3.") in actions
        )
        failed_at = h.now
        while not (actions := h.step(0.1)):
            pass
        delays.append(round(h.now - failed_at, 1))
    assert delays[:-1] == pytest.approx([1.0, 2.0, 4.0, 8.0], abs=0.11)
    assert actions == [Fatal("the code could not be loaded again after 5 attempts")]


def test_code_that_loads_again_rolls_the_workers_onto_it_and_resets_the_back_off() -> None:
    h = running_on_generation_1()
    h.generations.exited(1, KILLED)
    h.step()
    assert h.load() == [Roll(2, 1002)]
    assert h.running == 2


def test_a_generation_no_worker_needs_is_stopped_but_not_before_the_fleet_rolls_onto_it() -> None:
    h = running_on_generation_1()
    h.in_use = {1}  # generation 1's workers still serve while generation 2 rolls in
    h.generations.reload()
    h.step()
    assert h.load() == [Roll(2, 1002)]
    assert h.step() == []
    h.in_use = set()  # the last worker of generation 1 drained
    assert h.step() == [StopLoad(1)]
    assert set(h.generations.loads) == {2}


def test_stop_stops_every_pre_loaded_process_and_plans_nothing_more() -> None:
    h = running_on_generation_1()
    h.generations.reload()
    h.step()
    h.generations.stop()
    assert h.step() == [StopLoad(1), StopLoad(2)]
    h.generations.reload()
    h.generations.exited(1, KILLED)
    assert h.step(60) == []


def test_one_backoff_for_every_restart() -> None:
    boot = Backoff(first=0.1, maximum=10, free=1)
    assert [boot.failed(now=float(t)) for t in range(10)] == [0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10]
    assert boot.failed(now=9 + 30) == 0  # 30 s without a failure: counted afresh
    helper = Backoff(first=1, maximum=30)
    assert [helper.failed(now=float(t)) for t in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert not helper.due(6 + 29.9)
    helper.succeeded()
    assert helper.due(0) and helper.failed(now=7) == 1


def test_a_sidecar_comes_back_after_the_back_off() -> None:
    admin = Sidecar("admin server")
    assert admin.due(0.0)
    admin.started(pid=42)
    assert not admin.due(1.0)
    assert admin.exited(now=2.0) == 1
    assert not admin.due(2.9) and admin.due(3.0)
    admin.started(pid=43)
    assert admin.exited(now=4.0) == 2  # a second death in a row waits longer
    admin.started(pid=44)
    assert admin.exited(now=40.0) == 1  # after 30 s of health, counted afresh
