"""What the proxy-style sources (API Gateway, Function URLs, ALB) share."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote, urlencode

from asgiscale.serverless._http import Headers, Reply, split_host
from asgiscale.serverless.lambda_events._fields import field


@dataclasses.dataclass(frozen=True)
class Options:
    """The handler's settings every source reads."""

    base_path: str = ""
    text_types: frozenset[str] = frozenset()
    exclude_headers: frozenset[str] = frozenset()


def forwarded(headers: Headers, default_scheme: str = "https") -> tuple[str, tuple[str, int | None] | None]:
    """(scheme, server) from the `host`, `x-forwarded-proto` and `x-forwarded-port` a proxy set."""
    values = dict(headers)
    proto = values.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
    scheme = proto if proto in ("http", "https") else default_scheme
    host = values.get(b"host", b"").decode("latin-1").strip()
    if not host:
        return scheme, None
    name, port = split_host(host, scheme)
    forwarded_port = values.get(b"x-forwarded-port", b"").strip()
    return scheme, (name, int(forwarded_port) if forwarded_port.isdigit() else port)


def with_host(headers: Headers, domain: str) -> Headers:
    """`headers` with a `host` from the request context when the client sent none."""
    if domain and not any(name == b"host" for name, _ in headers):
        return [*headers, (b"host", domain.encode("latin-1", "replace"))]
    return headers


def query_from_params(event: Any, source: str, *, decoded: bool) -> str:
    """The query string from `multiValueQueryStringParameters` or `queryStringParameters`;
    `decoded`: the platform decoded the values, so they are escaped again."""
    multi = field(event, "multiValueQueryStringParameters", dict, source, None)
    params = multi if multi is not None else field(event, "queryStringParameters", dict, source, {})
    items: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            items.append((str(name), "" if item is None else str(item)))
    if decoded:
        return urlencode(items, quote_via=quote)
    return "&".join(f"{name}={value}" for name, value in items)


def source_ip(value: str) -> tuple[str, int] | None:
    return (value, 0) if value else None


def proxy_body(reply: Reply, options: Options) -> dict[str, Any]:
    body, is_base64 = reply.encoded_body(options.text_types)
    return {"body": body, "isBase64Encoded": is_base64}
