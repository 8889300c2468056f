"""`asgiscale deploy`: the Config rendered for a container, a cluster or a serverless platform,
written to a directory.

Each target is one module that renders plain values (text or objects) with no I/O, with the
options dataclass it takes; this module picks the target by name, turns objects into YAML
and writes the files, refusing to overwrite a file that was edited by hand unless told to.

    >>> options = DeployOptions(image="r.example/shop:1.0")
    >>> files = render("kubernetes", Config(app="main:app"), options)  # doctest: +SKIP
    >>> write(files, Path("deploy"), force=False)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from asgiscale.config import Config
from asgiscale.deploy import cloudrun, docker, kubernetes, sam
from asgiscale.deploy.options import CloudRunOptions, DeployOptions, LambdaOptions

Options: TypeAlias = DeployOptions | LambdaOptions | CloudRunOptions
CHECKED = "# Written by `asgiscale deploy`; `asgiscale check DIR` validates hand edits.\n"


class DeployError(ValueError):
    """A deployment that cannot be written; one line naming the problem and the fix."""


def _python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _docker(config: Config, options: DeployOptions) -> dict[str, str]:
    return docker.render(config, python=_python())


def _kubernetes(config: Config, options: DeployOptions) -> dict[str, str]:
    return {name: dump(objects) for name, objects in kubernetes.render(config, options).items()}


def _lambda(config: Config, options: LambdaOptions) -> dict[str, str]:
    template = sam.render(config, options, python=_python(), code_uri=options.code_uri)
    header = "# Written by `asgiscale deploy lambda`. Deploy: sam build && sam deploy --guided\n"
    return {"template.yaml": dump([template], header=header)}


def _cloudrun(config: Config, options: CloudRunOptions) -> dict[str, str]:
    header = "# Written by `asgiscale deploy cloudrun`. Deploy: gcloud run services replace service.yaml\n"
    return {"service.yaml": dump([cloudrun.render(config, options)], header=header)}


@dataclasses.dataclass(frozen=True)
class Target:
    """A deploy target: the options it takes (None: none) and its renderer (file name -> text)."""

    options: type[Options] | None
    render: Callable[[Config, Any], dict[str, str]]


TARGETS: dict[str, Target] = {
    "cloudrun": Target(CloudRunOptions, _cloudrun),
    "docker": Target(None, _docker),
    "kubernetes": Target(DeployOptions, _kubernetes),
    "lambda": Target(LambdaOptions, _lambda),
}


def render(target: str, config: Config, options: Options) -> dict[str, str]:
    """File name -> text for `target`."""
    wanted = TARGETS[target].options
    if wanted is not None and not isinstance(options, wanted):
        raise TypeError(f"the {target} target takes {wanted.__name__}, not {type(options).__name__}")
    return TARGETS[target].render(config, options)


def dump(objects: list[dict[str, Any]], header: str = CHECKED) -> str:
    """YAML documents in the order their users write them (keys as given, not sorted)."""
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
