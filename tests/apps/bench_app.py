"""A bare ASGI app with known service times, for the `asgiscale bench` tests.

GET /sleep      answers after an async sleep of 20 ms, or ?ms=N (no CPU: capacity comes from --max-concurrency)
GET /busy       answers after a busy loop of 5 ms (one core: one worker carries at most 200 req/s)
GET /stall      answers at once, except that the first request 1 s after the worker's first one
                blocks the whole worker for 1 s (a stop-the-world pause)
GET /error      answers 500
"""

import asyncio
import time

SLEEP = 0.020
BUSY = 0.005
STALL = 1.0
_first = None
_stalled = False


async def app(scope, receive, send):
    global _first, _stalled
    if scope["type"] != "http":
        return
    path = scope["path"]
    status = 200
    if path == "/sleep":
        query = scope["query_string"].decode()
        await asyncio.sleep(int(query[3:]) / 1000 if query.startswith("ms=") else SLEEP)
    elif path == "/busy":
        end = time.perf_counter() + BUSY
        while time.perf_counter() < end:
            pass
    elif path == "/stall":
        now = time.monotonic()
        _first = _first or now
        if not _stalled and now - _first > 1.0:
            _stalled = True
            time.sleep(STALL)
    elif path == "/error":
        status = 500
    body = b"ok"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
