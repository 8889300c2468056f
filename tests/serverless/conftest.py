"""Real AWS event files (events/, see SOURCES.md) and an app that echoes its scope."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "events"

# The SAM CLI's CloudFront files are templates; these are its own defaults (SOURCES.md).
_TEMPLATE_DEFAULTS = {"{{{uri}}}": "/test", "{{{method}}}": "GET"}


def load_event(name: str) -> dict[str, Any]:
    text = (EVENTS / name).read_text()
    for placeholder, value in _TEMPLATE_DEFAULTS.items():
        text = text.replace(placeholder, value)
    event: dict[str, Any] = json.loads(text)
    return event


def request_events() -> list[str]:
    """Every event file but the three response documents (`*-response.json`)."""
    return sorted(str(p.relative_to(EVENTS)) for p in EVENTS.glob("*/*.json") if not p.name.endswith("-response.json"))


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with its scope and body as JSON, and the cookies and headers it is asked for."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["startups"] = scope["state"].get("startups", 0) + 1
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    echoed = {
        key: value
        for key, value in scope.items()
        if key not in ("aws.event", "aws.context", "headers", "raw_path", "query_string", "state")
    }
    echoed.update(
        headers=[[name.decode("latin-1"), value.decode("utf-8")] for name, value in scope["headers"]],
        raw_path=scope["raw_path"].decode("ascii"),
        query_string=scope["query_string"].decode("ascii"),
        state=sorted(scope.get("state", {})),
        body=base64.b64encode(body).decode(),
        has_event=isinstance(scope.get("aws.event"), dict),
    )
    headers = [(b"content-type", b"application/json"), (b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(echoed).encode()})


def echoed(response: dict[str, Any]) -> dict[str, Any]:
    """The scope the echo app saw, from the handler's response."""
    body = response["body"]
    encoded = response.get("isBase64Encoded") or response.get("bodyEncoding") == "base64"
    result: dict[str, Any] = json.loads(base64.b64decode(body) if encoded else body)
    return result
