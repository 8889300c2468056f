"""The supervisor: the I/O shell around `Fleet`.

It owns the listening socket, the shared slots, the pre-loaded processes and the
signals. Signal handlers only enqueue (through `signal.set_wakeup_fd`); one loop reads
signals, control messages and exit statuses, feeds them to the fleet and executes the
fleet's plan. The process stays single-threaded, so forking from it is safe.

    >>> Supervisor(Config(app="main:app", workers=4)).run()  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from asgiscale import _logging
from asgiscale.config import DEFAULT_ADMIN, EXIT_STARTUP_FAILURE, Config
from asgiscale.runtime import _procfs, metrics, sockets
from asgiscale.runtime._process import SUPERVISOR_SIGNALS
from asgiscale.runtime.admin import AdminProcess
from asgiscale.runtime.autoscale import Autoscaler, Reading
from asgiscale.runtime.events import EventForwarder
from asgiscale.runtime.fleet import AbandonGeneration, Action, Drain, Exit, Fatal, Fleet, Kill, Phase, Spawn, Worker
from asgiscale.runtime.preload import Preloader
from asgiscale.runtime.shm import RESTART_REASONS, Block, SlotTable, WorkerState

logger = logging.getLogger("asgiscale.error")
scale_logger = logging.getLogger("asgiscale.scale")

TICK = 0.1
# A blocked worker gets SIGUSR1 (traceback dump) this long before SIGKILL.
DUMP_GRACE = 0.2
PR_SET_CHILD_SUBREAPER = 36
# Consecutive failures to load the running code again (its process died) before giving up.
MAX_LOAD_FAILURES = 5
# An admin server that has run this long resets its restart back-off.
HEALTHY_ADMIN = 30.0
ADMIN_STOP_TIMEOUT = 2.0


class Stage(enum.IntEnum):
    """Published in the shared block (`Block.STAGE`) for the admin process's /readyz."""

    RUNNING = 0
    DELAYING = 1  # told to stop; still serving for shutdown_delay
    DRAINING = 2  # listener closed; waiting for the workers to finish


