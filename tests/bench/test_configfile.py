"""`--write-config`: the recommendation written into real config files, read back by `Config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomlkit

from asgiscale.bench.configfile import write_capacity
from asgiscale.config import Config, ConfigError

CAPACITY: dict[str, Any] = {
    "objective": "p99=50ms",
    "measured": "2025-01-01T12:00:00+00:00",
    "rps_per_worker": 400.0,
    "concurrency_per_worker": 4.8,
    "cpu_per_worker": 0.93,
    "peak_rps": 5000.0,
    "replicas_at_peak": 16,
}

COMMENTED = """\
# Served by asgiscale.
app = "main:app"  # the ASGI app
max_workers = 8
scale_targets = ["cpu=70"]  # replaced by bench

[scale]
tolerance = 0.2

# Slow to shrink.
[scale.behavior.scaleDown]
stabilizationWindowSeconds = 120
"""

PYPROJECT = """\
[project]
name = "shop"
version = "1.0"

[tool.asgiscale]
app = "shop.main:app"  # kept
max_workers = 4

[tool.ruff]
line-length = 120
"""


def load(cwd: Path) -> Config:
    return Config.from_sources(env={}, cwd=cwd)


def test_no_config_file_gets_a_new_asgiscale_toml(tmp_path: Path) -> None:
    written = write_capacity(tmp_path, "cpu=74", CAPACITY)
    assert written == tmp_path / "asgiscale.toml"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asgiscale.toml"]
    config = load(tmp_path)
    assert config.scale_targets == ("cpu=74",)
    assert config.scale is not None
    assert config.scale["capacity"] == CAPACITY


def test_a_pyproject_without_an_asgiscale_table_is_left_alone(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "shop"\n')
    before = pyproject.read_bytes()
    assert write_capacity(tmp_path, "rps=320", CAPACITY) == tmp_path / "asgiscale.toml"
    assert pyproject.read_bytes() == before
    assert load(tmp_path).scale_targets == ("rps=320",)


def test_an_existing_asgiscale_toml_keeps_its_comments_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "asgiscale.toml"
    path.write_text(COMMENTED)
    assert write_capacity(tmp_path, "rps=320", CAPACITY) == path
    text = path.read_text()
    for comment in ("# Served by asgiscale.", "# the ASGI app", "# Slow to shrink."):
        assert comment in text
    assert "cpu=70" not in text
    assert "[scale.capacity]" in text
    config = load(tmp_path)
    assert (config.app, config.max_workers) == ("main:app", 8)
    assert config.scale_targets == ("rps=320",)
    assert config.scale == {
        "tolerance": 0.2,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}},
        "capacity": CAPACITY,
    }


def test_a_second_measurement_replaces_the_first(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text(COMMENTED)
    write_capacity(tmp_path, "cpu=74", CAPACITY)
    first = (tmp_path / "asgiscale.toml").read_text()
    smaller = {k: v for k, v in CAPACITY.items() if k not in ("peak_rps", "replicas_at_peak")}
    write_capacity(tmp_path, "rps=100", smaller)
    config = load(tmp_path)
    assert config.scale_targets == ("rps=100",)
    assert config.scale is not None
    assert config.scale["capacity"] == smaller
    write_capacity(tmp_path, "cpu=74", CAPACITY)
    assert (tmp_path / "asgiscale.toml").read_text() == first


def test_pyproject_with_a_tool_asgiscale_table_is_written_in_place(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT)
    assert write_capacity(tmp_path, "cpu=74", CAPACITY) == path
    assert not (tmp_path / "asgiscale.toml").exists()
    assert "# kept" in path.read_text()
    document = tomlkit.parse(path.read_text()).unwrap()
    assert document["project"] == {"name": "shop", "version": "1.0"}
    assert document["tool"]["ruff"] == {"line-length": 120}
    config = load(tmp_path)
    assert (config.app, config.max_workers) == ("shop.main:app", 4)
    assert config.scale_targets == ("cpu=74",)
    assert config.scale == {"capacity": CAPACITY}


def test_a_target_the_policy_refuses_leaves_the_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "asgiscale.toml"
    path.write_text('# scale like Knative\nscale_policy = "kpa"\nmax_workers = 4\nscale_targets = ["rps=50"]\n')
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        write_capacity(tmp_path, "cpu=74", CAPACITY)
    assert str(info.value).startswith("asgiscale.toml was left as it was")
    assert "kpa" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asgiscale.toml"]


def test_a_scale_table_given_as_dotted_keys_is_extended(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text("max_workers = 3\nscale.tolerance = 0.2\n")
    write_capacity(tmp_path, "rps=320", CAPACITY)
    config = load(tmp_path)
    assert config.scale_targets == ("rps=320",)
    assert config.scale == {"tolerance": 0.2, "capacity": CAPACITY}


def test_an_unknown_capacity_key_is_refused_with_the_close_one(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text("[scale.capacity]\nrps_per_workr = 400\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert str(info.value) == "unknown key 'rps_per_workr' in scale.capacity; did you mean 'rps_per_worker'?"


@pytest.mark.parametrize("value", ["0", "-1.5", '"400"', "true"])
def test_a_capacity_figure_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    (tmp_path / "asgiscale.toml").write_text(f"[scale.capacity]\nrps_per_worker = {value}\n")
    with pytest.raises(ConfigError, match=r"^'scale.capacity.rps_per_worker' must be a positive number, got "):
        load(tmp_path)
