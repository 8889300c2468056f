"""The worker middleware in a real uvicorn server on a free port, hit with httpx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from asgiscale.runtime.middleware import RuntimeMiddleware, WorkerContext
from asgiscale.runtime.shm import SlotTable
from tests.utils import free_port, wait_for

release = asyncio.Event()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    if scope["path"] == "/hold":
        while not release.is_set():
            await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def served() -> Iterator[tuple[str, WorkerContext]]:
    table = SlotTable(2)
    context = WorkerContext()
    slot = table.slot(1)
    slot.reset()
    context.attach(slot)
    port = free_port()
    config = uvicorn.Config(RuntimeMiddleware(app, context), port=port, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    wait_for(lambda: server.started, 10, "the server")
    try:
        yield f"http://127.0.0.1:{port}", context
    finally:
        server.should_exit = True
        thread.join(10)


def test_counts_requests_and_in_flight(served: tuple[str, WorkerContext]) -> None:
    url, context = served
    assert context.slot is not None
    with httpx.Client() as client:
        for _ in range(5):
            assert client.get(url).status_code == 200
    assert context.slot.requests == 5
    assert context.slot.in_flight == 0
    release.clear()
    holder = threading.Thread(target=lambda: httpx.get(url + "/hold", timeout=10))
    holder.start()
    wait_for(lambda: context.slot is not None and context.slot.in_flight == 1, 10, "an in-flight request")
    release.set()
    holder.join(10)
    assert context.slot.in_flight == 0


def test_exceptions_pass_through_and_leave_no_request_in_flight(served: tuple[str, WorkerContext]) -> None:
    url, context = served
    assert httpx.get(url + "/boom").status_code == 500
    assert context.slot is not None and context.slot.in_flight == 0 and context.slot.requests == 1


def test_draining_worker_asks_clients_to_reconnect(served: tuple[str, WorkerContext]) -> None:
    url, context = served
    with httpx.Client() as client:
        assert client.get(url).headers["connection"] == "keep-alive"
        context.draining = True
        response = client.get(url)
    assert response.headers.get_list("connection") == ["close"]
    assert response.text == "ok"
