"""The example app: FastAPI's hello world, plus endpoints that show the runtime at work.

    asgiscale run examples.hello:app --workers 4

GET /            {"message": "Hello, World"}
GET /slow?ms=N   answers after an async sleep of N ms (in-flight requests, graceful drain)
GET /cpu?ms=N    answers after a busy loop of N ms (a blocked event loop, CPU load)
GET /pid         the pid of the worker that answered
WS  /ws          echoes every text message back
"""

import asyncio
import os
import time

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI(title="asgiscale example")


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, World"}


@app.get("/slow")
async def slow(ms: float = 100) -> dict[str, float]:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/cpu")
async def cpu(ms: float = 10) -> dict[str, float]:
    deadline = time.perf_counter() + ms / 1000
    while time.perf_counter() < deadline:
        pass
    return {"busy_ms": ms}


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
