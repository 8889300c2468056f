"""A bare ASGI app with a known behaviour, for the process tests (copied into a temp dir)."""

import asyncio
import os
import time
from urllib.parse import parse_qs

VERSION = "1"


def ready():
    """The --readiness check: ready once the file `ready.flag` exists in the working directory."""
    return os.path.exists("ready.flag")


async def ready_async():
    await asyncio.sleep(0)
    return os.path.exists("ready.flag")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("PROBE_HANG_STARTUP"):
                    await asyncio.sleep(3600)
                if os.environ.get("PROBE_FAIL_STARTUP"):
                    await send({"type": "lifespan.startup.failed", "message": "probe refuses to start"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(float(query.get("ms", 100)) / 1000)
    elif path == "/cpu":
        deadline = time.perf_counter() + float(query.get("ms", 10)) / 1000
        while time.perf_counter() < deadline:
            pass
    elif path == "/exit":
        os._exit(int(query.get("code", 1)))
    body = f"{VERSION} {os.getpid()}".encode()
    if path == "/env":
        body = os.environ.get(query["name"], "").encode()
    status = int(query.get("status", 200))
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
