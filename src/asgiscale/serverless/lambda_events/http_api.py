"""API Gateway HTTP APIs (payload 2.0) and Lambda Function URLs, which share its shape:
`rawPath`, `rawQueryString`, `cookies` apart from `headers`, `requestContext.http`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from asgiscale.serverless._http import Reply, Request, decode_body, encode_headers, escape_query, mount
from asgiscale.serverless.lambda_events._common import Options, forwarded, proxy_body, source_ip, with_host
from asgiscale.serverless.lambda_events._fields import field, pairs
from asgiscale.serverless.lambda_events.rest import stage_prefix

NAME = "API Gateway HTTP API or Function URL"


def matches(event: dict[str, Any]) -> bool:
    context = event.get("requestContext")
    return event.get("version") == "2.0" and isinstance(context, dict) and isinstance(context.get("http"), dict)


def request(event: dict[str, Any], options: Options) -> Request:
    context = field(event, "requestContext", dict, NAME)
    headers = encode_headers(pairs(event, "headers", NAME, multi=False))
    cookies = field(event, "cookies", list, NAME, [])
    if cookies:
        # The platform moves Cookie headers into `cookies`; the app reads them as one header.
        headers = [(n, v) for n, v in headers if n != b"cookie"]
        headers.append((b"cookie", "; ".join(str(c) for c in cookies).encode("utf-8")))
    domain = field(event, "requestContext.domainName", str, NAME, "")
    headers = with_host(headers, domain)
    scheme, server = forwarded(headers)
    path = field(event, "rawPath", str, NAME, "") or field(event, "requestContext.http.path", str, NAME)
    # A named stage is the first segment of `rawPath` whatever the domain; it is part of the
    # client's URL only on the API's own domain (a custom domain maps its own base path).
    stage = "/" + str(context.get("stage", ""))
    if stage != "/$default" and (path == stage or path.startswith(stage + "/")):
        path = path[len(stage) :]
    query = field(event, "rawQueryString", str, NAME, "")
    if not query and event.get("queryStringParameters"):
        query = _query_from_params(event)
    root_path, target = mount(path, stage_prefix(context, server[0] if server else domain), options.base_path)
    return Request(
        method=field(event, "requestContext.http.method", str, NAME).upper(),
        target=target,
        root_path=root_path,
        query=escape_query(query),
        headers=headers,
        body=decode_body(event.get("body"), event.get("isBase64Encoded"), NAME),
        client=source_ip(field(event, "requestContext.http.sourceIp", str, NAME, "")),
        server=server,
        scheme=scheme,
    )


def _query_from_params(event: dict[str, Any]) -> str:
    # Only `queryStringParameters` (decoded, repeated names comma-joined) carries the query:
    # a hand-built or test event; kept as given rather than dropped.
    return urlencode(pairs(event, "queryStringParameters", NAME, multi=False), quote_via=quote)


def response(event: dict[str, Any], reply: Reply, options: Options) -> dict[str, Any]:
    grouped = reply.header_values(options.exclude_headers)
    cookies = next((values for name, values in grouped.items() if name.lower() == "set-cookie"), [])
    answer: dict[str, Any] = {
        "statusCode": reply.status,
        "headers": {name: ", ".join(values) for name, values in grouped.items() if name.lower() != "set-cookie"},
        **proxy_body(reply, options),
    }
    if cookies:
        answer["cookies"] = cookies
    return answer
