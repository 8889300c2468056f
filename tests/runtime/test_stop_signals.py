"""Stop signals repeated while `asgiscale run` stops: each one asks for a quicker end, and nothing restarts."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from tests.utils import AsgiscaleProcess

# Long enough that only the signals under test can end the stop within the test's timeouts.
LONG = ["--shutdown-delay", "120", "--graceful-timeout", "120"]


def test_a_second_sigterm_closes_the_listener_at_once_and_a_third_kills_what_still_drains(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "1", *LONG], probe_dir) as server:
        server.wait_workers(1)
        outcome: list[object] = []

        def slow() -> None:
            try:
                outcome.append(server.get("/slow?ms=100000", timeout=110))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        client = threading.Thread(target=slow)
        client.start()
        server.wait_in_flight(1)
        server.send(signal.SIGTERM)
        server.wait_log(r"Stopping: serving 120s more")
        server.send(signal.SIGTERM)
        server.wait_log("Stopping now: the listener closes.")
        server.wait_log(r"Draining worker \[\d+\] \(shutdown\)")
        server.send(signal.SIGTERM)
        server.wait_log(r"Forced stop: killing 1 worker\(s\)\.")
        server.wait_exit(30)
        client.join(30)
    (result,) = outcome
    # Cut by the kill: neither answered nor left to time out.
    assert isinstance(result, httpx.TransportError) and not isinstance(result, httpx.TimeoutException), result


def test_sighup_while_stopping_loads_no_new_code(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "1", *LONG], probe_dir) as server:
        server.wait_workers(1)
        server.send(signal.SIGTERM)
        server.wait_log(r"Stopping: serving 120s more")
        server.send(signal.SIGHUP)
        # Sent after the SIGHUP, so handled after it: once its line is logged, the SIGHUP was handled too.
        server.send(signal.SIGTERM)
        server.wait_log("Stopping now: the listener closes.")
        assert server.wait_exit(30) == 0
    log = server.log()
    assert "Reloading" not in log
    assert "generation 2" not in log
