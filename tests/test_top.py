"""`asgiscale top`: its frame from a /status document, and the command against a real `asgiscale run`."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from asgiscale.top import AdminUnreachable, admin_url, render, render_unreachable
from tests.utils import AsgiscaleProcess, free_port, get, wait_for

STATUS: dict[str, Any] = {
    "version": "0.1.0",
    "app": "examples.hello:app",
    "listen": "http://127.0.0.1:8311",
    "supervisor": {
        "pid": 28054,
        "stage": "running",
        "uptime": 64.3,
        "generation": 1,
        "target_workers": 2,
        "healthy": True,
        "health": "2 worker(s) alive",
        "ready": False,
        "readiness": "no worker is ready yet",
    },
    "workers": [
        {
            "slot": 0,
            "pid": 28059,
            "state": "ready",
            "generation": 1,
            "age": 4.05,
            "requests": 1234,
            "in_flight": 1,
            "websockets": 0,
            "app_ready": None,
            "cpu_percent": 12.5,
            "rss_bytes": 44388352,
        },
        {
            "slot": 1,
            "pid": 28061,
            "state": "booting",
            "generation": 1,
            "age": 0.2,
            "requests": 0,
            "in_flight": 0,
            "websockets": 0,
            "app_ready": None,
            "cpu_percent": None,
            "rss_bytes": None,
        },
    ],  # fmt: skip
    "totals": {
        "requests": 1234,
        "errors": 7,
        "in_flight": 1,
        "websockets": 0,
        "websockets_total": 0,
        "request_bytes": 0,
        "response_bytes": 960,
        "shed": 0,
        "restarts": {"crash": 1, "timeout": 0, "startup-timeout": 0, "reload": 0, "max-requests": 0},
        "by_status": {"200": 1227, "500": 7},
    },
    "rates": {"window": 10, "requests_per_second": 6.66},
    "latency": {"window": 60, "p50": 0.0025, "p95": 0.00475, "p99": None},
    "history": [],
    "events": [
        {"time": 1795545551.8, "level": "info", "event": "spawn", "message": "Started worker [28059] (start)."},
        {"time": 1795545552.1, "level": "error", "event": "crash", "message": "Worker [28060] died while ready."},
    ],
}


def text_of(renderable: Any, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_render_shows_header_totals_workers_and_events() -> None:
    text = text_of(render(STATUS))
    assert "examples.hello:app on http://127.0.0.1:8311" in text
    assert "running · up 1m 04s · generation 1 · 2 workers, target 2" in text
    assert "not ready: no worker is ready yet" in text and "healthy" in text
    # requests, req/s, errors, in flight, p50, p95, p99 (ms; none yet), restarts
    assert re.search(r"^\s*1,234\s+6\.66\s+7\s+1\s+2\.50\s+4\.75\s+–\s+1\s*$", text, re.M)
    assert re.search(r"^\s*0\s+28059\s+ready\s+1\s+4\.0s\s+1,234\s+1\s+12\.5\s+42\.3\s*$", text, re.M)
    assert re.search(r"^\s*1\s+28061\s+booting\s+1\s+0\.2s\s+0\s+0\s+–\s+–\s*$", text, re.M)
    # Newest event first.
    assert text.index("died while ready") < text.index("Started worker [28059]")


def test_render_shows_the_scaling_policy_and_its_decisions() -> None:
    scaled = {
        **STATUS,
        "scaling": {"policy": "hpa", "min_workers": 1, "max_workers": 8, "targets": ["concurrency=16"]},
        "supervisor": {**STATUS["supervisor"], "scale_decisions": {"up": 3, "down": 1}},
    }
    assert "2 workers, target 2 (hpa 1-8, 3 up 1 down)" in text_of(render(scaled))


def test_render_without_workers_or_events() -> None:
    text = text_of(render({**STATUS, "workers": [], "events": []}))
    assert "no worker is alive" in text


def test_unreachable_frame_keeps_the_last_numbers() -> None:
    error = AdminUnreachable("http://127.0.0.1:9000", "connection refused")
    text = text_of(render_unreachable(error, STATUS), width=200)
    assert text.startswith("cannot reach the admin server at http://127.0.0.1:9000 (connection refused)")
    assert "28059" in text
    assert text_of(render_unreachable(error, None), width=200).count("\n") == 1


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (None, {}, "http://127.0.0.1:9000"),
        ("127.0.0.1:9100", {}, "http://127.0.0.1:9100"),
        ("http://10.0.0.5:9100/", {}, "http://10.0.0.5:9100"),
        ("https://admin.example/prefix", {}, "https://admin.example/prefix"),
        (None, {"ASGISCALE_ADMIN": "10.0.0.5:9100"}, "http://10.0.0.5:9100"),
        ("127.0.0.1:9200", {"ASGISCALE_ADMIN": "10.0.0.5:9100"}, "http://127.0.0.1:9200"),
        (None, {"ASGISCALE_ADMIN": "OFF"}, "http://127.0.0.1:9000"),
        ("0.0.0.0:9100", {}, "http://127.0.0.1:9100"),
        (":9100", {}, "http://127.0.0.1:9100"),
        ("[::]:9100", {}, "http://[::1]:9100"),
    ],
)
def test_admin_url(option: str | None, env: dict[str, str], expected: str) -> None:
    assert admin_url(option, env) == expected


def run_top(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "ASGISCALE_ADMIN"}
    return subprocess.run(
        [sys.executable, "-m", "asgiscale", "top", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**environ, "COLUMNS": "120", **(env or {})},
    )


def test_once_prints_the_workers_and_totals_of_a_real_run(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        workers = server.wait_workers(2)
        admin = server.admin_url
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert [client.get("/").status_code for _ in range(7)] == [200] * 7
            assert [client.get("/env").status_code for _ in range(3)] == [500] * 3  # no ?name=: the app raises

        # Workers publish their counts on their 100 ms tick.
        wait_for(lambda: get(admin + "/status").json()["totals"]["requests"] == 10, 5, "the counts")
        result = run_top("--admin", admin, "--once")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        status = httpx.get(admin + "/status", timeout=10).json()
        assert {w["pid"] for w in status["workers"]} == workers
        for pid in workers:
            assert re.search(rf"^\s*\d+\s+{pid}\s+ready\s", result.stdout, re.M), result.stdout
        # requests, req/s, errors, in flight
        assert re.search(r"^\s*10\s+\S+\s+3\s+0\s", result.stdout, re.M), result.stdout
        assert "probe:app on " + server.url in result.stdout

        # HOST:PORT without a scheme, from the environment.
        result = run_top("--once", env={"ASGISCALE_ADMIN": admin.removeprefix("http://")})
        assert result.returncode == 0, result.stderr
        assert all(str(pid) in result.stdout for pid in workers)
        assert server.stop() == 0


def test_unreachable_admin_is_a_one_line_error() -> None:
    port = free_port()
    result = run_top("--admin", f"127.0.0.1:{port}", "--once")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"asgiscale: error: cannot reach the admin server at http://127.0.0.1:{port} (connection refused); "
        "is asgiscale run started with --admin?\n"
    )
    # Live mode checks before it starts drawing.
    result = run_top("--admin", f"127.0.0.1:{port}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1


class Terminal:
    """The primary side of a pty, drained by a thread: top never blocks on a full terminal while the test waits."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            with self._lock:
                self.seen += chunk

    def wait_for(self, pattern: bytes, timeout: float) -> None:
        def found() -> bool:
            with self._lock:
                return pattern in self.seen

        wait_for(found, timeout, f"{pattern!r} on the terminal, after {bytes(self.seen[-2000:])!r}")

    def close(self) -> None:
        self._thread.join(5)  # the read ends once no process holds the other side
        os.close(self.fd)


def test_live_view_redraws_reports_a_lost_admin_and_ends_quietly_on_ctrl_c(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "1"], probe_dir) as server:
        (worker,) = server.wait_workers(1)
        primary, secondary = pty.openpty()
        env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        top = subprocess.Popen(
            [sys.executable, "-m", "asgiscale", "top", "--admin", server.admin_url, "--interval", "0.2"],
            stdin=secondary,
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=env,
        )
        os.close(secondary)
        terminal = Terminal(primary)
        try:
            terminal.wait_for(b"\x1b[?1049h", 30)  # the alternate screen: Live has started
            terminal.wait_for(str(worker).encode(), 10)
            assert server.stop() == 0
            terminal.wait_for(b"cannot reach the admin server", 10)
            top.send_signal(signal.SIGINT)
            assert top.wait(10) == 0
            terminal.wait_for(b"\x1b[?1049l", 5)  # and the screen restored
            assert top.stderr is not None and top.stderr.read() == b""
        finally:
            if top.poll() is None:
                top.kill()
                top.wait(10)
            if top.stderr is not None:
                top.stderr.close()
            terminal.close()
