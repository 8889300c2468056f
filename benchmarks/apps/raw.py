"""A bare ASGI callable: the smallest app a server can run, so the server's own cost dominates.

GET / answers 200 "Hello, World"; GET /pid answers the worker's pid (used to tell workers apart);
/code/NNN answers status NNN with an empty body, whatever the method (gives scrape.py's metrics
several series).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, World"


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """A lifespan that does nothing but answer, until shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await serve_lifespan(receive, send)
    if scope["type"] != "http":
        return
    path = scope["path"]
    status = 200
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path.startswith("/code/"):
        status, body = int(path[6:]), b""
    else:
        body = HELLO
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
