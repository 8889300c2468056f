"""The app as a Google Cloud Functions (Cloud Run functions) HTTP entry point:
`handler = cloud_function(app)` in `main.py`, deployed with `--entry-point handler`.

functions-framework serves the entry point with gunicorn: one process per `WORKERS`
(default 1), each answering several requests at once from its threads (`THREADS`). Each
process gets one event loop, run in a daemon thread, and one lifespan: every request thread
hands its request to that loop and waits for the reply, so the lifespan state and the
connection pools it holds serve every request of the process. The loop starts with the
first request of the process, not when `main.py` is imported: functions-framework imports
it in gunicorn's master before forking the workers, and neither a thread nor an open
connection survives a fork.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # noqa: F401 - importing it while the interpreter exits fails
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import flask

from asgiscale.serverless._asgi import Lifespan, LifespanError, LifespanMode, checked_options, exchange
from asgiscale.serverless._http import Reply, Request
from asgiscale.serverless._wsgi import request_from_environ, response_headers

logger = logging.getLogger("asgiscale.error")

_UNAVAILABLE = Reply(503, [(b"content-type", b"text/plain; charset=utf-8")], b"Service Unavailable")
_BROKEN_REPLY = Reply(500, [(b"content-type", b"text/plain; charset=utf-8")], b"Internal Server Error")


class CloudFunction:
    """Serves the ASGI `app` to functions-framework, called as `adapter(flask_request)`;
    responses are buffered, not streamed. `cloud_function` wraps it in the plain function
    functions-framework wants as its target.

    >>> adapter = CloudFunction(app, base_path="/api")  # doctest: +SKIP
    >>> adapter(flask.request).status_code             # doctest: +SKIP
    200

    - `lifespan`: "auto" runs the app's lifespan if it has one, "on" requires it, "off" skips
      it. Startup runs on the first request of each process; until it succeeds, requests get
      503 and the error is logged, and the next request tries again;
    - `base_path`: the path prefix clients use that the app's routes do not include; it
      becomes the app's `root_path` (e.g. "/FUNCTION_NAME" for a `cloudfunctions.net` URL,
      which delivers the path without it);
    - `trusted_hops`: how many proxies in front append to `X-Forwarded-For`; the client is
      the address that many entries from its end, and the scheme is `X-Forwarded-Proto`.
      0 trusts neither header (the peer address and the server's scheme). By default 1 when
      `K_SERVICE` is set (on Google's platform: Google's front end), else 0;
    - `shutdown_timeout`: seconds the app's lifespan shutdown may take when the process
      exits (Cloud Run sends SIGTERM, then SIGKILL 10 s later).
    """

    def __init__(
        self,
        app: Any,
        *,
        lifespan: LifespanMode = "auto",
        base_path: str = "",
        trusted_hops: int | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        base_path = checked_options(lifespan, base_path)
        if trusted_hops is None:
            trusted_hops = 1 if os.environ.get("K_SERVICE") else 0
        if trusted_hops < 0:
            raise ValueError(f"trusted_hops={trusted_hops!r} must be 0 (trust no proxy) or more")
        self.app = app
        self.lifespan_mode: LifespanMode = lifespan
        self.base_path = base_path
        self.trusted_hops = trusted_hops
        self.shutdown_timeout = shutdown_timeout
        self._runtime: _Runtime | None = None
        self._lock = threading.Lock()

    def __call__(self, request: flask.Request) -> flask.Response:
        mapped = request_from_environ(
            request.environ, request.get_data(), base_path=self.base_path, trusted_hops=self.trusted_hops
        )
        future = self._current().submit(mapped)
        try:
            reply = future.result()
        except BaseException:
            future.cancel()  # this thread was interrupted (a request timeout): stop the app's work too
            raise
        try:
            return _Response(reply.body, status=reply.status, headers=response_headers(reply, mapped.method))
        except ValueError:  # e.g. a newline in a header value, which werkzeug refuses to send
            logger.exception("The app's response cannot be sent; answering 500.")
            return _Response(_BROKEN_REPLY.body, status=500, headers=response_headers(_BROKEN_REPLY, mapped.method))

    def _current(self) -> _Runtime:
        """This process's runtime, started by its first request (and again after a fork)."""
        with self._lock:
            runtime = self._runtime
            if runtime is None or runtime.pid != os.getpid() or runtime.closed:
                runtime = self._runtime = _Runtime(self.app, self.lifespan_mode)
                _at_exit(lambda: runtime.close(self.shutdown_timeout))
            return runtime

    def close(self) -> None:
        """Run the app's lifespan shutdown and stop the loop (idempotent); done at exit anyway."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close(self.shutdown_timeout)


def cloud_function(
    app: Any,
    *,
    lifespan: LifespanMode = "auto",
    base_path: str = "",
    trusted_hops: int | None = None,
    shutdown_timeout: float = 5.0,
) -> Callable[[flask.Request], flask.Response]:
    """The HTTP function serving `app` (options: see `CloudFunction`), for `main.py`:

    >>> handler = cloud_function(app)  # doctest: +SKIP

    A plain function, as functions-framework requires of its target (it refuses a callable
    object such as the `CloudFunction` itself).
    """
    adapter = CloudFunction(
        app, lifespan=lifespan, base_path=base_path, trusted_hops=trusted_hops, shutdown_timeout=shutdown_timeout
    )

    def handler(request: flask.Request) -> flask.Response:
        return adapter(request)

    return handler


class _Response(flask.Response):
    # The app's headers go out as they are: no default content type added, and the length
    # from `response_headers` (a HEAD answer keeps the length of the body it leaves out).
    default_mimetype = None
    automatically_set_content_length = False


class _Runtime:
    """One process's event loop, running in a daemon thread, and the app's lifespan on it."""

    def __init__(self, app: Any, mode: LifespanMode) -> None:
        self.app = app
        self.pid = os.getpid()
        self.lifespan = Lifespan(app, mode)
        self.closed = False
        self._ready = False
        self._attempt: asyncio.Task[bool] | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="asgiscale-loop", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> concurrent.futures.Future[Reply]:
        return asyncio.run_coroutine_threadsafe(self._serve(request), self.loop)

    async def _serve(self, request: Request) -> Reply:
        if not await self._started():
            return _UNAVAILABLE
        state = self.lifespan.state if self.lifespan.supported else None
        return await exchange(self.app, request.scope(state, {}), request.body)

    async def _started(self) -> bool:
        """Whether the lifespan startup is done. The first request runs it; requests arriving
        meanwhile wait for the same attempt; after a failure the next request tries again."""
        if self._ready:
            return True
        if self._attempt is None:
            self._attempt = self.loop.create_task(self._start())
        # Shielded: a request given up on must not cancel the startup others wait for.
        return await asyncio.shield(self._attempt)

    async def _start(self) -> bool:
        try:
            await self.lifespan.startup()
        except LifespanError as exc:
            logger.error("%s; answering 503 until a startup succeeds (the next request tries again).", exc)
            return False
        finally:
            self._attempt = None
        self._ready = True
        return True

    def close(self, timeout: float) -> None:
        if self.closed or self.pid != os.getpid():  # a forked child does not own the loop thread
            return
        self.closed = True
        shutdown = asyncio.run_coroutine_threadsafe(self.lifespan.shutdown(timeout), self.loop)
        try:
            shutdown.result(timeout + 1)
        except Exception:
            logger.exception("The app's lifespan shutdown did not complete.")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout + 1)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=1))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


def _at_exit(callback: Callable[[], None]) -> None:
    """Call `callback` when the interpreter exits (gunicorn ends a worker with `sys.exit` after
    SIGTERM). Registered with threading's exit hooks where there are some: they run before
    the interpreter refuses new work to thread pools, so the app's shutdown can still use
    `asyncio.to_thread` or resolve a host name; plain `atexit` runs after that."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(callback)
            return
        except RuntimeError:  # the interpreter is already shutting down
            pass
    atexit.register(callback)
