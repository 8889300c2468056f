from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils import copy_probe


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    """A temporary directory holding a fresh copy of the probe app (tests/apps/probe.py)."""
    copy_probe(tmp_path)
    return tmp_path
