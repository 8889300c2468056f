"""The Lambda event sources asgiscale serves, one module each, and how an event is matched
to one. Every module has `NAME`, `matches(event)`, `request(event, options) -> Request` and
`response(event, reply, options) -> dict`, all pure."""

from __future__ import annotations

from typing import Any, Protocol

from asgiscale.serverless._http import Reply, Request, UnsupportedEvent, shown
from asgiscale.serverless.lambda_events import alb, edge, http_api, rest
from asgiscale.serverless.lambda_events._common import Options

__all__ = ["SOURCES", "Options", "Source", "detect"]


class Source(Protocol):
    NAME: str

    def matches(self, event: dict[str, Any]) -> bool: ...
    def request(self, event: dict[str, Any], options: Options) -> Request: ...
    def response(self, event: dict[str, Any], reply: Reply, options: Options) -> dict[str, Any]: ...


# Tried in order: the most specific shape first (an ALB event also has `httpMethod`).
SOURCES: dict[str, Source] = {"edge": edge, "alb": alb, "http_api": http_api, "rest": rest}

SUPPORTED = "API Gateway REST and HTTP APIs, Function URLs, Application Load Balancers and Lambda@Edge requests"


def detect(event: object) -> Source:
    """The source that sent `event`; an `UnsupportedEvent` naming what it looks like otherwise."""
    if isinstance(event, dict):
        for source in SOURCES.values():
            if source.matches(event):
                return source
    raise UnsupportedEvent(f"{describe(event)} is not an HTTP request asgiscale can serve (it serves {SUPPORTED})")


def describe(event: object) -> str:
    """A few words on what an unsupported event is, for the error message."""
    if not isinstance(event, dict):
        return f"a {type(event).__name__} event"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        origin = shown(records[0].get("eventSource") or records[0].get("EventSource") or "an unknown source")
        return f"an event from {origin} ({len(records)} record{'s' * (len(records) != 1)})"
    if "detail-type" in event and "source" in event:
        return f"an EventBridge event from {shown(event['source'])} ({shown(event['detail-type'])})"
    context = event.get("requestContext")
    if isinstance(context, dict) and "serviceNetworkArn" in context:
        return "a VPC Lattice event"
    if isinstance(context, dict) and "connectionId" in context:
        return "an API Gateway WebSocket event"
    keys = ", ".join(shown(key, 20) for key in sorted(map(str, event))[:8]) or "no keys"
    return f"an event with keys {keys}"
