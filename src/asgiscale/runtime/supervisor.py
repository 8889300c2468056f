"""The supervisor: the I/O shell around three pure cores.

`Fleet` decides about the workers, `Generations` about the pre-loaded processes (one per
generation of code) and `Sidecar` about the helper processes (the admin server, the reload
watcher). The supervisor owns the listening socket, the shared slots and the signals; it
reports to the cores what happened and executes what they plan. Signal handlers only
enqueue (through `signal.set_wakeup_fd`); one loop reads signals, control messages and
exit statuses. The process stays single-threaded, so forking from it is safe.

    >>> Supervisor(Config(app="main:app", workers=4)).run()  # doctest: +SKIP
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from asgiscale import _logging
from asgiscale.config import DEFAULT_ADMIN, EXIT_STARTUP_FAILURE, Config
from asgiscale.runtime import _process, _procfs, metrics, sockets
from asgiscale.runtime.admin import AdminProcess
from asgiscale.runtime.autoscale import Autoscaler, Reading
from asgiscale.runtime.events import EventForwarder
from asgiscale.runtime.fleet import (
    KILL_REASONS,
    AbandonGeneration,
    Drain,
    Exit,
    Fatal,
    Fleet,
    Kill,
    Phase,
    Spawn,
    Worker,
)
from asgiscale.runtime.generations import Generations, KillLoad, Report, Roll, StartLoad, StopLoad
from asgiscale.runtime.preload import Preloader
from asgiscale.runtime.shm import RESTART_REASONS, Block, SlotTable, WorkerState
from asgiscale.runtime.sidecar import Sidecar

logger = logging.getLogger("asgiscale.error")
scale_logger = logging.getLogger("asgiscale.scale")

TICK = 0.1
# A blocked worker, or a load past its deadline, gets SIGUSR1 (stack dump) this long before SIGKILL.
DUMP_GRACE = 0.2
ADMIN_STOP_TIMEOUT = 2.0

# What the exit of each kind of child means: called with (its pid, how it ended, now).
OnExit = Callable[[int, Exit, float], None]


class Stage(enum.IntEnum):
    """Published in the shared block (`Block.STAGE`) for the admin process's /readyz."""

    RUNNING = 0
    DELAYING = 1  # told to stop; still serving for shutdown_delay
    DRAINING = 2  # listener closed; waiting for the workers to finish


