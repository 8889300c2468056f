from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import pytest
from click.testing import CliRunner

import asgiscale
from asgiscale.config import Config, ConfigError
from asgiscale.main import cli, run, run_command


def test_cli_run_and_config_keep_the_same_parameters() -> None:
    options = {p.name for p in run_command.params}
    # A negatable setting also has its --no-NAME switch (`--no-admin`).
    negations = {"no_" + f.name for f in dataclasses.fields(Config) if f.metadata["negatable"]}
    assert negations == {"no_admin"}
    # A file-only setting (a table, like `scale`) has no flag.
    file_only = {f.name for f in dataclasses.fields(Config) if f.metadata["file_only"]}
    assert file_only == {"scale"}
    assert options == {f.name for f in dataclasses.fields(Config)} - file_only | negations
    # run() takes the app positionally and every other Config field as a keyword.
    parameters = inspect.signature(run).parameters
    assert list(parameters) == ["app", "options"]
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD


def test_uvicorn_flag_names_are_accepted() -> None:
    flags = {opt for p in run_command.params for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    uvicorn_flags = (
        "--host --port --uds --fd --app-dir --factory --lifespan --log-level --access-log --no-access-log "
        "--proxy-headers --forwarded-allow-ips --root-path --timeout-keep-alive --backlog --limit-max-requests "
        "--env-file --reload --reload-dir --limit-max-requests-jitter --timeout-graceful-shutdown"
    ).split()
    ours = "--workers --max-requests-jitter --graceful-timeout --shutdown-delay --worker-timeout".split()
    assert set(uvicorn_flags + ours) <= flags


def test_version_matches_the_package() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"asgiscale, version {asgiscale.__version__}\n"
    module = subprocess.run([sys.executable, "-m", "asgiscale", "--version"], capture_output=True, text=True)
    assert module.stdout == result.output


def test_bad_flag_value_is_a_usage_error_without_traceback() -> None:
    result = CliRunner().invoke(cli, ["run", "main:app", "--workers", "0"])
    assert result.exit_code == 2
    assert result.output == "asgiscale: error: 'workers' must be at least 1, got 0\n"


def test_missing_app_says_how_to_give_one(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(str(tmp_path))
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 2
    assert "no app given: pass APP like 'main:app'" in result.output


def test_run_refuses_an_app_object() -> None:
    with pytest.raises(ConfigError, match="import string"):
        run(lambda: None)  # type: ignore[arg-type]
