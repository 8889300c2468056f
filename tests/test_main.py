from __future__ import annotations

import dataclasses
import inspect
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import asgiscale
from asgiscale.config import Config, ConfigError
from asgiscale.main import cli, run, run_command
from tests.utils import AsgiscaleProcess, copy_probe


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


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates and keys made by the openssl tool: cert.pem/key.pem for 127.0.0.1, another key, the key
    encrypted with the password 'secret', both in one file, a file that is not PEM, a directory, and the probe app."""
    where = tmp_path_factory.mktemp("tls")
    for name in ("", "other-"):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", f"{name}key.pem", "-out", f"{name}cert.pem", cwd=where,
        )  # fmt: skip
    _openssl("pkey", "-in", "key.pem", "-aes256", "-passout", "pass:secret", "-out", "encrypted-key.pem", cwd=where)
    (where / "both.pem").write_text((where / "key.pem").read_text() + (where / "cert.pem").read_text())
    (where / "notes.txt").write_text("not a certificate\n")
    (where / "conf").mkdir()
    copy_probe(where)
    return where


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--ssl-certfile", "notes.txt"], "'ssl_certfile' names 'notes.txt', which holds no PEM certificate"),
        (["--ssl-certfile", "key.pem"], "'ssl_certfile' names 'key.pem', which holds no PEM certificate"),
        (
            ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "other-key.pem"],
            "'ssl_keyfile' names 'other-key.pem', which does not match the certificate in 'cert.pem'",
        ),
        (["--ssl-certfile", "cert.pem"], "'ssl_certfile' names 'cert.pem', which holds a certificate but no private"),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "notes.txt"], "'notes.txt', which holds no PEM private key"),
        (
            ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "encrypted-key.pem"],
            "'encrypted-key.pem', which is an encrypted private key; give its password in 'ssl_keyfile_password'",
        ),
        (
            ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "encrypted-key.pem", "--ssl-keyfile-password", "guess"],
            "'encrypted-key.pem', which is an encrypted private key that 'ssl_keyfile_password' does not open",
        ),
        (["--ssl-certfile", "conf"], "'ssl_certfile' names 'conf', which is a directory; give the certificate file"),
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "conf/"], "'ssl_keyfile' names 'conf/', which is a directory"),
        (["--env-file", "conf/"], "'env_file' names 'conf/', which is a directory; give a file of KEY=VALUE lines"),
        (["--app-dir", "probe.py"], "'app_dir' names 'probe.py', which is a file; give the directory"),
        (
            ["--reload", "--reload-dir", "probe.py"],
            "'reload_dirs' names 'probe.py', which is a file; give the directory",
        ),
    ],
)
def test_a_bad_file_stops_run_with_one_line_before_anything_starts(tls_dir: Path, args: list[str], error: str) -> None:
    command = [sys.executable, "-m", "asgiscale", "run", "probe:app", "--port", "0", "--no-admin", *args]
    done = subprocess.run(command, cwd=tls_dir, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith("asgiscale: error: ") and error in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem"],
        ["--ssl-certfile", "both.pem"],
        ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "encrypted-key.pem", "--ssl-keyfile-password", "secret"],
    ],
)
def test_certificates_that_load_are_served(tls_dir: Path, tmp_path: Path, args: list[str]) -> None:
    with AsgiscaleProcess(["probe:app", *args], tls_dir, log_dir=tmp_path) as server:
        server.wait_workers(1)
        trusted = ssl.create_default_context(cafile=str(tls_dir / "cert.pem"))
        assert httpx.get(server.url.replace("http://", "https://"), verify=trusted, timeout=10).status_code == 200
