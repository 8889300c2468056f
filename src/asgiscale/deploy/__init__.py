"""`asgiscale deploy`: the Config rendered for a container or a cluster, written to a directory.

Each target is one module that renders plain values (text or objects) with no I/O; this
module picks the target by name, turns objects into YAML and writes the files, refusing to
overwrite a file that was edited by hand unless told to.

    >>> options = DeployOptions(image="r.example/shop:1.0")
    >>> files = render("kubernetes", Config(app="main:app"), options)  # doctest: +SKIP
    >>> write(files, Path("deploy"), force=False)  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from asgiscale.config import Config
from asgiscale.deploy import docker, kubernetes
from asgiscale.deploy.options import DeployOptions


class DeployError(ValueError):
    """A deployment that cannot be written; one line naming the problem and the fix."""


def _docker(config: Config, options: DeployOptions) -> dict[str, str]:
    return docker.render(config, python=f"{sys.version_info.major}.{sys.version_info.minor}")


def _kubernetes(config: Config, options: DeployOptions) -> dict[str, str]:
    return {name: dump(objects) for name, objects in kubernetes.render(config, options).items()}


TARGETS: dict[str, Callable[[Config, DeployOptions], dict[str, str]]] = {
    "docker": _docker,
    "kubernetes": _kubernetes,
}


def render(target: str, config: Config, options: DeployOptions) -> dict[str, str]:
    """File name -> text for `target`."""
    return TARGETS[target](config, options)


def dump(objects: list[dict[str, Any]]) -> str:
    """YAML documents in the order Kubernetes users write them (keys as given, not sorted)."""
    header = "# Written by `asgiscale deploy`; `asgiscale check DIR` validates hand edits.\n"
    return header + yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=120)


def write(files: dict[str, str], out: Path, *, force: bool) -> list[Path]:
    """Write `files` into `out`; a file there with other content stops everything unless `force`."""
    changed = [name for name, text in files.items() if (out / name).exists() and (out / name).read_text() != text]
    if changed and not force:
        raise DeployError(
            f"{out} already has {', '.join(sorted(changed))} with other content; "
            "move them away or pass --force to overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        (out / name).write_text(text)
        written.append(out / name)
    return written
