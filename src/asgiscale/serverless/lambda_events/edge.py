"""CloudFront Lambda@Edge request triggers (`Records[0].cf.request`): the app's answer
becomes a response CloudFront sends instead of going to the origin."""

from __future__ import annotations

import re
from typing import Any

from asgiscale.serverless._http import (
    MalformedEvent,
    Reply,
    Request,
    UnsupportedEvent,
    decode_body,
    encode_headers,
    escape_query,
    mount,
    reason,
    shown,
    split_host,
)
from asgiscale.serverless.lambda_events._common import Options, source_ip
from asgiscale.serverless.lambda_events._fields import field

NAME = "Lambda@Edge"

# Headers a generated response must not carry, or CloudFront answers 502: the disallowed ones
# and those CloudFront sets itself (CloudFront Developer Guide, "Restrictions on all edge
# functions" and "Restrictions on Lambda@Edge").
_REFUSED = re.compile(
    r"connection|expect|keep-alive|proxy-authenticate|proxy-authorization|proxy-connection|trailer|upgrade"
    r"|x-accel-.*|x-amz-cf-.*|x-amzn-.*|x-cache|x-edge-.*|x-forwarded-proto|x-real-ip"
    r"|content-length|transfer-encoding|via"
)


def matches(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and isinstance(records[0], dict) and "cf" in records[0]


def _cf(event: dict[str, Any]) -> dict[str, Any]:
    cf = field(event["Records"][0], "cf", dict, NAME)
    if not isinstance(cf.get("request"), dict) or "response" in cf:
        kind = shown(field(cf, "config.eventType", str, NAME, "response"))
        raise UnsupportedEvent(
            f"a Lambda@Edge {kind} event: asgiscale answers viewer-request and origin-request triggers; "
            "associate the function with one of those"
        )
    return cf


def request(event: dict[str, Any], options: Options) -> Request:
    request = _cf(event)["request"]
    pairs_: list[tuple[str, str]] = []
    for name, entries in field(request, "headers", dict, NAME, {}).items():
        if not isinstance(entries, list):
            raise MalformedEvent(
                f"{NAME} event: 'request.headers.{shown(name)}' should be a list, got {type(entries).__name__}"
            )
        for entry in entries:
            pairs_.append((str(name), str(entry.get("value", "")) if isinstance(entry, dict) else str(entry)))
    headers = encode_headers(pairs_)
    values = dict(headers)
    proto = values.get(b"cloudfront-forwarded-proto", b"https").decode("latin-1").lower()
    scheme = proto if proto in ("http", "https") else "https"
    host = values.get(b"host", b"").decode("latin-1")
    root_path, target = mount(field(request, "uri", str, NAME), "", options.base_path)
    body = field(request, "body", dict, NAME, {})
    encoding = body.get("encoding", "text")
    return Request(
        method=field(request, "method", str, NAME).upper(),
        target=target,
        root_path=root_path,
        query=escape_query(field(request, "querystring", str, NAME, "")),
        headers=headers,
        body=decode_body(body.get("data"), encoding == "base64", NAME),
        client=source_ip(field(request, "clientIp", str, NAME, "")),
        server=split_host(host, scheme) if host else None,
        scheme=scheme,
    )


def response(event: dict[str, Any], reply: Reply, options: Options) -> dict[str, Any]:
    headers: dict[str, list[dict[str, str]]] = {}
    for name, values in reply.header_values(options.exclude_headers).items():
        if not _REFUSED.fullmatch(name.lower()):
            headers[name.lower()] = [{"key": name, "value": value} for value in values]
    body, is_base64 = reply.encoded_body(options.text_types)
    return {
        "status": str(reply.status),
        "statusDescription": reason(reply.status),
        "headers": headers,
        "body": body,
        "bodyEncoding": "base64" if is_base64 else "text",
    }
