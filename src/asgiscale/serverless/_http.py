"""The request and response an event maps to and from, and the pure helpers every source shares.

A platform hands the app's request over as JSON and wants the response back as JSON; in
between, the app speaks ASGI. `Request` is what the event says, ready to become an ASGI scope;
`Reply` is what the app answered, ready to become the JSON a source requires. Nothing here
does I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import http
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

Headers = list[tuple[bytes, bytes]]

ASGI = {"version": "3.0", "spec_version": "2.3"}

# Media types served as text besides text/*; everything else is base64-encoded.
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/ecmascript",
        "application/xml",
        "application/xhtml+xml",
        "application/x-www-form-urlencoded",
        "application/x-ndjson",
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
        "application/ld+json",
        "application/problem+json",
        "image/svg+xml",
    }
)

# Characters that may stand literally in an encoded path: anything else (space, `?`, `#`,
# non-ASCII, a `%` not starting an escape) is escaped, so a path a platform delivers decoded
# (HTTP APIs) becomes a valid request target, and an encoded one (REST, ALB, Function URLs)
# stays byte for byte as sent.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class EventError(ValueError):
    """The event cannot be served; the message names what was received and what to do."""


class UnsupportedEvent(EventError):
    """An event that is not an HTTP request of a source asgiscale serves."""


class MalformedEvent(EventError):
    """An HTTP event with a field missing or of the wrong type or encoding."""


@dataclasses.dataclass(frozen=True)
class Request:
    """One HTTP request as an event describes it. `target` is the path the client sent
    (escaped), `root_path` the part of it the app is mounted under."""

    method: str
    target: str
    root_path: str
    query: str
    headers: Headers
    body: bytes
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str

    def scope(self, state: dict[str, Any] | None, extensions: dict[str, Any]) -> dict[str, Any]:
        """The ASGI HTTP scope; `path` includes `root_path` as the ASGI spec and Starlette expect."""
        scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": self.method,
            "scheme": self.scheme,
            "path": unquote(self.target),
            "raw_path": self.target.encode("ascii"),
            "root_path": self.root_path,
            "query_string": self.query.encode("ascii"),
            "headers": self.headers,
            "client": self.client,
            "server": self.server,
            **extensions,
        }
        if state is not None:
            scope["state"] = dict(state)  # each request gets its own copy, as the spec says
        return scope


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the app answered."""

    status: int
    headers: Headers
    body: bytes

    def header_values(self, exclude: frozenset[str] = frozenset()) -> dict[str, list[str]]:
        """Header name (as the app wrote it) -> its values, in order; names in `exclude`
        (lower-case) left out. Names differing only in case are merged under the first."""
        grouped: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for raw_name, raw_value in self.headers:
            name = raw_name.decode("latin-1")
            key = name.lower()
            if key in exclude:
                continue
            grouped.setdefault(names.setdefault(key, name), []).append(raw_value.decode("latin-1"))
        return grouped

    def encoded_body(self, text_types: frozenset[str]) -> tuple[str, bool]:
        """The body as JSON wants it, and whether it is base64."""
        if not self.body:
            return "", False
        if is_text(self.headers, text_types):
            try:
                return self.body.decode("utf-8"), False
            except UnicodeDecodeError:
                pass  # declared as text but not UTF-8: sent as bytes, never altered
        return base64.b64encode(self.body).decode("ascii"), True


def is_text(headers: Headers, text_types: frozenset[str]) -> bool:
    """Whether a response body is text by its `content-type` and `content-encoding`: a
    compressed body is bytes whatever its type."""
    content_type = ""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            return False
        if lowered == b"content-type":
            content_type = value.decode("latin-1")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not media:
        return True  # no type given: decoded as UTF-8 if it is, else base64
    return (
        media.startswith("text/")
        or media in text_types
        or media.endswith(("+json", "+xml"))
        or "charset=" in params.lower()
    )


def escape_path(path: str) -> str:
    """`path` as a valid request target: escapes kept, unsafe characters escaped."""
    return quote(_BARE_PERCENT.sub("%25", path), safe=_PATH_SAFE + "%")


def escape_query(query: str) -> str:
    """A query string as delivered (raw or decoded) as valid ASCII, escapes kept."""
    return quote(_BARE_PERCENT.sub("%25", query), safe=_PATH_SAFE + "%?")


def mount(path: str, url_prefix: str, base_path: str) -> tuple[str, str]:
    """(root_path, target) for `path` as delivered: `url_prefix` is what the platform took off
    before delivering it (the API stage); `base_path` the prefix the app is served under."""
    route = escape_path(path) or "/"
    url_prefix = escape_path(url_prefix)  # a stage name outside [A-Za-z0-9_-] is the event's, escaped like its path
    if base_path and (route == base_path or route.startswith(base_path + "/")):
        route = route[len(base_path) :]
    root = url_prefix + base_path
    return root, root + route


def decode_body(body: Any, is_base64: Any, source: str) -> bytes:
    if body is None or body == "":
        return b""
    if not isinstance(body, str):
        raise MalformedEvent(f"{source} event: 'body' should be a string, got {type(body).__name__}")
    if is_base64 is True or is_base64 == "true":
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedEvent(f"{source} event: 'body' is flagged base64 but is not valid base64") from None
    return body.encode("utf-8", "surrogateescape")


def split_host(host: str, scheme: str) -> tuple[str, int | None]:
    """`example.com:8443` -> ("example.com", 8443); no port -> the scheme's default."""
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and not name.endswith(":") and (not name.startswith("[") or name.endswith("]")):
        return name, int(port)
    return host, 443 if scheme == "https" else 80


def encode_headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    return [(name.lower().encode("latin-1", "replace"), value.encode("utf-8")) for name, value in pairs]


def shown(text: object, limit: int = 60) -> str:
    """A value taken from an event, fit for a one-line message: escaped, and cut if long."""
    value = str(text)
    if not value.isprintable():
        value = repr(value)[1:-1]
    return value if len(value) <= limit else value[: limit - 1] + "…"


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
