"""The pre-loaded process: imports the app once, then forks workers on request.

The supervisor never imports the app, so that a reload can load new code: for each
generation of code it forks one `Preloader`, which imports the app, freezes the heap
(`gc.freeze()`, so the collector does not touch, and copy, the shared pages) and waits
for spawn requests. Each worker is forked twice: the intermediate process exits at once,
so the worker is re-parented to the supervisor (a child subreaper) and the supervisor
waits on it like on its own child, exit status included.

Protocol on the control socket (one datagram per message):
  preloader -> supervisor: b"loaded" | b"failed" | b"exit <code>" | b"spawned <slot> <pid>"
  supervisor -> preloader: b"spawn <slot>"
("exit <code>": the app called sys.exit(code) while it was imported.)
"""

from __future__ import annotations

import faulthandler
import gc
import importlib
import logging
import os
import signal
import socket
import sys
import traceback
from typing import Any

import uvicorn
from uvicorn.importer import ImportFromStringError, import_from_string

from asgiscale.config import EXIT_STARTUP_FAILURE, Config
from asgiscale.runtime import worker
from asgiscale.runtime._process import run_forked
from asgiscale.runtime.instrument import Admission
from asgiscale.runtime.shm import SlotTable

logger = logging.getLogger("asgiscale.error")

SPAWN_TIMEOUT = 10.0


class _Refused(Exception):
    """The settings cannot be served (the error is logged already)."""


