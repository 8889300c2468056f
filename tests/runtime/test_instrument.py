"""Request instrumentation: transparent to the app, exact in what it counts.

A FastAPI app runs in a worker server in this process, on a real socket, with the
instrumentation on and off; every answer must be the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import BackgroundTasks, FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse
from websockets.sync.client import connect

from asgiscale.runtime.metrics import Totals, series_labels, share_pairs
from asgiscale.runtime.shm import Field, SlotTable, WorkerState
from asgiscale.runtime.worker import WorkerServer, WorkerSettings
from tests.utils import wait_for

pytestmark = pytest.mark.usefixtures("meter")  # every test runs with each meter
background_done = threading.Event()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"answer": 42}


api = FastAPI(lifespan=lifespan)


@api.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.01)
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@api.get("/background")
async def background(tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(background_done.set)
    return {"status": "accepted"}


@api.get("/state")
async def state(request: Request) -> dict[str, Any]:
    return {"answer": request.state.answer, "root_path": request.scope["root_path"], "path": request.url.path}


@api.post("/echo")
async def echo(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


@api.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")


@api.get("/broken")
async def broken() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first part\n"
        raise RuntimeError("broken mid-stream")

    return StreamingResponse(chunks(), media_type="text/plain")


SLOW_ANSWERED = threading.Event()


@api.get("/slow")
async def slow() -> dict[str, str]:
    await asyncio.sleep(1)
    SLOW_ANSWERED.set()
    return {"status": "late"}


@api.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


class Served:
    def __init__(self, metrics: bool, http: str) -> None:
        table = SlotTable(1)
        self.slot = table.slot(0)
        share_pairs(table, [0])
        self.slot.set(Field.STATE, WorkerState.BOOTING)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(api, log_level="critical", lifespan="on", root_path="/api", http=http)
        settings = WorkerSettings(graceful_timeout=5, metrics=metrics)
        self.server = WorkerServer(config, self.slot, os.getppid(), settings)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def totals(self) -> Totals:
        return Totals.sum([self.slot.read()])


@contextlib.contextmanager
def serving(metrics: bool, http: str = "httptools") -> Iterator[Served]:
    served = Served(metrics, http)
    served.thread.start()
    wait_for(lambda: served.slot.state is WorkerState.READY, 10, "the worker to be ready")
    try:
        yield served
    finally:
        served.server.should_exit = True
        served.thread.join(15)
        served.sock.close()


def exchange(url: str) -> list[tuple[int, str]]:
    # A connection per request: after an app error uvicorn closes the connection, and a
    # client reusing it could race that close.
    answers = [httpx.get(url + path, timeout=10) for path in ("/stream", "/state", "/background", "/boom", "/missing")]
    answers.append(httpx.post(url + "/echo", content=b"x" * 1000, timeout=10))
    return [(r.status_code, r.text) for r in answers]


def test_the_app_answers_the_same_with_and_without_instrumentation(meter: bool) -> None:
    with serving(metrics=False) as bare:
        expected = exchange(bare.url)
    with serving(metrics=True) as measured:
        assert exchange(measured.url) == expected
        assert measured.server.metrics is not None and measured.server.metrics.compiled is meter
    assert expected[0][1] == "".join(f"chunk {i}\n" for i in range(5))
    assert expected[1][1] == '{"answer":42,"root_path":"/api","path":"/api/state"}'
    assert expected[3][0] == 500


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_requests_are_counted_by_method_and_status_with_their_bodies(http: str) -> None:
    background_done.clear()
    with serving(metrics=True, http=http) as served:
        exchange(served.url)
        assert background_done.wait(5), "the background task did not run"
    totals = served.totals()  # the last counts are flushed as the worker stops
    counts = {series_labels(key): sum(buckets) for key, (buckets, _) in totals.series.items()}
    assert counts == {("GET", 200): 3, ("GET", 500): 1, ("GET", 404): 1, ("POST", 200): 1}
    assert totals.counters[Field.REQUEST_BYTES] == 1000
    assert totals.counters[Field.RESPONSE_BYTES] > len("".join(f"chunk {i}\n" for i in range(5)))
    # The streamed response took at least its five 10 ms pauses: not in the first bucket.
    stream = next(b for key, (b, _) in totals.series.items() if series_labels(key) == ("GET", 200))
    assert sum(stream[1:]) >= 1


def test_websockets_are_counted_as_such_not_as_requests_in_flight() -> None:
    with serving(metrics=True) as served:
        with connect(served.url.replace("http", "ws") + "/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "HELLO"
            wait_for(lambda: served.slot.get(Field.WS_ACTIVE) == 1, 5, "the open WebSocket in the slot")
            assert served.slot.get(Field.IN_FLIGHT) == 0
        wait_for(lambda: served.slot.get(Field.WS_ACTIVE) == 0, 5, "the closed WebSocket in the slot")
        assert served.slot.get(Field.WS_TOTAL) == 1
        assert served.totals().requests == 0


def test_broken_and_abandoned_responses_are_counted_once_their_connection_is_gone() -> None:
    SLOW_ANSWERED.clear()
    with serving(metrics=True) as served:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(served.url + "/broken", timeout=10).read()
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(served.url + "/slow", timeout=0.2)  # the client gives up first

        def counts() -> dict[tuple[str, int], int]:
            totals = served.totals()
            return {series_labels(key): sum(buckets) for key, (buckets, _) in totals.series.items()}

        wait_for(lambda: counts() == {("GET", 500): 1, ("GET", 499): 1}, 5, "both requests counted")
        wait_for(lambda: served.slot.get(Field.IN_FLIGHT) == 0, 5, "nothing left in flight")
        # The slow handler answers into the closed connection; once a request sent after that is counted, so
        # would the late answer have been.
        assert SLOW_ANSWERED.wait(10)
        assert httpx.post(served.url + "/echo", content=b"", timeout=10).status_code == 200
        wait_for(lambda: counts().get(("POST", 200)) == 1, 5, "the request after the late answer")
        assert counts() == {("GET", 500): 1, ("GET", 499): 1, ("POST", 200): 1}
