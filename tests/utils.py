"""Real `asgiscale run` processes on loopback, and a bounded load generator against them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

APPS = Path(__file__).parent / "apps"
# httpx builds an SSL context for every client, so for every httpx.get: 50-80 ms of CPU, a core's worth in a loop
# that polls. Made once here and passed as `verify=TLS`, even though loopback traffic is plain HTTP.
TLS = ssl.create_default_context()
ADMIN_LINE = r"Admin server \[(\d+)\] on (http://\S+)"
REPO = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_probe(directory: Path, version: str = "1") -> Path:
    target = directory / "probe.py"
    shutil.copy(APPS / "probe.py", target)
    set_probe_version(target, version)
    return target


def set_probe_version(path: Path, version: str) -> None:
    source = re.sub(r'^VERSION = ".*"$', f'VERSION = "{version}"', path.read_text(), flags=re.M)
    path.write_text(source)
    # A same-second rewrite must still look newer than the cached bytecode.
    stamp = time.time() + 2
    os.utime(path, (stamp, stamp))


def get(url: str, **kwargs: Any) -> httpx.Response:
    """httpx.get with the shared SSL context, on a new connection."""
    return httpx.get(url, verify=TLS, **{"timeout": 10, **kwargs})


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class AsgiscaleProcess:
    """`python -m asgiscale run ARGS` in `cwd`, logging to a file; stopped by pid."""

    def __init__(
        self, args: list[str], cwd: Path, env: dict[str, str] | None = None, log_dir: Path | None = None
    ) -> None:
        self.port = free_port()
        admin = [] if any(a.startswith(("--admin", "--no-admin")) for a in args) else ["--admin", "127.0.0.1:0"]
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), *admin, *args]
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.log_path = (log_dir or cwd) / f"asgiscale-{self.port}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: set[int] = set()
        self._admin_url: str | None = None

    def __enter__(self) -> AsgiscaleProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "asgiscale", "run", *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready_workers(self) -> set[int]:
        """Workers the admin server's /status shows ready and that are still alive (from the log with --no-admin)."""
        if "--no-admin" in self.args:
            log = self.log()
            ready = {int(p) for p in re.findall(r"Worker \[(\d+)\] ready", log)}
            ready -= {int(p) for p in re.findall(r"Worker \[(\d+)\] (?:stopped|died)", log)}
        else:
            status = self.status()
            ready = {w["pid"] for w in status["workers"] if w["state"] == "ready"} if status else set()
        alive = {pid for pid in ready if is_alive(pid)}
        self._seen |= alive
        return alive

    def status(self) -> dict[str, Any] | None:
        """The admin server's /status document, or None while the admin server does not answer yet."""
        if self._admin_url is None:  # a restarted admin server comes back on the same address
            found = re.search(ADMIN_LINE, self.log())
            if found is None:
                return None
            self._admin_url = found[2]
        try:
            response = get(self._admin_url + "/status", timeout=5)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_in_flight(self, count: int) -> None:
        """Until /status counts `count` requests in flight (workers publish it on their 100 ms tick)."""
        wait_for(lambda: (self.status() or {}).get("totals", {}).get("in_flight") == count, 10, f"{count} in flight")

    def wait_workers(self, count: int, timeout: float = 20, excluding: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
        """Wait until exactly `count` workers are ready, none of them in `excluding`."""

        def matches() -> set[int] | None:
            self._check_running()
            workers = self.ready_workers()
            return workers if len(workers) == count and not workers & excluding else None

        try:
            return wait_for(matches, timeout, f"{count} ready workers")  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now {sorted(self.ready_workers())}\n{self.log()}") from None

    def admin(self, timeout: float = 20) -> tuple[int, str]:
        """(pid, base URL) of the admin server, from the log."""
        found = self.wait_log(ADMIN_LINE, timeout)
        return int(found[1]), found[2]

    @property
    def admin_url(self) -> str:
        return self.admin()[1]

    def wait_log(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        return wait_for(lambda: re.search(pattern, self.log()), timeout, f"{pattern!r} in the log\n{self.log()}")  # type: ignore[no-any-return]

    def get(self, path: str = "/", **kwargs: object) -> httpx.Response:
        return get(self.url + path, **kwargs)

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 60) -> int:
        self.send(signal.SIGTERM)
        return self.wait_exit(timeout)

    def _check_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"asgiscale exited with {self.proc.returncode}\n{self.log()}")

    def cleanup(self) -> None:
        """End the supervisor and every process it started, by pid."""
        if self.proc is None:
            return
        pids = set(self._seen)
        try:
            pids |= {child.pid for child in psutil.Process(self.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def is_alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Load:
    """Closed-loop HTTP load from threads with keep-alive clients; counts every failure.

    Bounded: it stops when told to, or after `max_seconds`.
    """

    def __init__(self, url: str, *, clients: int = 4, path: str = "/", max_seconds: float = 60) -> None:
        assert url.startswith("http://127.0.0.1:"), "load targets loopback only"
        self.url = url + path
        self.clients = clients
        self.max_seconds = max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.bodies: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_requests(self, count: int, timeout: float = 30) -> None:
        start = self.ok
        wait_for(lambda: self.ok - start >= count, timeout, f"{count} more successful requests")

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=15, verify=TLS) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.get(self.url)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.ok += 1
                        self.bodies[response.text.split()[0]] += 1
                    else:
                        self.failures.append(f"HTTP {response.status_code}")
