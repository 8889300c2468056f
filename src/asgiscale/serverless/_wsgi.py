"""A request as a WSGI server hands it over (the `environ` of the `flask.Request` that
functions-framework passes to a Cloud Function) mapped to the `Request` the app sees, and
the app's `Reply` mapped to the headers a WSGI server may send. Nothing here does I/O.

WSGI strings carry bytes as latin-1; they are turned back into bytes before anything is
escaped, so a non-ASCII byte becomes one `%XX`, never the escape of its UTF-8 mojibake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from asgiscale.serverless._http import _PATH_SAFE, Headers, Reply, Request, escape_query, mount, split_host

# About the connection, which the WSGI server owns: PEP 3333 forbids an application to set
# them, and a buffered body needs no transfer coding.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

_VISIBLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))


def request_from_environ(
    environ: Mapping[str, Any], body: bytes, *, base_path: str = "", trusted_hops: int = 0
) -> Request:
    """The request `environ` describes. `trusted_hops` is how many proxies in front of the
    server append to `X-Forwarded-For` (Google's front end is one): 0 trusts no forwarded
    header and takes the peer address and the server's scheme."""
    headers = environ_headers(environ)
    path = raw_path(environ)
    root_path, target = mount(path, "", base_path)
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    if trusted_hops > 0:
        scheme = _last(headers, b"x-forwarded-proto").lower() or scheme
    scheme = scheme if scheme in ("http", "https") else "http"
    return Request(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        target=target,
        root_path=root_path,
        query=escape_query(_to_ascii(str(environ.get("QUERY_STRING", "")))),
        headers=headers,
        body=body,
        client=client_address(environ, headers, trusted_hops),
        server=_server(environ, headers, scheme),
        scheme=scheme,
    )


def environ_headers(environ: Mapping[str, Any]) -> Headers:
    """The request headers, lower-cased, in the order the server put them in `environ`.
    Repeated fields arrive joined by the server (gunicorn and werkzeug join them with a
    comma, as RFC 9110 section 5.3 allows); they cannot be told apart again."""
    headers: Headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key
        else:
            continue
        headers.append((name.lower().replace("_", "-").encode("latin-1"), _wsgi_bytes(str(value))))
    return headers


def raw_path(environ: Mapping[str, Any]) -> str:
    """The path as the client sent it, escaped where it was not valid ASCII: `RAW_URI`
    (gunicorn, werkzeug) or `REQUEST_URI`; else the decoded `SCRIPT_NAME` + `PATH_INFO`
    escaped again, where an escaped `/` (`%2F`) can no longer be told from a `/`."""
    uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    if uri:
        if not uri.startswith("/") and "://" in uri:  # absolute form, as sent to a proxy
            uri = urlsplit(uri).path or "/"
        path = uri.partition("?")[0].partition("#")[0]
        return _to_ascii(path) or "/"
    decoded = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    return quote(_wsgi_bytes(decoded), safe=_PATH_SAFE) or "/"


def client_address(environ: Mapping[str, Any], headers: Headers, trusted_hops: int) -> tuple[str, int] | None:
    """The client: counted `trusted_hops` entries from the end of `X-Forwarded-For`, the
    entries a client may have written itself being ahead of those; else the peer."""
    if trusted_hops > 0:
        forwarded = [
            address.strip()
            for name, value in headers
            if name == b"x-forwarded-for"
            for address in value.decode("latin-1").split(",")
            if address.strip()
        ]
        if forwarded:
            # Fewer entries than trusted proxies: every one was written by a proxy.
            return forwarded[-min(trusted_hops, len(forwarded))], 0
    address = str(environ.get("REMOTE_ADDR") or "")
    if not address:
        return None
    port = str(environ.get("REMOTE_PORT") or "")
    return address, int(port) if port.isdigit() else 0


def response_headers(reply: Reply, method: str) -> list[tuple[str, str]]:
    """The app's headers as a WSGI server may send them: every value kept (several
    `Set-Cookie`), hop-by-hop fields left out, and `Content-Length` the length of the
    buffered body; the app's own is kept for a HEAD request or a 304, which carry no body."""
    headers = [
        (name, value)
        for name, values in reply.header_values(HOP_BY_HOP | {"content-length"}).items()
        for value in values
    ]
    if reply.status < 200 or reply.status == 204:
        return headers
    if method == "HEAD" or reply.status == 304:
        declared = [value for name, value in reply.headers if name.lower() == b"content-length"]
        if declared:
            headers.append(("Content-Length", declared[-1].decode("latin-1").strip()))
        return headers
    headers.append(("Content-Length", str(len(reply.body))))
    return headers


def _server(environ: Mapping[str, Any], headers: Headers, scheme: str) -> tuple[str, int | None] | None:
    host = _last(headers, b"host")
    if host:
        return split_host(host, scheme)
    name, port = str(environ.get("SERVER_NAME") or ""), str(environ.get("SERVER_PORT") or "")
    if not name:
        return None
    return name, int(port) if port.isdigit() else None


def _last(headers: Headers, name: bytes) -> str:
    """The last comma-separated value of a header: the one the nearest proxy wrote."""
    values = [value for key, value in headers if key == name]
    if not values:
        return ""
    return values[-1].decode("latin-1").rpartition(",")[2].strip()


def _wsgi_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # a server that decoded as UTF-8, against PEP 3333
        return value.encode("utf-8", "surrogateescape")


def _to_ascii(value: str) -> str:
    """A raw WSGI string with its non-ASCII bytes, spaces and controls escaped; everything
    else, escapes included, kept as is (`escape_path`/`escape_query` do the rest)."""
    return quote(_wsgi_bytes(value), safe=_VISIBLE_ASCII)
