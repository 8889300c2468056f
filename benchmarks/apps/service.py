"""A bare ASGI app whose requests cost a known amount of work: the load for overload.py and scaling.py.

GET /work?cpu=MS&wait=MS first awaits ``wait`` milliseconds (``asyncio.sleep``, a stand-in for a
database or an upstream call), then spins for ``cpu`` milliseconds of the thread's own CPU time,
and answers 200 "done". CPU time rather than wall time: a worker that the kernel preempts (for the
load generator sharing the machine) still does exactly the same work per request, so one worker's
capacity is 1000 / cpu requests per second whatever runs next to it. GET / answers at once (the
harness' readiness check), GET /pid the worker's pid.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qsl

from raw import Receive, Scope, Send, serve_lifespan  # apps/ is the app directory of every server run


def spin(cpu_ms: float) -> None:
    """Busy-loop until this thread has used ``cpu_ms`` milliseconds of CPU."""
    end = time.thread_time() + cpu_ms / 1000
    while time.thread_time() < end:
        pass


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await serve_lifespan(receive, send)
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/work":
        params = dict(parse_qsl(scope["query_string"].decode()))
        wait_ms, cpu_ms = float(params.get("wait", 0)), float(params.get("cpu", 0))
        if wait_ms:
            await asyncio.sleep(wait_ms / 1000)
        spin(cpu_ms)
        body = b"done"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"ok"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
