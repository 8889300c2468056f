"""`asgiscale deploy TARGET [APP]` and `asgiscale check DIR` on the command line.

$ asgiscale deploy docker                       # Dockerfile + .dockerignore here
$ asgiscale deploy kubernetes --image registry.example/shop:1.4 --namespace shop
$ asgiscale check deploy/kubernetes
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from asgiscale.config import EXIT_USAGE, Config, ConfigError
from asgiscale.deploy import DeployError, render, write
from asgiscale.deploy.check import CheckError, findings, load
from asgiscale.deploy.docker import REQUIREMENTS
from asgiscale.deploy.options import AUTOSCALERS, DEFAULT_KUBERNETES, KUBERNETES_VERSIONS, DeployOptions
from asgiscale.policy import PolicyError

DEFAULT_OUT = {"docker": ".", "kubernetes": "deploy/kubernetes"}


def _fail(message: object) -> None:
    click.echo(f"asgiscale: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.command("deploy", context_settings={"max_content_width": 120})
@click.argument("target", type=click.Choice(sorted(DEFAULT_OUT)))
@click.argument("app", required=False)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Directory to write to.")
@click.option("--force", is_flag=True, help="Overwrite files that differ from what would be written.")
@click.option("--image", default="", help="Container image, best pinned by digest (name:tag@sha256:…).")
@click.option("--name", "app_name", default="", help="Name of the objects (default: the image's repository name).")
@click.option("--namespace", default="", help="Namespace of the objects.")
@click.option(
    "--kubernetes-version",
    type=click.Choice(KUBERNETES_VERSIONS),
    default=DEFAULT_KUBERNETES,
    show_default=True,
    help="Cluster version the manifests are written for.",
)
@click.option("--autoscaler", type=click.Choice(AUTOSCALERS), default="hpa", show_default=True)
@click.option("--min-replicas", type=click.IntRange(1), help="Fewest pods (default: min_workers, or 2).")
@click.option("--max-replicas", type=click.IntRange(1), help="Most pods (default: max_workers, or 10).")
@click.option("--workers-per-pod", "workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--cpu-request", default="500m", show_default=True)
@click.option("--cpu-limit", default="1", show_default=True)
@click.option("--memory-request", default="256Mi", show_default=True)
@click.option("--memory-limit", default="512Mi", show_default=True)
@click.option("--pre-stop", type=click.IntRange(0), default=5, show_default=True, help="Seconds before SIGTERM.")
@click.option("--service-monitor", is_flag=True, help="Add a Prometheus Operator ServiceMonitor.")
@click.option("--prometheus-url", default=DeployOptions.prometheus_url, help="Prometheus for the KEDA trigger.")
def deploy_command(target: str, app: str | None, out: Path | None, force: bool, **settings: Any) -> None:
    """Write a production Dockerfile (docker) or Kubernetes manifests (kubernetes) for APP,
    from the same configuration `asgiscale run` reads (APP defaults to the config's app)."""
    try:
        config = Config.from_sources({"app": app}, env=os.environ)
        if not config.app:
            raise ConfigError("no app given: pass APP like 'main:app', or set app in asgiscale.toml")
        options = DeployOptions(**settings) if target == "kubernetes" else DeployOptions(app_name="app")
        if target == "docker":
            _check_requirements(Path(config.app_dir))
        files = render(target, config, options)
        written = write(files, out or Path(DEFAULT_OUT[target]), force=force)
    except (ConfigError, DeployError, PolicyError, ValueError, OSError) as exc:
        _fail(exc)
    for path in written:
        click.echo(f"wrote {path}")
    if target == "kubernetes" and not options.image_digest_pinned:
        click.echo("note: pin --image by digest (name:tag@sha256:…) so every pod runs the same build", err=True)


def _check_requirements(project: Path) -> None:
    requirements = project / REQUIREMENTS
    if not requirements.is_file():
        raise DeployError(
            f"no {REQUIREMENTS} in {project.resolve()}: the image installs its dependencies from it "
            f"(write one, e.g. `pip freeze > {REQUIREMENTS}`, and list asgiscale in it)"
        )
    names = {
        re.split(r"[<>=!~ \[;@]", line.strip(), maxsplit=1)[0].lower() for line in requirements.read_text().splitlines()
    }
    if "asgiscale" not in names and not any("asgiscale" in line for line in requirements.read_text().splitlines()):
        raise DeployError(f"{REQUIREMENTS} does not list asgiscale, which the container runs; add it")


@click.command("check", context_settings={"max_content_width": 120})
@click.argument("directory", type=click.Path(path_type=Path))
def check_command(directory: Path) -> None:
    """Check a directory of Kubernetes manifests for mistakes schemas cannot see: selectors that
    match nothing, missing probe ports, a grace period shorter than the drain, fighting autoscalers."""
    try:
        problems = findings(load(directory))
    except CheckError as exc:
        _fail(exc)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{len(problems)} problem(s) found.", err=True)
        sys.exit(1)
    click.echo(f"{directory}: no problems found.")
