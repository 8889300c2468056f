"""Property: whatever is wrong with an event, the handler answers or raises an `EventError`
that names the problem; never a KeyError, TypeError or AttributeError from deep inside."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgiscale.serverless import EventError, lambda_handler
from tests.serverless.conftest import echo_app, load_event, request_events

EVENTS = {name: load_event(name) for name in request_events()}
HANDLER = lambda_handler(echo_app, lifespan="off")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def damaged_events(draw: st.DrawFn) -> dict[str, Any]:
    event = copy.deepcopy(EVENTS[draw(st.sampled_from(sorted(EVENTS)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(event)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return event


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_events())
def test_a_damaged_event_is_answered_or_refused_with_a_named_reason(event: dict[str, Any]) -> None:
    try:
        answer = HANDLER(event, None)
    except EventError as exc:
        message = str(exc)
        assert message and "\n" not in message
    else:
        assert isinstance(answer, dict) and ("statusCode" in answer or "status" in answer)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6) | json_values)
def test_any_json_is_answered_or_refused_with_a_named_reason(event: Any) -> None:
    try:
        HANDLER(event, None)
    except EventError as exc:
        assert str(exc) and "\n" not in str(exc)