class Supervisor:
    """Runs `config.app` on `config.workers` forked workers until told to stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Room for the target, one replacement, and workers still draining after quick reloads.
        self.capacity = max(128, 4 * (config.max_workers or config.workers) + 8)
        self.fleet = Fleet(
            target=config.initial_workers,
            floor=config.min_workers or 1,
            ceiling=config.max_workers or (self.capacity - 8) // 4,
            graceful_timeout=config.graceful_timeout,
            worker_timeout=config.worker_timeout,
            startup_timeout=config.startup_timeout,
            request_limit=config.limit_max_requests,
            request_jitter=config.max_requests_jitter,
        )
        self.generations = Generations(config.app or "", deadline=config.startup_timeout)
        self.admin_sidecar = Sidecar("admin server")
        self.watcher_sidecar = Sidecar("--reload watcher")
        self.autoscaler = Autoscaler.from_config(config) if config.autoscale else None
        self.table = SlotTable(self.capacity)
        self.children: dict[int, OnExit] = {}
        self.preloaders: dict[int, Preloader] = {}  # by generation
        self.stage = Stage.RUNNING
        self.close_at = 0.0
        self.exit_code = 0
        self.listeners: list[socket.socket] = []
        self.admin: AdminProcess | None = None
        self.admin_socket: socket.socket | None = None
        self.events = EventForwarder()
        self._pending_kills: dict[int, float] = {}
        self._spawn_retry_at = 0.0
        self._wakeup = (-1, -1)

    # --- lifecycle -----------------------------------------------------------------

    def run(self) -> int:
        self.log_config = _logging.configure(self.config.log_level, self.config.use_colors)
        _process.become_subreaper()
        try:
            self.listeners = [sockets.bind(self.config)]
            self.admin_socket = self._bind_admin()
        except sockets.BindError as exc:
            logger.error("%s", exc)
            for sock in self.listeners:
                sock.close()
            return EXIT_STARTUP_FAILURE
        self._wakeup = _process.install_wakeup(_enqueue)
        self.table.set(Block.PID, os.getpid())
        self.table.set(Block.STARTED_NS, time.time_ns())
        logging.getLogger("asgiscale").addHandler(self.events)
        try:
            address = sockets.describe(self.listeners[0], self.config)
            logger.info("asgiscale running %s on %s (Press CTRL+C to quit)", self.config.app, address)
            if not self.config.reload and self.config.reload_dirs:
                logger.warning("--reload-dir is ignored without --reload.")
            while not self._finished():
                self._step()
        finally:
            self._cleanup()
        return self.exit_code

    def _step(self) -> None:
        now = time.monotonic()
        self._start_sidecars(now)
        for load_action in self.generations.plan(now, self.fleet.generation, self.fleet.generations_in_use):
            self._execute(load_action, now)
        for action in self.fleet.plan(now):
            self._execute(action, now)
        self._deliver_kills(now)
        self._publish()
        self._wait(TICK)
        now = time.monotonic()
        self._reap(now)
        self._observe(now)
        metrics.share_pairs(self.table, [w.slot for w in self.fleet.workers.values()])
        self._autoscale(now)
        if self.stage is Stage.DELAYING and now >= self.close_at:
            self._close_listeners()

    def _publish(self) -> None:
        """The supervisor's facts in the shared block, for the admin process."""
        table = self.table
        table.set(Block.HEARTBEAT_NS, time.monotonic_ns())
        table.set(Block.STAGE, self.stage)
        table.set(Block.TARGET, self.fleet.target)
        table.set(Block.GENERATION, self.fleet.generation or 0)
        for i, reason in enumerate(RESTART_REASONS):
            table.set(Block.RESTARTS + i, self.fleet.restarts[reason])

    def _finished(self) -> bool:
        return self.stage is Stage.DRAINING and not self.fleet.workers and not self.preloaders

    # --- events ----------------------------------------------------------------------

    def _wait(self, timeout: float) -> None:
        loading = {p.control.fileno(): p for p in self.preloaders.values() if not p.loaded}
        ready, _, _ = select.select([self._wakeup[0], *loading], [], [], timeout)
        for fd in ready:
            if fd == self._wakeup[0]:
                for signum in os.read(fd, 512):
                    getattr(self, f"handle_{signal.Signals(signum).name.lower()}")()
            else:
                generation, status = loading[fd].generation, loading[fd].read_status()
                if status == "loaded":
                    self.generations.loaded(generation)
                elif isinstance(status, int):
                    self.generations.failed(generation, f"it called sys.exit({status}) while loading", status)
                elif status is not None:
                    self.generations.failed(generation, "the code did not load (see the error above)")

    def handle_sigterm(self) -> None:
        if self.stage is Stage.RUNNING:
            delay = self.config.shutdown_delay
            logger.info(
                "Stopping: serving %.3gs more, then draining for up to %.3gs.",
                delay,
                self.config.graceful_timeout,
                extra={"event": "stop"},
            )
            self.stage = Stage.DELAYING
            self.table.set(Block.STAGE, self.stage)  # /readyz answers 503 from now on
            self.close_at = time.monotonic() + delay
        elif self.stage is Stage.DELAYING:
            logger.info("Stopping now: the listener closes.")
            self.close_at = 0.0
        else:
            logger.warning("Forced stop: killing %d worker(s).", len(self.fleet.workers))
            for pid in self.fleet.workers:
                _process.send(pid, signal.SIGKILL)

    handle_sigint = handle_sigterm

    def handle_sighup(self) -> None:
        if self.stage is Stage.RUNNING:
            self.generations.reload()

    def handle_sigttin(self) -> None:
        if self.stage is Stage.RUNNING:
            self._set_target(self.fleet.target + 1)

    def handle_sigttou(self) -> None:
        if self.stage is Stage.RUNNING:
            self._set_target(self.fleet.target - 1)

    def handle_sigchld(self) -> None:
        pass  # the loop reaps on every tick

    def _set_target(self, target: int, why: str = "signal") -> None:
        before = self.fleet.target
        held = self.fleet.resize(target)
        if held:
            logger.warning("Workers: %s.", held)
        if self.fleet.target != before:
            scale_logger.info("Workers: %d -> %d (%s).", before, self.fleet.target, why, extra={"event": "scale"})
            self.table.add(Block.SCALE_UP if self.fleet.target > before else Block.SCALE_DOWN)

    def _autoscale(self, now: float) -> None:
        scaler = self.autoscaler
        if scaler is None or self.stage is not Stage.RUNNING or self.fleet.generation is None:
            return
        readings = []
        for worker in self.fleet.workers.values():
            if worker.phase is Phase.DRAINING:
                continue
            slot = self.table.slot(worker.slot)
            written = slot.pid == worker.pid
            in_flight, requests = (slot.in_flight, slot.requests) if written else (0, 0)
            readings.append(Reading(worker.pid, worker.phase is Phase.READY, in_flight, requests))
        scaler.sample(now, readings)
        if scaler.due(now):
            cpu = {r.pid: (usage[0] if (usage := _procfs.cpu_and_rss(r.pid)) else None) for r in readings}
            decision = scaler.decide(now, self.fleet.target, cpu)
            if decision.change:
                self._set_target(decision.desired, f"{self.config.scale_policy}: {decision.describe()}")
            else:
                scale_logger.debug("Workers: staying at %d (%s).", decision.current, decision.describe())

    def _reap(self, now: float) -> None:
        for pid, exit_ in _process.reap():
            self._pending_kills.pop(pid, None)
            on_exit = self.children.pop(pid, None)
            if on_exit is not None:  # else an orphan of the app's own, re-parented to us: nothing to do
                on_exit(pid, exit_, now)

    def _worker_exited(self, pid: int, exit_: Exit, now: float) -> None:
        alive = self.fleet.workers.get(pid)
        if alive is not None:
            # Its slot as it left it: a worker that became ready since the last tick, then died, was
            # serving, and its death is a crash to heal, not a failed start.
            self._observe_worker(alive, now)
        worker = self.fleet.exited(pid, exit_, now)
        if worker is None:
            return
        metrics.fold(self.table, self.table.slot(worker.slot))
        if worker.phase is Phase.DRAINING or self.stage is Stage.DRAINING:
            logger.info("Worker [%d] stopped (%s).", pid, exit_.describe(), extra={"event": "exit"})
        else:
            after = f" after {KILL_REASONS[worker.killed]}" if worker.killed else ""
            logger.error(
                "Worker [%d] died while %s (%s)%s.",
                pid,
                worker.phase.value,
                exit_.describe(),
                after,
                extra={"event": "crash"},
            )

    def _preloader_exited(self, pid: int, exit_: Exit, now: float) -> None:
        preloader = next((p for p in self.preloaders.values() if p.pid == pid), None)
        if preloader is not None:
            preloader.reaped = True
            self.generations.exited(preloader.generation, exit_)

    def _sidecar_exited(self, sidecar: Sidecar, pid: int, exit_: Exit, now: float) -> None:
        if sidecar is self.admin_sidecar and self.admin is not None:
            self.events.disconnect()
            self.admin.close()
            self.admin = None
        if self.stage is Stage.RUNNING:
            delay = sidecar.exited(now)
            logger.error("The %s stopped (%s); starting it again in %gs.", sidecar.name, exit_.describe(), delay)

    def _observe(self, now: float) -> None:
        for worker in self.fleet.workers.values():
            self._observe_worker(worker, now)

    def _observe_worker(self, worker: Worker, now: float) -> None:
        slot = self.table.slot(worker.slot)
        if slot.pid != worker.pid:
            return  # not written yet
        ready = slot.state in (WorkerState.READY, WorkerState.DRAINING)
        if ready and worker.ready_at is None:
            logger.info("Worker [%d] ready (generation %d).", worker.pid, worker.generation, extra={"event": "ready"})
        self.fleet.observe(worker.pid, ready=ready, heartbeat=slot.heartbeat_ns / 1e9, requests=slot.requests, now=now)

    # --- actions ---------------------------------------------------------------------

    def _execute(self, action: object, now: float) -> None:
        if type(action) in _LOGGED and (message := str(action)):
            level, event = _LOGGED[type(action)]
            logger.log(level, "%s", message, extra={"event": event} if event else None)
        if isinstance(action, Spawn):
            self._spawn(action, now)
        elif isinstance(action, Drain):
            _process.send(action.pid, signal.SIGTERM)
        elif isinstance(action, (Kill, KillLoad)):
            self._kill(action.pid, now, dump=action.dump)
        elif isinstance(action, Fatal):
            self._fail(action.message, action.code)
        elif isinstance(action, StartLoad):
            self._load(action, now)
        elif isinstance(action, Roll):
            self.fleet.start_generation(action.generation)
        elif isinstance(action, StopLoad) and (preloader := self.preloaders.pop(action.generation, None)):
            preloader.stop()

    def _load(self, action: StartLoad, now: float) -> None:
        try:
            preloader = Preloader.start(
                self.config, action.generation, self.listeners, self.table, self.log_config, self._own_fds()
            )
        except OSError as exc:
            self.generations.failed(action.generation, f"could not start a process to load it ({exc})")
            return
        self.preloaders[action.generation] = preloader
        self.children[preloader.pid] = self._preloader_exited
        self.generations.started(action.generation, preloader.pid, now)

    def _spawn(self, action: Spawn, now: float) -> None:
        preloader = self.preloaders.get(action.generation)
        if preloader is None or not preloader.loaded or now < self._spawn_retry_at:
            return  # the fleet asks again on the next tick; Generations loads the code again if it is gone
        used = {w.slot for w in self.fleet.workers.values()}
        free = next((i for i in range(self.capacity) if i not in used), None)
        if free is None:
            logger.warning("No free worker slot (%d workers still draining); waiting.", len(used))
            self._spawn_retry_at = now + 1.0
            return
        self.table.slot(free).reset()
        metrics.share_pairs(self.table, [*used, free])  # its allowance, before it can answer a request
        try:
            pid = preloader.spawn(free)
        except (TimeoutError, ConnectionError):
            logger.error("The pre-loaded process [%d] does not answer; replacing it.", preloader.pid)
            self._kill(preloader.pid, now, dump=False)
            return
        except OSError as exc:
            logger.error("Could not fork a worker from [%d]: %s; retrying in 1s.", preloader.pid, exc)
            self._spawn_retry_at = now + 1.0
            return
        self.children[pid] = self._worker_exited
        self.fleet.spawned(pid, free, action.generation, now)
        logger.info("Started worker [%d] (%s).", pid, action.reason, extra={"event": "spawn"})

    def _kill(self, pid: int, now: float, dump: bool) -> None:
        if dump:
            _process.send(pid, signal.SIGUSR1)
            self._pending_kills[pid] = now + DUMP_GRACE
        else:
            _process.send(pid, signal.SIGKILL)

    def _deliver_kills(self, now: float) -> None:
        for pid, when in list(self._pending_kills.items()):
            if now >= when:
                del self._pending_kills[pid]
                _process.send(pid, signal.SIGKILL)

    def _start_sidecars(self, now: float) -> None:
        if self.stage is not Stage.RUNNING:
            return
        if self.admin_socket is not None and self.admin_sidecar.due(now):
            self._start_sidecar(self.admin_sidecar, self._fork_admin, now)
        if self.config.reload and self.watcher_sidecar.due(now):
            self._start_sidecar(self.watcher_sidecar, self._fork_watcher, now)

    def _start_sidecar(self, sidecar: Sidecar, fork: Callable[[], int], now: float) -> None:
        try:
            pid = fork()
        except OSError as exc:
            delay = sidecar.start_failed(now)
            logger.error("Could not start the %s: %s; retrying in %gs.", sidecar.name, exc, delay)
            return
        sidecar.started(pid)
        self.children[pid] = functools.partial(self._sidecar_exited, sidecar)

    def _fork_admin(self) -> int:
        assert self.admin_socket is not None
        # It must not hold the app's listener open once the supervisor closes it.
        close = self._own_fds(admin=False) + [sock.fileno() for sock in self.listeners]
        self.admin = AdminProcess.start(self.config, self.table, self.admin_socket, self.log_config, close)
        self.events.connect(self.admin.events_fd)
        host, port = self.admin_socket.getsockname()[:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        logger.info("Admin server [%d] on %s (dashboard; /healthz /readyz /metrics /status)", self.admin.pid, url)
        return self.admin.pid

    def _fork_watcher(self) -> int:
        from asgiscale.runtime import reloader

        dirs = list(self.config.reload_dirs) or [os.getcwd()]
        # The watcher must not hold the listener open once the supervisor closes it.
        pid = reloader.start(dirs, close_fds=self._own_fds() + [sock.fileno() for sock in self.listeners])
        logger.info("Watching %s for changes.", ", ".join(dirs))
        return pid

    def _bind_admin(self) -> socket.socket | None:
        address = self.config.admin_address
        if address is None:
            return None
        try:
            return sockets.bind_admin(*address)
        except sockets.BindError as exc:
            if self.config.admin.strip() != DEFAULT_ADMIN:
                raise
            logger.warning("No admin server: %s (or --no-admin).", exc)
            return None

    def _own_fds(self, admin: bool = True) -> list[int]:
        """Descriptors a forked helper must not keep: our wakeup pipe, control sockets and the admin's."""
        fds = [*self._wakeup, *(p.control.fileno() for p in self.preloaders.values())]
        if self.admin is not None:
            fds.append(self.admin.events_fd)
        if admin and self.admin_socket is not None:
            fds.append(self.admin_socket.fileno())
        return fds

    def _close_listeners(self) -> None:
        logger.info("Closing the listener; draining %d worker(s).", len(self.fleet.workers))
        self.stage = Stage.DRAINING
        for sock in self.listeners:
            sock.close()
        if self.config.uds is not None:
            _unlink(self.config.uds)
        self.generations.stop()
        for action in self.generations.plan(time.monotonic(), None, set()):
            self._execute(action, time.monotonic())
        self.fleet.stop()

    def _fail(self, message: str, code: int = EXIT_STARTUP_FAILURE) -> None:
        logger.error("Stopping: %s.", message)
        self.exit_code = code
        for pid in self.fleet.workers:
            _process.send(pid, signal.SIGKILL)
        self._close_listeners()

    def _cleanup(self) -> None:
        if self.watcher_sidecar.pid is not None:
            _process.send(self.watcher_sidecar.pid, signal.SIGTERM)
        for preloader in self.preloaders.values():
            preloader.stop()
        if self.admin is not None:
            self.events.disconnect()
            self.admin.stop(ADMIN_STOP_TIMEOUT)
        logging.getLogger("asgiscale").removeHandler(self.events)
        if self.admin_socket is not None:
            self.admin_socket.close()
        _process.uninstall_wakeup(self._wakeup)
        for sock in self.listeners:
            sock.close()
        logger.info("asgiscale stopped.")


# How each action is logged, if it is: (level, the event kind the dashboard shows).
_LOGGED: dict[type, tuple[int, str | None]] = {
    Drain: (logging.INFO, "drain"),
    Kill: (logging.ERROR, "kill"),
    AbandonGeneration: (logging.ERROR, None),
    StartLoad: (logging.INFO, "reload"),
    Roll: (logging.INFO, "loaded"),
    KillLoad: (logging.ERROR, None),
    Report: (logging.ERROR, None),
}


def _enqueue(signum: int, frame: Any) -> None:
    """Python-level no-op: the C handler already wrote `signum` to the wakeup fd."""


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