class Preloader:
    """The supervisor's handle on one pre-loaded process (one generation of code)."""

    def __init__(self, generation: int, pid: int, control: socket.socket) -> None:
        self.generation = generation
        self.pid = pid
        self.control = control
        self.loaded = False
        self.reaped = False  # its pid may belong to someone else now: never signal it again

    @classmethod
    def start(
        cls,
        config: Config,
        generation: int,
        listeners: list[socket.socket],
        table: SlotTable,
        log_config: dict[str, Any],
        close_fds: list[int],
    ) -> Preloader:
        """Fork the pre-loaded process; `close_fds` are the supervisor's own descriptors."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            run_forked(
                close_fds, lambda: _main(config, generation, theirs, listeners, table, log_config, supervisor_pid)
            )
        theirs.close()
        return cls(generation, pid, ours)

    def read_status(self) -> str | int | None:
        """After the control socket became readable while loading: "loaded", "failed", the code the
        app passed to sys.exit(), or None if the process hung up (its exit status says why)."""
        try:
            message = self.control.recv(64).decode(errors="replace").split()
        except OSError:
            return None
        self.loaded = message == ["loaded"]
        if len(message) == 2 and message[0] == "exit" and message[1].isdigit():
            return int(message[1])
        return message[0] if message else None

    def spawn(self, slot: int) -> int:
        """Fork a worker into `slot`; its pid.

        Raises TimeoutError if the process is stuck (the caller must replace it: a late answer
        would be read as the answer to the next request), another OSError if the fork failed.
        """
        self.control.settimeout(SPAWN_TIMEOUT)
        try:
            self.control.send(f"spawn {slot}".encode())
            reply = self.control.recv(256).decode(errors="replace").split(maxsplit=2)
        finally:
            self.control.settimeout(None)
        if len(reply) == 3 and reply[0] == "spawned" and reply[1] == str(slot):
            return int(reply[2])
        if reply and reply[0] == "failed":
            raise OSError(reply[-1])
        raise ConnectionError(f"pre-loaded process {self.pid} stopped answering")

    def stop(self) -> None:
        self.control.close()
        if self.reaped:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def build_uvicorn_config(config: Config, log_config: dict[str, Any]) -> uvicorn.Config:
    return uvicorn.Config(
        app=config.app or "",
        host=config.host,
        port=config.port,
        uds=config.uds,
        fd=config.fd,
        loop=config.loop,
        http=config.http,
        ws=config.ws,
        lifespan=config.lifespan,  # type: ignore[arg-type]
        env_file=config.env_file,
        log_config=log_config,
        log_level=config.log_level,
        access_log=config.access_log,
        use_colors=config.use_colors,
        proxy_headers=config.proxy_headers,
        server_header=config.server_header,
        date_header=config.date_header,
        forwarded_allow_ips=config.forwarded_allow_ips,
        root_path=config.root_path,
        limit_concurrency=config.limit_concurrency,
        backlog=config.backlog,
        timeout_keep_alive=config.timeout_keep_alive,  # type: ignore[arg-type]  # a float works
        timeout_graceful_shutdown=int(config.graceful_timeout),
        ssl_keyfile=config.ssl_keyfile,
        ssl_certfile=config.ssl_certfile,
        ssl_keyfile_password=config.ssl_keyfile_password,
        factory=config.factory,
    )


def _main(
    config: Config,
    generation: int,
    control: socket.socket,
    listeners: list[socket.socket],
    table: SlotTable,
    log_config: dict[str, Any],
    supervisor_pid: int,
) -> int | None:
    """The pre-loaded process: load the app, then fork a worker whenever the supervisor asks;
    returns the exit code (none once the supervisor hangs up)."""
    os.setpgid(0, 0)  # Ctrl-C in a terminal reaches the supervisor only
    # A load past its deadline gets SIGUSR1 before SIGKILL: show where the import hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        uv_config, settings = _load(config, generation, log_config)
    except _Refused:
        control.send(b"failed")  # already logged
        return EXIT_STARTUP_FAILURE
    except SystemExit as exc:
        code = exc.code
        if isinstance(code, str):  # sys.exit("message") prints the message and exits 1
            print(code, file=sys.stderr, flush=True)
            code = 1
        control.send(f"exit {code or 0}".encode())
        return EXIT_STARTUP_FAILURE
    except BaseException:
        traceback.print_exc()
        control.send(b"failed")
        return EXIT_STARTUP_FAILURE
    faulthandler.unregister(signal.SIGUSR1)
    gc.freeze()
    control.send(b"loaded")
    while True:
        message = control.recv(64).split()
        if not message:
            return None
        slot = int(message[1])
        try:
            pid = _fork_worker(uv_config, listeners, table, slot, supervisor_pid, settings, control)
        except (OSError, ValueError) as exc:  # e.g. EAGAIN: too many processes; the supervisor retries
            control.send(f"failed {slot} {exc}".encode()[:256])
            continue
        control.send(f"spawned {slot} {pid}".encode())


def _load(config: Config, generation: int, log_config: dict[str, Any]) -> tuple[uvicorn.Config, worker.WorkerSettings]:
    app_dir = os.path.abspath(config.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    importlib.invalidate_caches()
    uv_config = build_uvicorn_config(config, log_config)
    uv_config.load()
    readiness = None
    if config.readiness:
        try:
            readiness = import_from_string(config.readiness)
        except ImportFromStringError as exc:
            logger.error("Could not load the --readiness check: %s", exc)
            raise _Refused from None
        if not callable(readiness):
            logger.error(
                "--readiness %r is not callable; give a function that returns True when ready.", config.readiness
            )
            raise _Refused
    admission = None
    if config.max_concurrency is not None:
        queue = config.max_concurrency if config.max_queue is None else config.max_queue
        admission = Admission(config.max_concurrency, queue, config.queue_timeout)
    settings = worker.WorkerSettings(
        graceful_timeout=config.graceful_timeout,
        metrics=config.metrics,
        readiness=readiness,
        generation=generation,
        admission=admission,
    )
    return uv_config, settings


def _fork_worker(
    uv_config: uvicorn.Config,
    listeners: list[socket.socket],
    table: SlotTable,
    slot: int,
    supervisor_pid: int,
    settings: worker.WorkerSettings,
    control: socket.socket,
) -> int:
    read_end, write_end = os.pipe()
    gc.freeze()
    intermediate = os.fork()
    if intermediate == 0:
        try:  # nothing may escape into the pre-loaded process's own code from here
            os.close(read_end)
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                control.close()
                worker.serve(uv_config, listeners, table.slot(slot), supervisor_pid, settings)
            os.write(write_end, str(pid).encode())
        finally:
            os._exit(0)  # an empty pipe tells the pre-loaded process that the fork failed
    os.close(write_end)
    try:
        data = os.read(read_end, 32)
    finally:
        os.close(read_end)
        os.waitpid(intermediate, 0)
    return int(data)
