from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.utils import copy_probe

# Property tests draw the same examples on every run, so that a run's verdict depends on the code alone, and time
# no example: a busy machine (or coverage's tracing) makes an example slow, not wrong.
# HYPOTHESIS_PROFILE=explore draws new ones each run: a search for new faults, not a gate.
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_configure(config: pytest.Config) -> None:
    # Part of the normal run; `-m chaos` runs them alone, `-m "not chaos"` leaves them out.
    config.addinivalue_line("markers", "chaos: breaks a live `asgiscale run` on purpose (tests/chaos), bounded in time")


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    """A temporary directory holding a fresh copy of the probe app (tests/apps/probe.py)."""
    copy_probe(tmp_path)
    return tmp_path


def require_compiled_meter() -> None:
    """Skip the test where the compiled request meter is not built (no C compiler at install)."""
    from asgiscale.runtime.instrument import compiled_meter

    if compiled_meter() is None:
        pytest.skip("the compiled meter is not built: this install had no C compiler (see hatch_build.py)")


@pytest.fixture(params=["compiled", "python"])
def meter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the test with the compiled request meter, then with the pure-Python one (True: compiled).

    Workers started by the test (in this process or as `asgiscale run`) pick the meter from
    ASGISCALE_NO_EXTENSIONS, which this sets or clears.
    """
    from asgiscale.config import NO_EXTENSIONS

    monkeypatch.delenv(NO_EXTENSIONS, raising=False)
    if request.param == "python":
        monkeypatch.setenv(NO_EXTENSIONS, "1")
    else:
        require_compiled_meter()
    return bool(request.param == "compiled")
