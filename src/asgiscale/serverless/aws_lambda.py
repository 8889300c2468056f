"""The app as an AWS Lambda handler: `handler = lambda_handler(app)`.

One event loop and one lifespan per execution environment: startup runs on the first
invocation and its state is shared with every request after it; shutdown runs when Lambda
ends the environment with SIGTERM (which it sends only when an extension is registered).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from asgiscale.serverless._asgi import Lifespan, LifespanMode, checked_options, exchange
from asgiscale.serverless._http import TEXT_TYPES, Reply, UnsupportedEvent
from asgiscale.serverless.lambda_events import Options, detect

logger = logging.getLogger("asgiscale.error")

# A synchronous invocation answers at most 6 MB of JSON; keep room for the headers.
MAX_RESPONSE_BODY = 6 * 1024 * 1024 - 64 * 1024

EventHandler = Callable[[Any, Any], Any]


class LambdaHandler:
    """A Lambda handler `(event, context) -> dict` serving the ASGI `app`.

    >>> handler = lambda_handler(app, base_path="/api")  # doctest: +SKIP
    >>> handler(event, context)["statusCode"]            # doctest: +SKIP
    200

    - `lifespan`: "auto" runs the app's lifespan if it has one, "on" requires it, "off" skips it;
    - `base_path`: the path prefix the API is served under on a custom domain or behind a load
      balancer rule; it becomes the app's `root_path` (on the API's own `execute-api` domain
      the stage is the `root_path` by itself);
    - `text_mime_types`: media types sent as text besides `text/*`, JSON, XML and forms;
      other bodies, and every compressed one, are base64-encoded;
    - `exclude_headers`: response headers never returned, whatever the source;
    - `on_event`: called as `on_event(event, context)` for events that are not HTTP requests,
      which otherwise raise `UnsupportedEvent`;
    - `shutdown_timeout`: seconds the app's lifespan shutdown may take when Lambda ends the
      environment (its shutdown phase lasts 500 ms, 2 s with an external extension: Lambda
      Developer Guide, "Understanding the Lambda execution environment lifecycle").
    """

    def __init__(
        self,
        app: Any,
        *,
        lifespan: LifespanMode = "auto",
        base_path: str = "",
        text_mime_types: Iterable[str] = (),
        exclude_headers: Iterable[str] = (),
        on_event: EventHandler | None = None,
        shutdown_timeout: float = 0.4,
    ) -> None:
        base_path = checked_options(lifespan, base_path)
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event={on_event!r} must be a function (event, context) -> result")
        self.app = app
        self.options = Options(
            base_path=base_path,
            text_types=TEXT_TYPES | {t.strip().lower() for t in text_mime_types},
            exclude_headers=frozenset(h.lower() for h in exclude_headers),
        )
        self.on_event = on_event
        self.shutdown_timeout = shutdown_timeout
        self.lifespan = Lifespan(app, lifespan)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._close_when_idle = False

    def __call__(self, event: Any, context: Any) -> Any:
        try:
            source = detect(event)
        except UnsupportedEvent:
            if self.on_event is None:
                raise
            return self.on_event(event, context)
        request = source.request(event, self.options)
        loop = self._start()
        state = self.lifespan.state if self.lifespan.supported else None
        scope = request.scope(state, {"aws.event": event, "aws.context": context})
        try:
            reply = loop.run_until_complete(exchange(self.app, scope, request.body))
        finally:
            if self._close_when_idle:
                self.close()
        if len(reply.body) > MAX_RESPONSE_BODY:
            logger.error(
                "The response body is %d bytes, over what Lambda returns (6 MB in all); answering 500.",
                len(reply.body),
            )
            reply = Reply(500, [(b"content-type", b"text/plain; charset=utf-8")], b"Response too large for Lambda")
        return source.response(event, reply, self.options)

    def _start(self) -> asyncio.AbstractEventLoop:
        """The environment's loop, with the lifespan started: on the first invocation, or again
        on the next one if startup failed (the error is raised to this invocation)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._handle_shutdown()
        if not self.lifespan.started and self.lifespan.supported:
            self._loop.run_until_complete(self.lifespan.startup())
        return self._loop

    def close(self) -> None:
        """Run the app's lifespan shutdown and close the loop (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if loop.is_running():  # a signal during an invocation: finish it first
            self._loop, self._close_when_idle = loop, True
            return
        try:
            loop.run_until_complete(self.lifespan.shutdown(self.shutdown_timeout))
        finally:
            loop.close()

    def _handle_shutdown(self) -> None:
        atexit.register(self.close)
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)

        def handle_sigterm(signum: int, frame: FrameType | None) -> None:
            self.close()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                raise SystemExit(0)

        signal.signal(signal.SIGTERM, handle_sigterm)


lambda_handler = LambdaHandler
