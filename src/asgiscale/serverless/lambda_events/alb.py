"""Application Load Balancer targets (`requestContext.elb`), with multi-value headers on or
off for the target group; the answer uses the same mode, as the load balancer requires."""

from __future__ import annotations

import itertools
from typing import Any

from asgiscale.serverless._http import Reply, Request, decode_body, encode_headers, escape_query, mount, reason
from asgiscale.serverless.lambda_events._common import Options, forwarded, proxy_body, query_from_params, source_ip
from asgiscale.serverless.lambda_events._fields import field, pairs

NAME = "Application Load Balancer"


def matches(event: dict[str, Any]) -> bool:
    context = event.get("requestContext")
    return isinstance(context, dict) and "elb" in context


def _multi(event: dict[str, Any]) -> bool:
    return field(event, "multiValueHeaders", dict, NAME, None) is not None


def request(event: dict[str, Any], options: Options) -> Request:
    multi = _multi(event)
    headers = encode_headers(pairs(event, "multiValueHeaders" if multi else "headers", NAME, multi=multi))
    scheme, server = forwarded(headers, default_scheme="http")
    root_path, target = mount(field(event, "path", str, NAME), "", options.base_path)
    return Request(
        method=field(event, "httpMethod", str, NAME).upper(),
        target=target,
        root_path=root_path,
        # The load balancer passes the query as the client sent it, still escaped.
        query=escape_query(query_from_params(event, NAME, decoded=False)),
        headers=headers,
        body=decode_body(event.get("body"), event.get("isBase64Encoded"), NAME),
        client=source_ip(_appended_address(headers)),
        server=server,
        scheme=scheme,
    )


def _appended_address(headers: list[tuple[bytes, bytes]]) -> str:
    """The address the load balancer appended to `X-Forwarded-For`: the last one. Earlier
    entries came from the client and may be forged."""
    chain = b",".join(value for name, value in headers if name == b"x-forwarded-for")
    return chain.rsplit(b",", 1)[-1].strip().decode("latin-1")


def response(event: dict[str, Any], reply: Reply, options: Options) -> dict[str, Any]:
    grouped = reply.header_values(options.exclude_headers)
    answer: dict[str, Any] = {
        "statusCode": reply.status,
        "statusDescription": f"{reply.status} {reason(reply.status)}".rstrip(),
    }
    if _multi(event):
        answer["multiValueHeaders"] = grouped
    else:
        answer["headers"] = _single_values(grouped)
    answer.update(proxy_body(reply, options))
    return answer


def _single_values(grouped: dict[str, list[str]]) -> dict[str, str]:
    """One value per name: repeated headers comma-joined, except `Set-Cookie`, which cannot be
    joined; each cookie goes under its own spelling of the name (names are case-insensitive)."""
    single: dict[str, str] = {}
    for name, values in grouped.items():
        if name.lower() == "set-cookie" and len(values) > 1:
            for spelling, value in zip(_spellings(name), values, strict=False):
                single[spelling] = value
        else:
            single[name] = ", ".join(values)
    return single


def _spellings(name: str) -> list[str]:
    """Every upper/lower-case spelling of `name`, the given one first."""
    cases = (sorted({c.lower(), c.upper()}) for c in name)
    return [name, *(v for v in ("".join(chars) for chars in itertools.product(*cases)) if v != name)]