class Supervisor:
    """Runs `config.app` on `config.workers` forked workers until told to stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.fleet = Fleet(
            target=config.initial_workers,
            graceful_timeout=config.graceful_timeout,
            worker_timeout=config.worker_timeout,
            startup_timeout=config.startup_timeout,
            request_limit=config.limit_max_requests,
            request_jitter=config.max_requests_jitter,
        )
        self.autoscaler = Autoscaler.from_config(config) if config.autoscale else None
        # Room for the target, one replacement, and workers still draining after quick reloads.
        self.capacity = max(128, 4 * (config.max_workers or config.workers) + 8)
        self.table = SlotTable(self.capacity)
        self.preloaders: dict[int, Preloader] = {}
        self.stage = Stage.RUNNING
        self.close_at = 0.0
        self.exit_code = 0
        self.listeners: list[socket.socket] = []
        self.admin: AdminProcess | None = None
        self.admin_socket: socket.socket | None = None
        self.events = EventForwarder()
        self._admin_failures = 0
        self._admin_retry_at = 0.0
        self._generations = 0
        self._pending_kills: dict[int, float] = {}
        self._watcher_pid: int | None = None
        self._reload_pending = False
        self._load_failures = 0
        self._load_retry_at = 0.0
        self._spawn_retry_at = 0.0
        self._wakeup_r = -1
        self._wakeup_w = -1

    # --- lifecycle -----------------------------------------------------------------

    def run(self) -> int:
        self.log_config = _logging.configure(self.config.log_level, self.config.use_colors)
        _become_subreaper()
        try:
            self.listeners = [sockets.bind(self.config)]
            self.admin_socket = self._bind_admin()
        except sockets.BindError as exc:
            logger.error("%s", exc)
            for sock in self.listeners:
                sock.close()
            return EXIT_STARTUP_FAILURE
        self._install_signals()
        self.table.set(Block.PID, os.getpid())
        self.table.set(Block.STARTED_NS, time.time_ns())
        self.table.set(Block.TARGET, self.fleet.target)
        logging.getLogger("asgiscale").addHandler(self.events)
        try:
            address = sockets.describe(self.listeners[0], self.config)
            logger.info("asgiscale running %s on %s (Press CTRL+C to quit)", self.config.app, address)
            self._start_admin()
            self._load_generation()
            if self.config.reload:
                self._start_watcher()
            elif self.config.reload_dirs:
                logger.warning("--reload-dir is ignored without --reload.")
            while not self._finished():
                self._step()
        finally:
            self._cleanup()
        return self.exit_code

    def _step(self) -> None:
        self._wait(TICK)
        now = time.monotonic()
        self._reap(now)
        self._observe(now)
        metrics.share_pairs(self.table, [w.slot for w in self.fleet.workers.values()])
        self._autoscale(now)
        if self.stage is Stage.DELAYING and now >= self.close_at:
            self._close_listeners()
        self._ensure_preloader(now)
        self._ensure_admin(now)
        for action in self.fleet.plan(now):
            self._execute(action, now)
        self._deliver_kills(now)
        self._retire_preloaders()
        self._publish()

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
        ready, _, _ = select.select([self._wakeup_r, *loading], [], [], timeout)
        for fd in ready:
            if fd == self._wakeup_r:
                for signum in os.read(self._wakeup_r, 512):
                    self._handle_signal(signal.Signals(signum))
            else:
                self._on_preloader_status(loading[fd])

    def _handle_signal(self, sig: signal.Signals) -> None:
        handler = getattr(self, f"handle_{sig.name.lower()}", None)
        if handler is not None:
            handler()

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
                self._signal(pid, signal.SIGKILL)

    handle_sigint = handle_sigterm

    def handle_sighup(self) -> None:
        if self.stage is not Stage.RUNNING:
            return
        if self._loading():
            self._reload_pending = True  # coalesce: load once more when the current load ends
            return
        logger.info(
            "Reloading: loading the new code, then replacing the workers one at a time.", extra={"event": "reload"}
        )
        self._load_generation()

    def handle_sigttin(self) -> None:
        if self.stage is Stage.RUNNING:
            self._set_target(self.fleet.target + 1)

    def handle_sigttou(self) -> None:
        if self.stage is Stage.RUNNING:
            self._set_target(self.fleet.target - 1)

    def handle_sigchld(self) -> None:
        pass  # the loop reaps on every tick

    def _set_target(self, target: int, why: str = "signal") -> None:
        lowest, limit = (self.config.min_workers or 1), self.config.max_workers or (self.capacity - 8) // 4
        if target > limit:
            logger.warning("Workers: staying at %d, the most allowed (--max-workers, or what fits).", limit)
        elif target < lowest:
            logger.warning("Workers: staying at %d, the fewest allowed (--min-workers, or 1).", lowest)
        target = max(lowest, min(target, limit))
        if target != self.fleet.target:
            scale_logger.info("Workers: %d -> %d (%s).", self.fleet.target, target, why, extra={"event": "scale"})
            self.table.add(Block.SCALE_UP if target > self.fleet.target else Block.SCALE_DOWN)
            self.fleet.target = target

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

    def _on_preloader_status(self, preloader: Preloader) -> None:
        if preloader.read_status():
            logger.info(
                "Code loaded (generation %d, pre-loaded process [%d]).",
                preloader.generation,
                preloader.pid,
                extra={"event": "loaded"},
            )
            self._load_failures = 0
            self.fleet.start_generation(preloader.generation)
        else:
            self._forget_preloader(preloader)
            self._on_load_failure("the new code did not load (see the error above)")
        if self._reload_pending and not self._loading() and self.stage is Stage.RUNNING:
            self._reload_pending = False
            self.handle_sighup()

    def _on_load_failure(self, reason: str) -> None:
        if self._loading():
            return  # a newer load is under way; it decides
        if self.fleet.generation is None:
            self._fail(f"could not load the app {self.config.app!r}: {reason}")
        elif self._generation_alive(self.fleet.generation):
            logger.error("Reload failed: %s; the running code keeps serving.", reason)
        else:
            self._load_failures += 1
            logger.error("Loading the code again failed (%d in a row): %s.", self._load_failures, reason)

    def _ensure_preloader(self, now: float) -> None:
        """The running generation must be able to fork; if its process is gone, load the code again."""
        generation = self.fleet.generation
        if self.stage is not Stage.RUNNING or generation is None or self._loading():
            return
        if self._generation_alive(generation) or now < self._load_retry_at:
            return
        if self._load_failures >= MAX_LOAD_FAILURES:
            self._fail(f"the code could not be loaded again after {self._load_failures} attempts")
            return
        logger.error("No pre-loaded process for the running code; loading the code again.")
        self._load_retry_at = now + min(2.0**self._load_failures, 30.0)
        self._load_generation()

    def _loading(self) -> bool:
        return any(not p.loaded for p in self.preloaders.values())

    def _generation_alive(self, generation: int) -> bool:
        preloader = self.preloaders.get(generation)
        return preloader is not None and preloader.loaded

    def _reap(self, now: float) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exit_ = _decode(status)
            self._pending_kills.pop(pid, None)
            alive = self.fleet.workers.get(pid)
            if alive is not None:
                # Its slot as it left it: a worker that became ready since the last tick, then died, was
                # serving, and its death is a crash to heal, not a failed start.
                self._observe_worker(alive, now)
            worker = self.fleet.exited(pid, exit_, now)
            preloader = next((p for p in self.preloaders.values() if p.pid == pid), None)
            if worker is not None:
                metrics.fold(self.table, self.table.slot(worker.slot))
                self._log_exit(worker.pid, worker.phase.value, worker.killed, exit_)
            elif self.admin is not None and pid == self.admin.pid:
                self._on_admin_exit(exit_, now)
            elif preloader is not None:
                self._on_preloader_exit(preloader, exit_)
            elif pid == self._watcher_pid:
                self._watcher_pid = None
                if self.stage is Stage.RUNNING:
                    logger.error(
                        "The --reload watcher stopped (%s); file changes are no longer watched.", exit_.describe()
                    )

    def _on_admin_exit(self, exit_: Exit, now: float) -> None:
        assert self.admin is not None
        self.events.disconnect()
        self.admin.close()
        self.admin = None
        if self.stage is Stage.RUNNING:
            self._admin_failures += 1
            delay = min(2.0 ** (self._admin_failures - 1), 30.0)
            logger.error("The admin server stopped (%s); starting it again in %gs.", exit_.describe(), delay)
            self._admin_retry_at = now + delay

    def _on_preloader_exit(self, preloader: Preloader, exit_: Exit) -> None:
        preloader.reaped = True
        self._forget_preloader(preloader)
        if self.stage is not Stage.RUNNING:
            return
        if preloader.loaded:
            logger.error("The pre-loaded process [%d] died (%s).", preloader.pid, exit_.describe())
        else:
            self._on_load_failure(f"the loading process {exit_.describe()}")

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

    def _execute(self, action: Action, now: float) -> None:
        if isinstance(action, Spawn):
            self._spawn(action, now)
        elif isinstance(action, Drain):
            logger.info("Draining worker [%d] (%s).", action.pid, action.reason, extra={"event": "drain"})
            self._signal(action.pid, signal.SIGTERM)
        elif isinstance(action, Kill):
            reason = _KILL_REASONS.get(action.reason, action.reason)
            logger.error("Killing worker [%d] (%s).", action.pid, reason, extra={"event": "kill"})
            if action.reason == "timeout":
                self._signal(action.pid, signal.SIGUSR1)
                self._pending_kills[action.pid] = now + DUMP_GRACE
            else:
                self._signal(action.pid, signal.SIGKILL)
        elif isinstance(action, AbandonGeneration):
            logger.error("Reload abandoned: %s.", action.message)
            preloader = self.preloaders.get(action.generation)
            if preloader is not None:
                self._forget_preloader(preloader)
        elif isinstance(action, Fatal):
            self._fail(action.message + " (see the error above)")

    def _spawn(self, action: Spawn, now: float) -> None:
        preloader = self.preloaders.get(action.generation)
        if preloader is None or not preloader.loaded or now < self._spawn_retry_at:
            return  # _ensure_preloader loads the code again if its process is gone
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
        except TimeoutError:
            logger.error("The pre-loaded process [%d] did not answer; replacing it.", preloader.pid)
            self._forget_preloader(preloader)
            return
        except OSError as exc:
            logger.error("Could not fork a worker from [%d]: %s; retrying in 1s.", preloader.pid, exc)
            self._spawn_retry_at = now + 1.0
            return
        self.fleet.spawned(pid, free, action.generation, now)
        logger.info("Started worker [%d] (%s).", pid, action.reason, extra={"event": "spawn"})

    def _deliver_kills(self, now: float) -> None:
        for pid, when in list(self._pending_kills.items()):
            if now >= when:
                del self._pending_kills[pid]
                self._signal(pid, signal.SIGKILL)

    def _retire_preloaders(self) -> None:
        in_use = self.fleet.generations_in_use
        for generation, preloader in list(self.preloaders.items()):
            if preloader.loaded and generation not in in_use:
                self._forget_preloader(preloader)

    def _forget_preloader(self, preloader: Preloader) -> None:
        if self.preloaders.get(preloader.generation) is preloader:
            del self.preloaders[preloader.generation]
        preloader.stop()

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

    def _start_admin(self) -> None:
        if self.admin_socket is None:
            return
        try:
            # It must not hold the app's listener open once the supervisor closes it.
            close = self._own_fds(admin=False) + [sock.fileno() for sock in self.listeners]
            self.admin = AdminProcess.start(self.config, self.table, self.admin_socket, self.log_config, close)
        except OSError as exc:
            logger.error("Could not start the admin server: %s; retrying.", exc)
            return
        self.events.connect(self.admin.events_fd)
        host, port = self.admin_socket.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        logger.info(
            "Admin server [%d] on http://%s:%d (dashboard; /healthz /readyz /metrics /status)",
            self.admin.pid,
            host,
            port,
        )

    def _ensure_admin(self, now: float) -> None:
        if self.admin is None and self.admin_socket is not None and self.stage is Stage.RUNNING:
            if now >= self._admin_retry_at:
                self._admin_retry_at = now + 1.0
                self._start_admin()
        elif self.admin is not None and self._admin_failures and now >= self._admin_retry_at + HEALTHY_ADMIN:
            self._admin_failures = 0

    def _stop_admin(self) -> None:
        if self.admin is None:
            return
        self.events.disconnect()
        self.admin.close()
        self._signal(self.admin.pid, signal.SIGTERM)
        deadline = time.monotonic() + ADMIN_STOP_TIMEOUT
        while time.monotonic() < deadline:
            if os.waitpid(self.admin.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.01)
        else:
            self._signal(self.admin.pid, signal.SIGKILL)
            os.waitpid(self.admin.pid, 0)
        self.admin = None

    def _load_generation(self) -> None:
        self._generations += 1
        try:
            preloader = Preloader.start(
                self.config, self._generations, self.listeners, self.table, self.log_config, self._own_fds()
            )
        except OSError as exc:
            self._on_load_failure(f"could not start a process to load it ({exc})")
            return
        self.preloaders[preloader.generation] = preloader

    def _own_fds(self, admin: bool = True) -> list[int]:
        """Descriptors a forked helper must not keep: our wakeup pipe, control sockets and the admin's."""
        fds = [self._wakeup_r, self._wakeup_w, *(p.control.fileno() for p in self.preloaders.values())]
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
        for preloader in list(self.preloaders.values()):
            self._forget_preloader(preloader)
        self.fleet.stop()

    def _fail(self, message: str) -> None:
        logger.error("Stopping: %s.", message)
        self.exit_code = EXIT_STARTUP_FAILURE
        for pid in self.fleet.workers:
            self._signal(pid, signal.SIGKILL)
        self._close_listeners()

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _log_exit(self, pid: int, phase: str, killed: str, exit_: Exit) -> None:
        if phase == "draining" or self.stage is Stage.DRAINING:
            logger.info("Worker [%d] stopped (%s).", pid, exit_.describe(), extra={"event": "exit"})
        else:
            logger.error(
                "Worker [%d] died while %s (%s)%s.",
                pid,
                phase,
                exit_.describe(),
                f" after {_KILL_REASONS.get(killed, killed)}" if killed else "",
                extra={"event": "crash"},
            )

    # --- process plumbing ------------------------------------------------------------

    def _install_signals(self) -> None:
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)
        for sig in SUPERVISOR_SIGNALS:
            signal.signal(sig, _enqueue)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)

    def _start_watcher(self) -> None:
        from asgiscale.runtime import reloader

        dirs = list(self.config.reload_dirs) or [os.getcwd()]
        # The watcher must not hold the listener open once the supervisor closes it.
        close = self._own_fds() + [sock.fileno() for sock in self.listeners]
        try:
            self._watcher_pid = reloader.start(dirs, close_fds=close)
        except OSError as exc:
            logger.error("Could not start the --reload watcher: %s; file changes are not watched.", exc)
            return
        logger.info("Watching %s for changes.", ", ".join(dirs))

    def _cleanup(self) -> None:
        if self._watcher_pid is not None:
            self._signal(self._watcher_pid, signal.SIGTERM)
        for preloader in list(self.preloaders.values()):
            self._forget_preloader(preloader)
        self._stop_admin()
        logging.getLogger("asgiscale").removeHandler(self.events)
        if self.admin_socket is not None:
            self.admin_socket.close()
        signal.set_wakeup_fd(-1)
        for sig in SUPERVISOR_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        for fd in (self._wakeup_r, self._wakeup_w):
            if fd >= 0:
                os.close(fd)
        for sock in self.listeners:
            sock.close()
        logger.info("asgiscale stopped.")


_KILL_REASONS = {
    "timeout": "its event loop was blocked longer than --worker-timeout",
    "startup-timeout": "it was not ready within --startup-timeout",
    "graceful-timeout": "it did not finish within --graceful-timeout",
}


def _enqueue(signum: int, frame: Any) -> None:
    """Python-level no-op: the C handler already wrote `signum` to the wakeup fd."""


def _decode(status: int) -> Exit:
    if os.WIFSIGNALED(status):
        return Exit(signal=os.WTERMSIG(status))
    return Exit(code=os.waitstatus_to_exitcode(status))


def _become_subreaper() -> None:
    """Workers are forked by a pre-loaded process; this makes them our children once orphaned."""
    if not sys.platform.startswith("linux"):
        raise OSError("asgiscale run needs Linux (it relies on PR_SET_CHILD_SUBREAPER)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
