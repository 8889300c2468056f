"""The live suite: figures measured on live processes that hold only on a quiet machine.

Run it with `pytest benchmarks/live` on a machine with nothing else running; the main suite
(`pytest`) checks the same behaviour with bounds that hold on a busy one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import probe_dir  # noqa: F401 - the probe app, as in the main suite
from tests.utils import APPS


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    shutil.copy(APPS / "bench_app.py", tmp_path / "bench_app.py")
    return tmp_path
