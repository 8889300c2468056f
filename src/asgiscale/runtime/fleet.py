"""The worker fleet: every lifecycle decision of the supervisor, with no I/O and no clock.

The supervisor (the I/O shell) reports what happened (a worker was spawned, became
ready, exited) and asks `plan(now)` what to do next; `plan` answers with actions the
shell executes: spawn a worker, drain one, kill one, or stop with an error. Time is
passed in, so every rule here is tested with a fake clock.

Rules, in the order `plan` applies them:

* a ready worker whose event loop has not beaten for `worker_timeout` is killed, and so
  is a worker still not ready `startup_timeout` after it was forked;
* a draining worker still alive `graceful_timeout` (+ a margin) after it was asked to
  stop is killed;
* a worker that dies unexpectedly is replaced at once; only workers that die before they
  were ready back off (0, 0.1, 0.2, 0.4 … 10 s), and 30 s without such a death resets it.
  A worker that wrote READY or served a request was ready, however soon it died;
* the first generation dying before any worker was ready is fatal (no crash loop); a
  reload generation dying that way is abandoned and the previous code keeps serving;
* workers of an older generation, or past their request limit, are replaced one at a
  time: the replacement is ready before the old worker starts draining;
* beyond the target count, the surplus drains (outdated workers first, then the newest).

    >>> fleet = Fleet(target=2, graceful_timeout=30, worker_timeout=30)
    >>> fleet.start_generation(1)
    >>> fleet.plan(now=0.0)
    [Spawn(generation=1, reason='start')]
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections import Counter

from asgiscale.config import EXIT_STARTUP_FAILURE
from asgiscale.runtime.backoff import Backoff

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
# Extra time a draining worker gets beyond graceful_timeout for its lifespan shutdown.
KILL_MARGIN = 5.0


class Phase(enum.Enum):
    BOOTING = "booting"
    READY = "ready"
    DRAINING = "draining"


@dataclasses.dataclass(frozen=True)
class Spawn:
    generation: int
    reason: str


# Why a worker was killed, as the log says it.
KILL_REASONS = {
    "timeout": "its event loop was blocked longer than --worker-timeout",
    "startup-timeout": "it was not ready within --startup-timeout",
    "graceful-timeout": "it did not finish within --graceful-timeout",
}


@dataclasses.dataclass(frozen=True)
class Drain:
    pid: int
    reason: str

    def __str__(self) -> str:
        return f"Draining worker [{self.pid}] ({self.reason})."


@dataclasses.dataclass(frozen=True)
class Kill:
    pid: int
    reason: str

    @property
    def dump(self) -> bool:
        """A blocked event loop gets its stack dumped first (SIGUSR1), to show where it hangs."""
        return self.reason == "timeout"

    def __str__(self) -> str:
        return f"Killing worker [{self.pid}] ({KILL_REASONS[self.reason]})."


@dataclasses.dataclass(frozen=True)
class AbandonGeneration:
    """A reload whose new code never started a worker: stop its pre-loaded process."""

    generation: int
    message: str

    def __str__(self) -> str:
        return f"Reload abandoned: {self.message}."


@dataclasses.dataclass(frozen=True)
class Fatal:
    message: str
    code: int = EXIT_STARTUP_FAILURE


Action = Spawn | Drain | Kill | AbandonGeneration | Fatal


@dataclasses.dataclass
class Worker:
    pid: int
    slot: int
    generation: int
    started_at: float
    request_limit: int | None = None
    phase: Phase = Phase.BOOTING
    ready_at: float | None = None
    heartbeat: float | None = None
    requests: int = 0
    kill_at: float | None = None
    killed: str = ""


@dataclasses.dataclass(frozen=True)
class Exit:
    """How a process ended, decoded from a wait status."""

    code: int | None = None
    signal: int | None = None

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit code {self.code}"


class Fleet:
    """The supervisor's model of its workers (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        target: int,
        graceful_timeout: float,
        worker_timeout: float,
        startup_timeout: float = 0,
        request_limit: int | None = None,
        request_jitter: int = 0,
        floor: int = 1,
        ceiling: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.floor = floor
        self.ceiling = ceiling
        self.graceful_timeout = graceful_timeout
        self.worker_timeout = worker_timeout
        self.startup_timeout = startup_timeout
        self.request_limit = request_limit
        self.request_jitter = request_jitter
        self.rng = rng or random.Random()
        self.workers: dict[int, Worker] = {}
        self.generation: int | None = None
        self.stopping = False
        self.restarts: Counter[str] = Counter()
        self._proven: set[int] = set()  # generations that have had a ready worker
        self._boot_failures = Backoff(first=BACKOFF_FIRST, maximum=BACKOFF_MAX, free=1)
        self._lost = 0  # serving workers that died and are not replaced yet: replaced at once
        self._unbooted = 0  # workers of proven code that died booting: replaced after the back-off
        self._pending: list[Action] = []

    # --- what happened -------------------------------------------------------------

    def start_generation(self, generation: int) -> None:
        """New code is pre-loaded and ready to fork: roll the fleet onto it (never back)."""
        if self.generation is None or generation > self.generation:
            self.generation = generation

    def spawned(self, pid: int, slot: int, generation: int, now: float) -> Worker:
        limit = None
        if self.request_limit is not None:
            limit = self.request_limit + self.rng.randint(0, self.request_jitter)
        worker = Worker(pid=pid, slot=slot, generation=generation, started_at=now, request_limit=limit)
        self.workers[pid] = worker
        return worker

    def observe(self, pid: int, *, ready: bool, heartbeat: float, requests: int, now: float) -> None:
        """Fold in what the worker wrote to its slot."""
        worker = self.workers.get(pid)
        if worker is None:
            return
        worker.requests = requests
        if (ready or requests) and worker.phase is Phase.BOOTING:
            worker.phase = Phase.READY
            worker.ready_at = now
            self._proven.add(worker.generation)
        if heartbeat:
            worker.heartbeat = heartbeat

    def exited(self, pid: int, status: Exit, now: float) -> Worker | None:
        """Forget a worker that ended; decide whether that was a failure."""
        worker = self.workers.pop(pid, None)
        if worker is None or worker.phase is Phase.DRAINING or self.stopping:
            return worker
        if worker.phase is Phase.BOOTING and worker.generation not in self._proven:
            self._failed_to_start(worker, status)
            return worker
        self.restarts[worker.killed or "crash"] += 1
        if worker.phase is Phase.BOOTING:
            self._unbooted += 1
            self._boot_failures.failed(now)  # the code may not start at all: do not fork in a tight loop
        elif not worker.killed:
            self._lost += 1  # (a hung ready worker was counted when it was killed)
        return worker

    def resize(self, target: int) -> str | None:
        """Aim for `target` workers, held within [floor, ceiling]; why it was held, if it was."""
        held = None
        if self.ceiling is not None and target > self.ceiling:
            target, held = self.ceiling, f"staying at {self.ceiling}, the most allowed (--max-workers, or what fits)"
        elif target < self.floor:
            target, held = self.floor, f"staying at {self.floor}, the fewest allowed (--min-workers, or 1)"
        self.target = target
        return held

    def stop(self) -> None:
        self.stopping = True

    def _failed_to_start(self, worker: Worker, status: Exit) -> None:
        if worker.generation != self.generation:
            return  # an abandoned generation's straggler
        message = f"worker {worker.pid} failed to start ({status.describe()})"
        if self._proven:
            # Fall back to the newest code that did serve; its pre-loaded process is still in use.
            self.generation = max(self._proven)
            self._pending.append(AbandonGeneration(worker.generation, message + "; the previous code keeps serving"))
        else:
            self._pending.append(Fatal(message))

    # --- what to do next -----------------------------------------------------------

    @property
    def generations_in_use(self) -> set[int]:
        """Generations whose pre-loaded process must live: workers' own, the current one, the fallback."""
        used = {w.generation for w in self.workers.values()}
        if self.generation is not None and not self.stopping:
            used.add(self.generation)
            if self._proven:
                used.add(max(self._proven))  # what a failed reload falls back to
        return used

    def plan(self, now: float) -> list[Action]:
        actions, self._pending = self._pending, []
        if any(isinstance(a, Fatal) for a in actions):
            return actions
        actions += self._enforce_deadlines(now)
        if self.stopping:
            return actions + [self._drain(w, "shutdown", now) for w in self._active()]
        if self.generation is None:
            return actions
        healthy = [w for w in self._active() if not self._outdated(w)]
        outdated = [w for w in self._active() if self._outdated(w)]
        booting = [w for w in healthy if w.phase is Phase.BOOTING]
        missing = self.target - len(healthy)
        due = self._boot_failures.due(now)
        if missing > 0 and outdated:
            # Replace outdated workers one at a time, each replacement ready first.
            if not booting and due:
                actions.append(Spawn(self.generation, self._replace_reason(outdated[0])))
        elif missing > 0 and not self._proven:
            actions += [Spawn(self.generation, "start")] * missing if due else []
        elif missing > 0:
            # Serving capacity that died comes back at once; what may not boot waits for the back-off.
            at_once = min(missing, self._lost)
            later = min(missing - at_once, self._unbooted) if due else 0
            grown = missing - at_once - later if due else 0
            self._lost -= at_once
            self._unbooted -= later
            actions += [Spawn(self.generation, "replace")] * (at_once + later)
            actions += [Spawn(self.generation, "scale-up")] * grown
        surplus = len(healthy) + len(outdated) - self.target
        if surplus > 0 and not booting:
            newest_first = sorted(healthy, key=lambda w: (w.started_at, w.pid), reverse=True)
            for worker in (outdated + newest_first)[:surplus]:
                actions.append(self._drain(worker, self._replace_reason(worker), now))
        return actions

    def _enforce_deadlines(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for worker in self.workers.values():
            if worker.killed:
                continue
            if worker.phase is Phase.DRAINING and worker.kill_at is not None and now >= worker.kill_at:
                worker.killed = "graceful-timeout"
            elif (
                worker.phase is Phase.READY
                and self.worker_timeout > 0
                and worker.heartbeat is not None
                and now - worker.heartbeat > self.worker_timeout
            ):
                worker.killed = "timeout"
                self._lost += 1
            elif worker.phase is Phase.BOOTING and 0 < self.startup_timeout < now - worker.started_at:
                worker.killed = "startup-timeout"
            else:
                continue
            actions.append(Kill(worker.pid, worker.killed))
        return actions

    def _active(self) -> list[Worker]:
        # A hung ready worker is replaced while it is being killed; one killed while booting is
        # replaced only once its exit says whether the code can start at all.
        return [
            w
            for w in self.workers.values()
            if w.phase is not Phase.DRAINING and not (w.killed and w.phase is Phase.READY)
        ]

    def _outdated(self, worker: Worker) -> bool:
        if worker.phase is Phase.BOOTING:
            return worker.generation != self.generation
        return worker.generation != self.generation or (
            worker.request_limit is not None and worker.requests >= worker.request_limit
        )

    def _replace_reason(self, worker: Worker) -> str:
        if worker.generation != self.generation:
            return "reload"
        if worker.request_limit is not None and worker.requests >= worker.request_limit:
            return "max-requests"
        return "scale-down"

    def _drain(self, worker: Worker, reason: str, now: float) -> Drain:
        worker.phase = Phase.DRAINING
        worker.kill_at = now + self.graceful_timeout + KILL_MARGIN
        if reason in ("reload", "max-requests"):
            self.restarts[reason] += 1
        return Drain(worker.pid, reason)
