"""The policies `asgiscale simulate` replays: the config's, or one from a manifest.

A source is a config file (`asgiscale.toml`, a `pyproject.toml`, or any TOML file of asgiscale
settings), a YAML manifest holding a HorizontalPodAutoscaler (autoscaling/v2) or a Knative
Service, or a directory of manifests (what `asgiscale deploy kubernetes` writes). The policy
object is built by `asgiscale.scaling` and `asgiscale.policy`, as the runtime and `deploy` build it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from asgiscale import scaling
from asgiscale.config import Config, ConfigError
from asgiscale.policy import KnativePodAutoscaler, PolicyError
from asgiscale.simulate.model import Platform, SimPolicy

MANIFEST_SUFFIXES = (".yaml", ".yml")
# A Knative revision without max-scale may grow without bound; the simulation stops here.
KNATIVE_UNBOUNDED = 100_000


def from_config(
    config: Config, platform: Platform, name: str = "config", bounds: tuple[int | None, int | None] = (None, None)
) -> SimPolicy:
    """The config's policy (`scale_policy`, `scale_targets`, `[scale]`), decided every sync of `platform`.

    Bounds: the flags, else `min_workers`/`max_workers`, else the replicas a measured peak needs
    (as `asgiscale deploy kubernetes` sets them)."""
    low, high = _bounds(config, bounds)
    targets = config.targets
    kind = config.scale_policy
    table = config.scale or {}

    def make() -> Any:
        return scaling.build_policy(
            kind,
            min_replicas=low,
            max_replicas=high,
            targets=targets,
            table=table,
            sync_period=config.scale_sync_period if platform.local else platform.sync_period,
        )

    make()  # a mistake shows now, as one line
    about = f"{kind}: {', '.join(map(str, targets))}, {low} to {high} replicas"
    # Locally the policy decides every scale_sync_period, as `asgiscale run` does.
    sync = config.scale_sync_period if platform.local else None
    return SimPolicy(name, make, tuple(t.metric for t in targets), low, high, sync, about)


def _bounds(config: Config, flags: tuple[int | None, int | None]) -> tuple[int, int]:
    from asgiscale.deploy.kubernetes import replica_bounds
    from asgiscale.deploy.options import DeployOptions

    low, high = flags
    try:
        return replica_bounds(config, DeployOptions(app_name="simulate", min_replicas=low, max_replicas=high))
    except ValueError as exc:  # bounds the other way round: a user mistake, said in one line
        raise ConfigError(str(exc)) from None


def load(source: str | None, platform: Platform, bounds: tuple[int | None, int | None] = (None, None)) -> SimPolicy:
    """The policy of `source` (None: the config of the current directory); raises ConfigError or PolicyError."""
    if source is None:
        return from_config(Config.from_sources(env=os.environ), platform, bounds=bounds)
    path = Path(source)
    if path.is_dir():
        manifests = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES)
        configs = [p for p in (path / "asgiscale.toml", path / "pyproject.toml") if p.is_file()]
        if manifests:
            return _from_manifests(manifests, source)
        if configs:
            return from_config(Config.from_sources(env=os.environ, cwd=path), platform, source, bounds)
        raise ConfigError(f"{source}: no manifest (*.yaml) and no asgiscale.toml or pyproject.toml in it")
    if not path.is_file():
        raise ConfigError(f"{source}: no such file; give a config file (.toml), a manifest (.yaml) or a directory")
    if path.suffix in MANIFEST_SUFFIXES:
        return _from_manifests([path], source)
    if path.suffix == ".toml":
        return from_config(Config.from_sources(env=os.environ, cwd=path.parent, file=path), platform, source, bounds)
    raise ConfigError(f"{source}: not a .toml config or a .yaml manifest")


def _from_manifests(paths: list[Path], name: str) -> SimPolicy:
    kinds = []
    for path in paths:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            problem = str(exc).splitlines()[0]
            raise ConfigError(f"{path}: not readable YAML ({problem})") from None
        for document in documents:
            if not isinstance(document, Mapping):
                continue
            kind = document.get("kind")
            kinds.append(str(kind))
            if kind == "HorizontalPodAutoscaler":
                spec = document.get("spec")
                if not isinstance(spec, Mapping):
                    raise PolicyError(f"{path}: the HorizontalPodAutoscaler has no spec")
                return SimPolicy.of_hpa(spec, name=name)
            if kind == "Service" and str(document.get("apiVersion", "")).startswith("serving.knative.dev/"):
                return _knative(document, path, name)
    found = ", ".join(sorted(set(kinds))) or "nothing"
    raise PolicyError(
        f"{name}: no HorizontalPodAutoscaler or Knative Service in it (found {found}); for KEDA, simulate the config"
        " with --platform keda"
    )


def _knative(document: Mapping[str, Any], path: Path, name: str) -> SimPolicy:
    template = (document.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    spec = template.get("spec") or {}
    settings = {"container_concurrency": int(spec.get("containerConcurrency") or 0)}
    first = KnativePodAutoscaler.from_annotations(annotations, **settings)
    high = first.max_scale or KNATIVE_UNBOUNDED
    bound = f"{first.min_scale} to {first.max_scale or 'unbounded'} replicas"
    return SimPolicy(
        name,
        lambda: KnativePodAutoscaler.from_annotations(annotations, **settings),
        (first.metric,),
        first.min_scale,
        high,
        about=f"kpa: {first.metric}={first.total_value:g} at {first.target_value / first.total_value:.0%}, {bound}",
    )
