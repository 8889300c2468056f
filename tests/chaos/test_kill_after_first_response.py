"""The worker that gave the service's very first answer is killed at once, five fresh starts in a row: the service
heals it and goes on (a worker that served is never taken for a failed start, which would stop with exit code 3)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.chaos._load import watched
from tests.utils import AsgiscaleProcess, get, wait_for

pytestmark = pytest.mark.chaos

WORKERS = 4
STARTS = 5


def first_answer(server: AsgiscaleProcess) -> httpx.Response:
    """The first answer the service gives: sent as soon as the listener is bound, before any worker is up."""

    def answer() -> httpx.Response | None:
        assert server.proc is not None and server.proc.poll() is None, server.log()
        try:
            return get(server.url, headers={"connection": "close"}, timeout=20)
        except httpx.ConnectError:
            return None  # not bound yet

    return wait_for(answer, 30, "the first answer")  # type: ignore[no-any-return]


@pytest.mark.parametrize("start", range(STARTS))
def test_killing_the_first_worker_to_answer_within_50ms_leaves_the_service_running(probe_dir: Path, start: int) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", str(WORKERS)], probe_dir) as server:
        # Microseconds after the answer: well inside the 50 ms before the supervisor's next look at the slot.
        pid = int(first_answer(server).text.split()[1])
        os.kill(pid, signal.SIGKILL)
        with watched(server) as (_, metrics):
            survivors = server.wait_workers(WORKERS, timeout=30, excluding={pid})
            assert server.proc is not None and server.proc.poll() is None, f"stopped with {server.proc.returncode}"
            answers = {int(server.get(headers={"connection": "close"}).text.split()[1]) for _ in range(20)}
            assert answers <= survivors | server.ready_workers()
            wait_for(lambda: metrics.history.scrapes >= 5, 20, "5 scrapes of /metrics")
        assert "failed to start" not in server.log()
        assert server.stop() == 0
