"""`asgiscale deploy TARGET [APP]` and `asgiscale check DIR` on the command line.

$ asgiscale deploy docker                       # Dockerfile + .dockerignore here
$ asgiscale deploy kubernetes --image registry.example/shop:1.4 --namespace shop
$ asgiscale deploy lambda --memory 1024         # template.yaml here, for sam build
$ asgiscale deploy cloudrun --image europe-docker.pkg.dev/p/r/shop:1.4 --max-instances 20
$ asgiscale check deploy/kubernetes

Each target takes the options of its dataclass and no other: a flag meant for another target
is an error rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from asgiscale.config import EXIT_USAGE, Config, ConfigError
from asgiscale.deploy import TARGETS, DeployError, Options, render, write
from asgiscale.deploy.check import CheckError, findings, load
from asgiscale.deploy.docker import REQUIREMENTS
from asgiscale.deploy.options import (
    AUTOSCALERS,
    DEFAULT_KUBERNETES,
    KUBERNETES_VERSIONS,
    CloudRunOptions,
    DeployOptions,
    LambdaOptions,
)
from asgiscale.deploy.sam import HTTP_API_TIMEOUT
from asgiscale.policy import PolicyError
from asgiscale.scaling import measured_resources

DEFAULT_OUT = {"cloudrun": "deploy/cloudrun", "docker": ".", "kubernetes": "deploy/kubernetes", "lambda": "."}
# Targets whose build installs requirements.txt from the project: who installs it, and what runs asgiscale.
NEEDS_REQUIREMENTS = {
    "docker": ("the image installs", "the container"),
    "lambda": ("`sam build` installs", "the function"),
}


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
@click.option("--memory", type=int, help=f"lambda: MB per invocation (default {LambdaOptions.memory}).")
@click.option(
    "--timeout",
    type=int,
    help=f"Seconds a request may take (lambda default {LambdaOptions.timeout}, cloudrun {CloudRunOptions.timeout}).",
)
@click.option("--architecture", metavar="x86_64|arm64", help="lambda: instruction set (default x86_64).")
@click.option("--reserved-concurrency", type=int, help="lambda: environments set aside for the function, at most.")
@click.option("--provisioned-concurrency", type=int, help="lambda: environments kept initialised (alias live).")
@click.option("--min-instances", type=int, help="cloudrun: fewest instances (default 0, scale to zero).")
@click.option("--max-instances", type=int, help="cloudrun: most instances (default 100).")
@click.option(
    "--concurrency", type=int, help="cloudrun: requests per instance (default: max_concurrency x workers, or 80)."
)
@click.option(
    "--workers-per-instance", type=int, help="cloudrun: asgiscale workers per instance (default: one per CPU)."
)
@click.option("--cpu-throttling/--no-cpu-throttling", default=True, help="cloudrun: CPU only during requests.")
@click.option("--startup-cpu-boost/--no-startup-cpu-boost", default=True, help="cloudrun: more CPU while starting.")
@click.option("--health-path", help="cloudrun: the app's health endpoint, for HTTP startup and liveness probes.")
def deploy_command(target: str, app: str | None, out: Path | None, force: bool, **settings: Any) -> None:
    """Write a production Dockerfile (docker), Kubernetes manifests (kubernetes), an AWS SAM
    template (lambda) or a Cloud Run service (cloudrun) for APP, from the same configuration
    `asgiscale run` reads (APP defaults to the config's app)."""
    ctx = click.get_current_context()
    directory = out or Path(DEFAULT_OUT[target])
    try:
        config = Config.from_sources({"app": app}, env=os.environ)
        if not config.app:
            raise ConfigError("no app given: pass APP like 'main:app', or set app in asgiscale.toml")
        given = {
            name: value
            for name, value in settings.items()
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        }
        if target == "kubernetes":  # what `asgiscale bench --write-config` measured, unless flags say otherwise
            given = {**measured_resources(config.scale, given.get("workers", 1)), **given}
        if target == "lambda":
            given["code_uri"] = os.path.relpath(Path(config.app_dir).resolve(), directory.resolve())
        options = _options(ctx, target, given)
        if target in NEEDS_REQUIREMENTS:
            _check_requirements(Path(config.app_dir), *NEEDS_REQUIREMENTS[target])
        files = render(target, config, options)
        written = write(files, directory, force=force)
    except (ConfigError, DeployError, PolicyError, ValueError, OSError) as exc:
        _fail(exc)
    for path in written:
        click.echo(f"wrote {path}")
    for note in _notes(target, options):
        click.echo(f"note: {note}", err=True)


def _options(ctx: click.Context, target: str, given: dict[str, Any]) -> Options:
    """The target's options from the flags given; a flag of another target is an error."""
    kind = TARGETS[target].options
    accepted = {field.name for field in dataclasses.fields(kind)} if kind is not None else set()
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    stray = [flags.get(name, name) for name in given if name not in accepted]
    if stray:
        raise DeployError(f"`asgiscale deploy {target}` takes no {', '.join(stray)} (see --help for each target's)")
    if kind is None:
        return DeployOptions(app_name=target)  # the docker target renders from the Config alone
    return kind(**given)


def _notes(target: str, options: Options) -> list[str]:
    if target == "kubernetes" and isinstance(options, DeployOptions) and not options.image_digest_pinned:
        return ["pin --image by digest (name:tag@sha256:…) so every pod runs the same build"]
    if isinstance(options, LambdaOptions) and options.timeout > HTTP_API_TIMEOUT:
        return [f"the HTTP API waits {HTTP_API_TIMEOUT} s at most for the function, whatever --timeout is"]
    return []


def _check_requirements(project: Path, installer: str, runner: str) -> None:
    requirements = project / REQUIREMENTS
    if not requirements.is_file():
        raise DeployError(
            f"no {REQUIREMENTS} in {project.resolve()}: {installer} the dependencies from it "
            f"(write one, e.g. `pip freeze > {REQUIREMENTS}`, and list asgiscale in it)"
        )
    names = {
        re.split(r"[<>=!~ \[;@]", line.strip(), maxsplit=1)[0].lower() for line in requirements.read_text().splitlines()
    }
    if "asgiscale" not in names and not any("asgiscale" in line for line in requirements.read_text().splitlines()):
        raise DeployError(f"{REQUIREMENTS} does not list asgiscale, which {runner} runs; add it")


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
