"""Generations of code: every decision about the pre-loaded processes, with no I/O and no clock.

Each generation of code is imported once, by its own pre-loaded process, which then forks
the workers (see `preload`). The supervisor reports what happened to those processes and
asks `plan(now, running, in_use)` what to do; `running` is the fleet's generation and
`in_use` the generations its workers still need.

Rules, in the order `plan` applies them:

* a load not finished `deadline` seconds after it started is killed (its stack is dumped
  first) and counts as a failed load; one not finished after `SLOW_LOAD` seconds is
  reported once, so a start that hangs is never silent;
* a failed load of the first generation is fatal, with the app's own exit code if it
  called `sys.exit()`; a failed reload leaves the running code serving; a failed load of
  the running code (its pre-loaded process had died) is retried with back-off, and
  `MAX_LOAD_FAILURES` in a row are fatal;
* a loaded generation rolls the fleet onto it;
* a reload asked for while a load is under way is coalesced into one more load, started
  when that one ends, however it ends; so a load that hangs never blocks later reloads;
* the running code always has a pre-loaded process: if it died, the code on disk is loaded
  again (back-off 1, 2, 4 … 30 s);
* a loaded generation that no worker needs any more is stopped.

    >>> generations = Generations("main:app", deadline=120)
    >>> generations.plan(now=0.0, running=None, in_use=set())
    [StartLoad(generation=1, reason='start')]
"""

from __future__ import annotations

import dataclasses

from asgiscale.config import EXIT_STARTUP_FAILURE
from asgiscale.runtime.backoff import Backoff
from asgiscale.runtime.fleet import Exit, Fatal

SLOW_LOAD = 10.0
MAX_LOAD_FAILURES = 5


@dataclasses.dataclass(frozen=True)
class StartLoad:
    """Fork a pre-loaded process to import the code on disk as `generation`."""

    generation: int
    reason: str  # "start", "reload" or "lost" (the running code's process died)

    def __str__(self) -> str:
        return _LOAD_REASONS[self.reason]


_LOAD_REASONS = {
    "start": "",
    "reload": "Reloading: loading the new code, then replacing the workers one at a time.",
    "lost": "No pre-loaded process for the running code; loading the code again.",
}


@dataclasses.dataclass(frozen=True)
class StopLoad:
    generation: int


@dataclasses.dataclass(frozen=True)
class KillLoad:
    """Past its deadline: dump the loading process's stack, then kill it."""

    generation: int
    pid: int
    deadline: float
    dump = True

    def __str__(self) -> str:
        return (
            f"Loading generation {self.generation} takes longer than --startup-timeout ({self.deadline:g}s); "
            "its stack, then SIGKILL:"
        )


@dataclasses.dataclass(frozen=True)
class Roll:
    """The code is loaded: the fleet rolls onto it."""

    generation: int
    pid: int

    def __str__(self) -> str:
        return f"Code loaded (generation {self.generation}, pre-loaded process [{self.pid}])."


@dataclasses.dataclass(frozen=True)
class Report:
    """Something the operator must read (logged as an error)."""

    message: str

    def __str__(self) -> str:
        return self.message


Action = StartLoad | StopLoad | KillLoad | Roll | Report | Fatal


@dataclasses.dataclass
class Load:
    generation: int
    pid: int
    started_at: float
    loaded: bool = False
    rolled: bool = False
    reported_slow: bool = False
    killed: bool = False


@dataclasses.dataclass(frozen=True)
class _Failure:
    generation: int
    reason: str
    code: int | None  # the app's sys.exit() code, if it called it


