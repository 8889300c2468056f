"""Fixtures shared by the tests that run podman."""

from __future__ import annotations

import pytest

from tests.deploy import tools


@pytest.fixture(scope="module")
def engine() -> tools.Podman:
    """podman, ready to build and run containers; the test skips, with the reason, when it cannot."""
    found, reason = tools.podman()
    if found is None:
        pytest.skip(reason)
    return found
