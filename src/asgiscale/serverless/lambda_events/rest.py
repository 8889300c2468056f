"""API Gateway REST APIs and the 1.0 payload of HTTP APIs: `httpMethod`, `path`, and
`multiValueHeaders` beside `headers`."""

from __future__ import annotations

from typing import Any

from asgiscale.serverless._http import Reply, Request, decode_body, encode_headers, escape_query, mount
from asgiscale.serverless.lambda_events._common import (
    Options,
    forwarded,
    proxy_body,
    query_from_params,
    source_ip,
    with_host,
)
from asgiscale.serverless.lambda_events._fields import field, pairs

NAME = "API Gateway REST API"


def matches(event: dict[str, Any]) -> bool:
    context = event.get("requestContext")
    return "httpMethod" in event and isinstance(context, dict) and "elb" not in context


def stage_prefix(context: dict[str, Any], domain: str) -> str:
    """The `/stage` the client's URL holds before the path the event carries: only on the
    API's own `execute-api` domain, where every stage but `$default` is a path segment."""
    stage = context.get("stage")
    if isinstance(stage, str) and stage and stage != "$default" and ".execute-api." in domain:
        return "/" + stage
    return ""


def request(event: dict[str, Any], options: Options) -> Request:
    context = field(event, "requestContext", dict, NAME)
    multi = field(event, "multiValueHeaders", dict, NAME, None) is not None
    headers = encode_headers(pairs(event, "multiValueHeaders" if multi else "headers", NAME, multi=multi))
    domain = field(event, "requestContext.domainName", str, NAME, "")
    headers = with_host(headers, domain)
    scheme, server = forwarded(headers)
    host = server[0] if server else domain
    root_path, target = mount(field(event, "path", str, NAME), stage_prefix(context, host), options.base_path)
    return Request(
        method=field(event, "httpMethod", str, NAME).upper(),
        target=target,
        root_path=root_path,
        query=escape_query(query_from_params(event, NAME, decoded=True)),
        headers=headers,
        body=decode_body(event.get("body"), event.get("isBase64Encoded"), NAME),
        client=source_ip(field(event, "requestContext.identity.sourceIp", str, NAME, "")),
        server=server,
        scheme=scheme,
    )


def response(event: dict[str, Any], reply: Reply, options: Options) -> dict[str, Any]:
    grouped = reply.header_values(options.exclude_headers)
    return {
        "statusCode": reply.status,
        "headers": {name: values[0] for name, values in grouped.items() if len(values) == 1},
        "multiValueHeaders": {name: values for name, values in grouped.items() if len(values) > 1},
        **proxy_body(reply, options),
    }
