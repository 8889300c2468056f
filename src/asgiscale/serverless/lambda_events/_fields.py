"""Typed access to an event's fields: a missing or mistyped one raises a `MalformedEvent`
naming the source and the field, never a bare `KeyError` or `TypeError`."""

from __future__ import annotations

from typing import Any, TypeVar

from asgiscale.serverless._http import MalformedEvent, shown

T = TypeVar("T")
_REQUIRED: Any = object()
_KINDS = {str: "a string", dict: "an object", list: "a list", bool: "a boolean"}


def field(event: Any, path: str, kind: type[T], source: str, default: Any = _REQUIRED) -> T:
    """`event["a"]["b"]` for `path` "a.b"; null counts as absent."""
    value = event
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            if default is _REQUIRED:
                raise MalformedEvent(f"{source} event: '{path}' is missing")
            return default  # type: ignore[no-any-return]
        value = value[key]
    if not isinstance(value, kind):
        raise MalformedEvent(f"{source} event: '{path}' should be {_KINDS[kind]}, got {type(value).__name__}")
    return value


def pairs(event: Any, path: str, source: str, *, multi: bool) -> list[tuple[str, str]]:
    """The (name, value) pairs of a map of strings (`multi`: a map of lists of strings), in order."""
    found: list[tuple[str, str]] = []
    for name, value in field(event, path, dict, source, {}).items():
        values = value if multi else [value]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            kind = "a list of strings" if multi else "a string"
            got = type(value).__name__
            raise MalformedEvent(f"{source} event: '{path}.{shown(name)}' should be {kind}, got {got}")
        found.extend((name, v) for v in values)
    return found
