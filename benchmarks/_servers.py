"""The servers under comparison, the apps they serve, and a context manager that runs one of them.

Every server gets the same app, the same worker count, access logs off and log level warning, and
runs in a process group of its own so that stopping it ends exactly the processes it started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType

from _http import HOST, REQUEST_ERRORS, fetch, sample_pids
from _proc import is_alive

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
BIN_DIR = Path(sys.executable).parent
LOG_DIR = BENCH_DIR / ".logs"


@dataclass(frozen=True)
class App:
    """An ASGI app as ``module:attribute`` importable from ``directory``."""

    name: str
    directory: Path
    target: str


def _hello_app() -> App:
    if not (REPO_DIR / "examples" / "hello.py").exists():
        raise SystemExit("examples/hello.py is missing: the FastAPI benchmarks serve the repo's example app")
    return App("fastapi", REPO_DIR, "examples.hello:app")


def get_app(name: str) -> App:
    if name == "raw":
        return App("raw", BENCH_DIR / "apps", "raw:app")
    if name == "fastapi":
        return _hello_app()
    if name == "heavy":
        return App("heavy", BENCH_DIR / "apps", "heavy:app")
    raise ValueError(f"unknown app {name!r}; choose raw, fastapi or heavy")


def executable(name: str) -> str | None:
    """The venv's copy of a command first (the harness runs under the venv's python), then PATH."""
    local = BIN_DIR / name
    if local.exists():
        return str(local)
    return shutil.which(name)


Argv = Callable[[str, App, int, int], list[str]]


@dataclass(frozen=True)
class Server:
    """One entry of the comparison: how to start it and which supervisor signals it honours."""

    name: str
    command: str
    argv: Argv
    scales_on_ttin: bool
    reloads_on_hup: bool
    note: str = ""

    def version(self) -> str:
        """The installed distribution and its version, e.g. ``uvicorn 0.36.0``."""
        try:
            return f"{self.command} {metadata.version(self.command)}"
        except metadata.PackageNotFoundError:
            return f"{self.command} (version unknown)"

    def unavailable_reason(self) -> str | None:
        exe = executable(self.command)
        if exe is None:
            return f"`{self.command}` is not installed"
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return f"`{self.command} --version` timed out"
        if out.returncode != 0:
            return f"`{self.command} --version` failed: {(out.stderr or out.stdout).strip()[-200:]}"
        return None


def asgiscale_argv(*, admin: str = f"{HOST}:0", metrics: bool = True) -> Argv:
    """asgiscale as users get it: metrics on and the admin server running, on a port of its own.

    Port 0 lets the admin server pick a free port, so instances running side by side (and the
    tests of whoever else uses the machine) never race for the default 127.0.0.1:9000; on a
    taken default asgiscale would carry on without the admin process and weigh less.
    """

    def argv(exe: str, app: App, workers: int, port: int) -> list[str]:
        cmd = [exe, "run", app.target, "--workers", str(workers), "--host", HOST, "--port", str(port),
               "--app-dir", str(app.directory), "--no-access-log", "--log-level", "warning",
               "--admin", admin]  # fmt: skip
        return cmd if metrics else cmd + ["--no-metrics"]

    return argv


def _uvicorn_argv(exe: str, app: App, workers: int, port: int) -> list[str]:
    return [exe, app.target, "--workers", str(workers), "--host", HOST, "--port", str(port),
            "--app-dir", str(app.directory), "--no-access-log", "--log-level", "warning"]  # fmt: skip


def _gunicorn_argv(preload: bool) -> Argv:
    def argv(exe: str, app: App, workers: int, port: int) -> list[str]:
        cmd = [exe, app.target, "-k", "uvicorn_worker.UvicornWorker", "--workers", str(workers),
               "--bind", f"{HOST}:{port}", "--chdir", str(app.directory), "--log-level", "warning"]  # fmt: skip
        return cmd + ["--preload"] if preload else cmd

    return argv


def _granian_argv(exe: str, app: App, workers: int, port: int) -> list[str]:
    return [exe, "--interface", "asgi", "--workers", str(workers), "--host", HOST, "--port", str(port),
            "--working-dir", str(app.directory), "--log-level", "warning", app.target]  # fmt: skip


SERVERS: dict[str, Server] = {
    server.name: server
    for server in [
        Server("asgiscale", "asgiscale", asgiscale_argv(), scales_on_ttin=True, reloads_on_hup=True),
        Server("uvicorn", "uvicorn", _uvicorn_argv, scales_on_ttin=True, reloads_on_hup=True),
        Server("gunicorn", "gunicorn", _gunicorn_argv(preload=False), scales_on_ttin=True, reloads_on_hup=True),
        Server(
            "gunicorn-preload",
            "gunicorn",
            _gunicorn_argv(preload=True),
            scales_on_ttin=True,
            reloads_on_hup=True,
            note="gunicorn --preload: imports the app once in the master and forks workers from it",
        ),
        Server(
            "granian",
            "granian",
            _granian_argv,
            scales_on_ttin=False,
            reloads_on_hup=True,
            note="granian has no signal to add a worker (SIGHUP respawns workers, SIGINT/SIGTERM stop)",
        ),
    ]
}
BASELINE = "uvicorn"
DEFAULT_SERVERS = list(SERVERS)


def capable(servers: list[Server], can: Callable[[Server], bool], left_out: dict[str, str], why: str) -> list[Server]:
    """The servers that `can` do what a benchmark needs; the others go to `left_out` with a reason."""
    able = [s for s in servers if can(s)]
    left_out.update({s.name: s.note or why for s in servers if not can(s)})
    return able


def select_servers(names: list[str]) -> list[Server]:
    """The named servers that can run here; each one left out is reported with the reason."""
    chosen = []
    for name in names:
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
        reason = SERVERS[name].unavailable_reason()
        if reason is None:
            chosen.append(SERVERS[name])
        else:
            print(f"skipping {name}: {reason}", file=sys.stderr)
    return chosen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerFailedError(RuntimeError):
    """A server exited or never got ready; the benchmark goes on without it."""

    def __init__(self, running: RunningServer, what: str) -> None:
        super().__init__(f"{running.server.name} {what}; log {running.log_path}:\n{running.log_tail()}")
        self.summary = f"{what} (see {running.log_path.relative_to(REPO_DIR)})"

    def reason(self) -> str:
        return "failed: " + self.summary


class RunningServer:
    """One server process tree on a free loopback port, stopped (and reaped) on exit.

    >>> with RunningServer(SERVERS["uvicorn"], get_app("raw"), workers=2) as srv:
    ...     srv.wait_workers(2)
    ...     os.kill(srv.pid, signal.SIGTTIN)
    """

    def __init__(
        self, server: Server, app: App, workers: int, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.server = server
        self.app = app
        self.workers = workers
        self.port = port or free_port()
        self.extra_env = dict(env or {})
        LOG_DIR.mkdir(exist_ok=True)
        self.log_path = LOG_DIR / f"{server.name}-{app.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "server not started"
        return self._proc.pid

    def __enter__(self) -> RunningServer:
        exe = executable(self.server.command)
        assert exe is not None, f"{self.server.command} missing"
        argv = self.server.argv(exe, self.app, self.workers, self.port)
        # No bytecode writes: every server reads the same caches and leaves nothing in the repo. The harness's own
        # PYTHONPATH comes after the app's directory: a checkout's src/ given there is the asgiscale that runs.
        path = os.pathsep.join(p for p in (str(self.app.directory), os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        env.update(self.extra_env)
        with self.log_path.open("wb") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            # A new session makes the server the leader of a process group of its own, so the
            # whole tree can be ended without touching anything else on the machine.
            self._proc = subprocess.Popen(
                argv, cwd=self.app.directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _exited(self) -> bool:
        # Looks without reaping: an unreaped master keeps its pid, and so its process group id,
        # from being reused until stop() has swept the group.
        return self._proc is not None and not is_alive(self._proc.pid)

    def _check_running(self) -> None:
        if self._exited():
            raise ServerFailedError(self, "exited early")

    def _wait_ready(self, timeout: float) -> None:
        """Block until ``GET /`` answers 200."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            self._check_running()
            try:
                if asyncio.run(fetch(self.port, "/", timeout=2.0)).status == 200:
                    return
            except REQUEST_ERRORS:
                pass
            time.sleep(0.05)
        raise ServerFailedError(self, f"not ready after {timeout:.0f} s")

    def wait_workers(self, count: int, timeout: float = 60.0) -> set[int]:
        """Block until the server answers and ``count`` distinct worker pids have answered ``/pid``."""
        self._wait_ready(timeout)
        seen: set[int] = set()
        deadline = time.perf_counter() + timeout
        while len(seen) < count:
            self._check_running()
            if time.perf_counter() > deadline:
                raise ServerFailedError(self, f"only {len(seen)} of {count} workers answered in {timeout:.0f} s")
            try:
                seen |= asyncio.run(sample_pids(self.port, concurrency=2 * count))
            except OSError:
                pass
            time.sleep(0.02)
        return seen

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the master, then SIGKILL to its process group for anything left behind."""
        if self._proc is None or self._proc.returncode is not None:
            return
        if not self._exited():
            self._proc.send_signal(signal.SIGTERM)
            deadline = time.perf_counter() + timeout
            while not self._exited() and time.perf_counter() < deadline:
                time.sleep(0.02)
            if not self._exited():
                print(f"{self.server.name} did not stop within {timeout:.0f}s, killing its group", file=sys.stderr)
        # Workers normally exit with their master; a straggler would skew the next measurement.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait()
