"""The command line (`asgiscale ...`) and its Python twin, `asgiscale.run`.

The options of `asgiscale run` are generated from the `Config` fields, so the CLI,
`run()` and `Config` cannot drift apart; flag names and meanings follow uvicorn's.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from asgiscale import config as config_module
from asgiscale.config import EXIT_USAGE, Config, ConfigError


def run(app: str | None = None, **options: Any) -> None:
    """Serve `app` ("module:attribute") under the asgiscale supervisor until stopped.

    Keyword options are the `Config` fields (`workers=4`, `port=8080`, ...); they take
    precedence over `ASGISCALE_*` variables and the config file, like command-line flags.
    Raises `ConfigError` for a bad setting and `SystemExit` with a non-zero code when the
    app fails to start.

        >>> import asgiscale
        >>> asgiscale.run("main:app", workers=4)  # doctest: +SKIP
    """
    if app is not None and not isinstance(app, str):
        raise ConfigError(
            "asgiscale.run() takes the app as an import string like 'main:app', so that workers can be "
            "forked from a pre-loaded process and reloaded"
        )
    config = Config.from_sources({"app": app, **options}, env=os.environ)
    code = _serve(config)
    if code:
        sys.exit(code)


def _serve(config: Config) -> int:
    if not config.app:
        raise ConfigError("no app given: pass APP like 'main:app', or set app in asgiscale.toml or [tool.asgiscale]")
    config.check_paths()
    from asgiscale.runtime.supervisor import Supervisor

    return Supervisor(config).run()


def _options() -> list[click.Parameter]:
    params: list[click.Parameter] = [
        click.Argument(["app"], required=False, metavar="APP", envvar=None),
    ]
    for field in config_module.fields():
        if field.name == "app" or field.metadata["file_only"]:
            continue
        base, _ = config_module.field_type(field)
        flags = list(field.metadata["flags"]) or ["--" + field.name.replace("_", "-")]
        help_text = field.metadata["help"]
        if field.default not in (None, ()) and base is not bool:
            help_text += f"  [default: {field.default}]"
        if base is bool:
            negative = "--no-" + flags[0][2:]
            params.append(click.Option([f"{flags[0]}/{negative}", field.name], default=None, help=help_text))
        elif field.metadata["negatable"]:
            params.append(click.Option([*flags, field.name], default=None, help=help_text))
            negative = "--no-" + flags[0][2:]
            params.append(click.Option([negative, "no_" + field.name], is_flag=True, default=False, help="Disable it."))
        elif base is tuple:
            params.append(click.Option([*flags, field.name], multiple=True, help=help_text))
        else:
            choices = field.metadata["choices"]
            kind: Any = click.Choice(choices) if choices else base
            params.append(
                click.Option([*flags, field.name], type=kind, default=None, help=help_text, show_choices=bool(choices))
            )
    return params


def _run_command(**values: Any) -> None:
    for field in config_module.fields():
        if field.metadata["negatable"] and values.pop("no_" + field.name):
            values[field.name] = config_module.OFF
    given = {name: value for name, value in values.items() if value is not None and value != ()}
    try:
        config = Config.from_sources(given, env=os.environ)
        code = _serve(config)
    except (ConfigError, OSError) as exc:
        click.echo(f"asgiscale: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(code)


run_command = click.Command(
    "run",
    callback=_run_command,
    params=_options(),
    help="Serve APP (module:attribute) on several self-healing workers.",
    context_settings={"max_content_width": 120},
)


class _Commands(click.Group):
    """Commands whose modules load only when they run: the supervisor, and every worker forked
    from it, never carry the terminal UI of `top` or the renderers of `deploy`."""

    lazy = {
        "bench": ("asgiscale.bench.cli", "bench_command"),
        "check": ("asgiscale.deploy.cli", "check_command"),
        "deploy": ("asgiscale.deploy.cli", "deploy_command"),
        "simulate": ("asgiscale.simulate.cli", "simulate_command"),
        "top": ("asgiscale.top", "top_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attribute = self.lazy[name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asgiscale", prog_name="asgiscale")
def cli() -> None:
    """Run any ASGI app at scale."""


cli.add_command(run_command)


def main() -> None:
    cli(prog_name="asgiscale")
