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
    # Plain loops: this runs for every header of every invocation.
    found: list[tuple[str, str]] = []
    for name, value in field(event, path, dict, source, {}).items():
        if not multi and type(value) is str:
            found.append((name, value))
            continue
        if multi and type(value) is list:
            for item in value:
                if type(item) is not str:
                    break
                found.append((name, item))
            else:
                continue
        kind = "a list of strings" if multi else "a string"
        raise MalformedEvent(f"{source} event: '{path}.{shown(name)}' should be {kind}, got {type(value).__name__}")
    return found