class Generations:
    """The supervisor's model of its pre-loaded processes (see the module docstring for the rules)."""

    def __init__(self, app: str, deadline: float) -> None:
        self.app = app
        self.deadline = deadline  # 0: no deadline
        self.loads: dict[int, Load] = {}
        self.stopping = False
        self._last = 0  # the newest generation number handed out
        self._reload_pending = False
        self._failures: list[_Failure] = []
        self._pending: list[Action] = []
        self._lost_code = Backoff(first=1.0, maximum=30.0)

    # --- what happened -------------------------------------------------------------

    def reload(self) -> None:
        """A reload was asked for (SIGHUP, a file change)."""
        if self.stopping:
            return
        if self.loading:
            self._reload_pending = True
        else:
            self._pending.append(self._new("reload"))

    def started(self, generation: int, pid: int, now: float) -> None:
        self.loads[generation] = Load(generation, pid, now)

    def loaded(self, generation: int) -> None:
        load = self.loads.get(generation)
        if load is None or load.loaded:
            return
        load.loaded = True
        self._lost_code.succeeded()
        self._pending.append(Roll(generation, load.pid))

    def failed(self, generation: int, reason: str, code: int | None = None) -> None:
        """The load did not succeed (it reported failure, or its process could not start)."""
        load = self.loads.pop(generation, None)
        if load is not None:
            self._pending.append(StopLoad(generation))
        self._failures.append(_Failure(generation, reason, code))

    def exited(self, generation: int, status: Exit) -> None:
        """The pre-loaded process of `generation` ended."""
        load = self.loads.get(generation)
        if load is None or self.stopping:
            return
        if load.loaded:
            del self.loads[generation]
            self._pending += [
                StopLoad(generation),
                Report(f"The pre-loaded process [{load.pid}] died ({status.describe()})."),
            ]
        elif load.killed:
            self.failed(generation, f"it did not finish within --startup-timeout ({self.deadline:g}s)")
        else:
            self.failed(generation, f"the loading process {status.describe()}")

    def stop(self) -> None:
        self.stopping = True
        self._reload_pending = False
        self._pending += [StopLoad(g) for g in self.loads]
        self.loads.clear()

    # --- what to do next -----------------------------------------------------------

    @property
    def loading(self) -> bool:
        return any(not load.loaded for load in self.loads.values())

    def plan(self, now: float, running: int | None, in_use: set[int]) -> list[Action]:
        actions, self._pending = self._pending, []
        if self.stopping:
            return actions
        if running is None and not self.loads and not self._failures and self._last == 0:
            return actions + [self._new("start")]
        actions += self._enforce_deadlines(now)
        for failure in self._failures:
            actions.append(self._judge(failure, now, running))
        self._failures.clear()
        if any(isinstance(a, Fatal) for a in actions):
            return actions
        if not self.loading and self._reload_pending:
            self._reload_pending = False
            actions.append(self._new("reload"))
        elif not self.loading and self._code_lost(running) and self._lost_code.due(now):
            if self._lost_code.failures >= MAX_LOAD_FAILURES:
                return actions + [Fatal(f"the code could not be loaded again after {MAX_LOAD_FAILURES} attempts")]
            actions.append(self._new("lost"))
        for generation, load in list(self.loads.items()):
            if load.rolled and generation not in in_use and generation != running:
                del self.loads[generation]
                actions.append(StopLoad(generation))
        for action in actions:  # from the next plan on, the fleet's `in_use` accounts for them
            if isinstance(action, Roll) and action.generation in self.loads:
                self.loads[action.generation].rolled = True
        return actions

    def _enforce_deadlines(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for load in self.loads.values():
            if load.loaded or load.killed:
                continue
            took = now - load.started_at
            if 0 < self.deadline <= took:
                load.killed = True
                actions.append(KillLoad(load.generation, load.pid, self.deadline))
            elif took >= SLOW_LOAD and not load.reported_slow:
                load.reported_slow = True
                actions.append(
                    Report(
                        f"Still loading the code (generation {load.generation}) after {SLOW_LOAD:g}s"
                        + (f"; it is stopped at {self.deadline:g}s (--startup-timeout)." if self.deadline else ".")
                    )
                )
        return actions

    def _code_lost(self, running: int | None) -> bool:
        """The running code has no pre-loaded process, and no newer code is loaded to roll onto."""
        return running is not None and not any(g >= running and load.loaded for g, load in self.loads.items())

    def _judge(self, failure: _Failure, now: float, running: int | None) -> Action:
        if running is None:
            code = failure.code or EXIT_STARTUP_FAILURE
            return Fatal(f"could not load the app {self.app!r}: {failure.reason}", code)
        if not self._code_lost(running):
            return Report(f"Reload failed: {failure.reason}; the running code keeps serving.")
        self._lost_code.failed(now)
        return Report(f"Loading the code again failed ({self._lost_code.failures} in a row): {failure.reason}.")

    def _new(self, reason: str) -> StartLoad:
        self._last += 1
        return StartLoad(self._last, reason)
