"""A worker's server in this process, on a real socket, hit with httpx."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from asgiscale.runtime.shm import SlotTable, WorkerState
from asgiscale.runtime.worker import WorkerServer, WorkerSettings
from tests.utils import wait_for

release = threading.Event()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["path"] == "/hold":
        while not release.is_set():
            await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Served:
    def __init__(self) -> None:
        self.slot = SlotTable(1).slot(0)
        self.slot.reset()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="critical", lifespan="off", timeout_keep_alive=5)
        self.server = WorkerServer(config, self.slot, os.getppid(), WorkerSettings(graceful_timeout=10))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})


@pytest.fixture
def served() -> Iterator[Served]:
    release.clear()
    served = Served()
    served.thread.start()
    wait_for(lambda: served.slot.state is WorkerState.READY, 10, "the worker to be ready")
    try:
        yield served
    finally:
        release.set()
        served.server.should_exit = True
        served.thread.join(15)
        served.sock.close()


def test_slot_reports_readiness_heartbeat_and_counts(served: Served) -> None:
    first_beat = served.slot.heartbeat_ns
    with httpx.Client() as client:
        for _ in range(5):
            assert client.get(served.url).status_code == 200
    wait_for(lambda: served.slot.requests == 5, 5, "the count to reach the slot")
    assert served.slot.heartbeat_ns > first_beat
    holder = threading.Thread(target=lambda: httpx.get(served.url + "/hold", timeout=10))
    holder.start()
    wait_for(lambda: served.slot.in_flight == 1, 5, "an in-flight request in the slot")
    release.set()
    holder.join(10)
    wait_for(lambda: served.slot.in_flight == 0 and served.slot.requests == 6, 5, "the slot to settle")


def test_drain_keeps_idle_keep_alive_connections_for_their_next_request(served: Served) -> None:
    with httpx.Client() as client:
        assert "connection" not in client.get(served.url).headers  # keep-alive
        served.server.should_exit = True
        wait_for(lambda: served.slot.state is WorkerState.DRAINING, 5, "the drain to start")
        # The listener is closed now: the request below succeeds only on the kept connection.
        response = client.get(served.url)
        assert response.status_code == 200
        assert response.headers["connection"] == "close"
        with pytest.raises(httpx.ConnectError):
            client.get(served.url)
    served.thread.join(15)
    assert not served.thread.is_alive()


def test_drain_finishes_in_flight_requests(served: Served) -> None:
    results: list[int] = []
    holder = threading.Thread(target=lambda: results.append(httpx.get(served.url + "/hold", timeout=10).status_code))
    holder.start()
    wait_for(lambda: served.slot.in_flight == 1, 5, "an in-flight request")
    served.server.should_exit = True
    wait_for(lambda: served.slot.state is WorkerState.DRAINING, 5, "the drain to start")
    release.set()
    holder.join(10)
    assert results == [200]
