"""Running the app for a platform that hands over one request at a time: its lifespan, kept
for the life of the execution environment, and one buffered HTTP exchange."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from asgiscale.serverless._http import ASGI, Reply

logger = logging.getLogger("asgiscale.error")

LifespanMode = Literal["auto", "on", "off"]
LIFESPAN_MODES = ("auto", "on", "off")

_INTERNAL_ERROR = Reply(500, [(b"content-type", b"text/plain; charset=utf-8")], b"Internal Server Error")


def checked_options(lifespan: str, base_path: str) -> str:
    """The options every adapter takes, checked: `base_path` returned without a trailing `/`,
    a one-line `ValueError` for a bad value."""
    if lifespan not in LIFESPAN_MODES:
        raise ValueError(f"lifespan={lifespan!r} is not a lifespan mode; use 'auto', 'on' or 'off'")
    if base_path and not base_path.startswith("/"):
        raise ValueError(f"base_path={base_path!r} must start with '/', e.g. '/{base_path.strip('/')}'")
    return base_path.rstrip("/")


class LifespanError(RuntimeError):
    """The app's lifespan startup failed; the message says how."""


class Lifespan:
    """The app's lifespan, run as a task on the caller's loop for as long as the environment
    lives: `startup` once, `shutdown` when the platform says the environment ends.

    >>> lifespan = Lifespan(app, "auto")  # doctest: +SKIP
    >>> await lifespan.startup()           # doctest: +SKIP
    >>> scope["state"] = dict(lifespan.state)  # doctest: +SKIP
    """

    def __init__(self, app: Any, mode: LifespanMode) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self.started = False
        self._inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._outcome: asyncio.Future[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Run the app's startup; raises `LifespanError` if it fails (or, with mode "on", if
        the app has no lifespan)."""
        if self.mode == "off" or self.started:
            return
        loop = asyncio.get_running_loop()
        self._inbox, self._outcome = asyncio.Queue(), loop.create_future()
        self._task = loop.create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outcome
        if message["type"] == "lifespan.startup.complete":
            self.started = True
            return
        if message["type"] == "lifespan.startup.failed":
            raise LifespanError(f"the app's lifespan startup failed: {message.get('message') or 'no reason given'}")
        # The app does not speak lifespan (it raised or returned at once).
        self.supported = False
        if self.mode == "on":
            raise LifespanError(
                f"the app does not support the lifespan protocol ({message['reason']}); use lifespan='auto'"
            )
        logger.debug("The app does not support lifespan (%s); going on without it.", message["reason"])

    async def shutdown(self, timeout: float) -> None:
        """Run the app's shutdown, waiting at most `timeout` seconds."""
        if not self.started or self._inbox is None or self._task is None:
            return
        self.started = False
        loop = asyncio.get_running_loop()
        self._outcome = loop.create_future()
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            message = await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except asyncio.TimeoutError:
            logger.warning("The app's lifespan shutdown did not finish within %.1f s.", timeout)
            self._task.cancel()
            return
        if message["type"] == "lifespan.shutdown.failed":
            logger.error("The app's lifespan shutdown failed: %s", message.get("message") or "no reason given")

    async def _main(self) -> None:
        assert self._inbox is not None
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._send)
        except BaseException as exc:  # noqa: BLE001 - reported through the outcome, as servers do
            if not self.started:
                self._settle({"type": "unsupported", "reason": f"{type(exc).__name__}: {exc}"})
            else:
                logger.exception("The app's lifespan raised after startup.")
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            self._settle({"type": "unsupported", "reason": "its lifespan returned without answering"})

    async def _send(self, message: dict[str, Any]) -> None:
        self._settle(message)

    def _settle(self, message: dict[str, Any]) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(message)


async def exchange(app: Any, scope: dict[str, Any], body: bytes) -> Reply:
    """Run one request through the app and return its whole response. An app that fails, or
    returns without answering, gets a 500 and its error logged: the platform never sees a crash."""
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    answered = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()  # nothing more will come: the client is gone once answered
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        kind = message["type"]
        if kind == "http.response.start":
            if status is not None:
                raise RuntimeError("http.response.start sent twice")
            status, headers = int(message["status"]), list(message.get("headers", []))
        elif kind == "http.response.body":
            if status is None:
                raise RuntimeError("http.response.body sent before http.response.start")
            if answered.is_set():
                return
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                answered.set()

    try:
        await app(scope, receive, send)
    except Exception:
        logger.exception("Exception in ASGI application")
        if not answered.is_set():
            return _INTERNAL_ERROR  # what was sent so far is dropped: the client gets a clean 500
    if status is None or not answered.is_set():
        logger.error("The ASGI application returned without completing a response.")
        return _INTERNAL_ERROR
    return Reply(status, headers, b"".join(chunks))
