"""`asgiscale bench --write-config`: the recommendation into the project's config file, comments kept.

The file is the one `asgiscale run` reads: `asgiscale.toml`, else `[tool.asgiscale]` in
`pyproject.toml`, else a new `asgiscale.toml`. Two things change: `scale_targets` (what `run`
scales workers on, and `deploy` turns into the HPA's metric) and the `[scale.capacity]` table
(the measurement itself: `deploy` takes its CPU request and peak replicas from it, `simulate` its
service capacity). The new file is checked as a config before it replaces the old one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit

from asgiscale.config import CONFIG_FILE, PYPROJECT, Config, ConfigError
from asgiscale.scaling import CAPACITY_KEYS


def config_path(cwd: Path) -> Path:
    """The file to write: the one `asgiscale run` would read in `cwd`, or a new asgiscale.toml."""
    if (cwd / CONFIG_FILE).is_file():
        return cwd / CONFIG_FILE
    pyproject = cwd / PYPROJECT
    if pyproject.is_file() and "asgiscale" in tomlkit.parse(pyproject.read_text()).get("tool", {}):
        return pyproject
    return cwd / CONFIG_FILE


def write_capacity(cwd: Path, target: str, capacity: dict[str, Any]) -> Path:
    """Store `target` as the scale target and `capacity` as `[scale.capacity]`; the path written.

    Raises `ConfigError` (and leaves the file as it was) when the result is not a valid config,
    for example a CPU target under the kpa policy, which scales on requests only.
    """
    path = config_path(cwd)
    document = tomlkit.parse(path.read_text()) if path.is_file() else tomlkit.document()
    table: Any = document
    if path.name == PYPROJECT:
        table = document["tool"]["asgiscale"]
    if "scale" not in table:
        table["scale"] = tomlkit.table()
    table["scale"]["capacity"] = capacity
    # After the table: a key added last is then placed before the tables (as it must be), even when
    # the file gives `scale` as dotted keys.
    table["scale_targets"] = [target]
    text = tomlkit.dumps(document)
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / path.name).write_text(text)
        try:
            Config.from_sources(env={}, cwd=Path(scratch))
        except ConfigError as exc:
            raise ConfigError(f"{path.name} was left as it was: with the measured settings, {exc}") from None
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def capacity_table(report: Mapping[str, Any]) -> dict[str, Any]:
    """The `[scale.capacity]` table for a bench report with a recommendation."""
    rec = report["recommendation"]
    table: dict[str, Any] = {"objective": ",".join(report["objectives"]), "measured": report["finished"]}
    for key in CAPACITY_KEYS:
        value = rec.get(key)
        if isinstance(value, float):
            value = float(f"{value:.4g}")  # 4 significant digits: a tiny CPU share is not rounded to 0
        if value:  # a measured 0 (an idle worker's CPU, in 10 ms ticks) is no capacity figure
            table[key] = value
    return table
