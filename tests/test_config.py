from __future__ import annotations

from pathlib import Path

import pytest

from asgiscale.config import Config, ConfigError


def test_defaults_match_uvicorn_habits() -> None:
    config = Config()
    assert (config.host, config.port, config.workers) == ("127.0.0.1", 8000, 1)
    assert config.graceful_timeout == 30
    assert config.shutdown_delay == 0
    assert config.lifespan == "auto"


def test_precedence_default_file_env_cli(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.asgiscale]\nworkers = 2\nport = 9000\nhost = "0.0.0.0"\n')
    env = {"ASGISCALE_PORT": "9100", "ASGISCALE_HOST": "::1", "PATH": "/bin"}
    config = Config.from_sources({"host": "127.0.0.2"}, env=env, cwd=tmp_path)
    assert config.workers == 2  # file over default
    assert config.port == 9100  # env over file
    assert config.host == "127.0.0.2"  # CLI over env
    assert config.graceful_timeout == 30  # default


def test_dedicated_file_wins_over_pyproject_and_accepts_dashes(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.asgiscale]\nworkers = 2\n")
    (tmp_path / "asgiscale.toml").write_text('app = "main:app"\ngraceful-timeout = 5\n')
    config = Config.from_sources({}, env={}, cwd=tmp_path)
    assert config.app == "main:app"
    assert config.graceful_timeout == 5.0
    assert config.workers == 1


def test_unknown_file_key_names_it_and_suggests(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text("workres = 4\n")
    with pytest.raises(ConfigError) as info:
        Config.from_sources({}, env={}, cwd=tmp_path)
    assert str(info.value) == "unknown key 'workres' in asgiscale.toml; did you mean workers?"


def test_unknown_env_variable_suggests_the_variable() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown environment variable ASGISCALE_GRACEFUL_TIMOUT; "
        r"did you mean ASGISCALE_GRACEFUL_TIMEOUT\?",
    ):
        Config.from_sources({}, env={"ASGISCALE_GRACEFUL_TIMOUT": "3"}, cwd=Path("/nonexistent"))


def test_unknown_keyword_suggests() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'shutdown_dely'; did you mean shutdown_delay\?"):
        Config.from_sources({"shutdown_dely": 3}, env={}, cwd=Path("/nonexistent"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ASGISCALE_WORKERS": "four"}, "ASGISCALE_WORKERS must be a whole number, got 'four'"),
        ({"ASGISCALE_WORKERS": "0"}, "ASGISCALE_WORKERS must be at least 1, got 0"),
        ({"ASGISCALE_PORT": "70000"}, "ASGISCALE_PORT must be at most 65535, got 70000"),
        ({"ASGISCALE_ACCESS_LOG": "maybe"}, "ASGISCALE_ACCESS_LOG must be true or false, got 'maybe'"),
        (
            {"ASGISCALE_LIFESPAN": "atuo"},
            "ASGISCALE_LIFESPAN must be one of auto, on, off, got 'atuo'; did you mean 'auto'?",
        ),
    ],
)
def test_bad_env_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_sources({}, env=env, cwd=Path("/nonexistent"))
    assert str(info.value) == message


def test_bad_file_value_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.asgiscale]\nworkers = "4"\n')
    with pytest.raises(ConfigError) as info:
        Config.from_sources({}, env={}, cwd=tmp_path)
    assert str(info.value) == "'workers' in pyproject.toml [tool.asgiscale] must be a whole number, got '4'"


def test_broken_toml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text("workers = \n")
    with pytest.raises(ConfigError, match=r"^asgiscale.toml is not valid TOML: "):
        Config.from_sources({}, env={}, cwd=tmp_path)


def test_env_booleans_and_lists() -> None:
    env = {"ASGISCALE_ACCESS_LOG": "off", "ASGISCALE_RELOAD_DIRS": "src, lib", "ASGISCALE_LIMIT_MAX_REQUESTS": "none"}
    config = Config.from_sources({}, env=env, cwd=Path("/nonexistent"))
    assert config.access_log is False
    assert config.reload_dirs == ("src", "lib")
    assert config.limit_max_requests is None


def test_conflicting_listeners_rejected() -> None:
    with pytest.raises(ConfigError, match="'uds' and 'fd' are both set"):
        Config(uds="/tmp/x.sock", fd=3)


def test_describe_masks_secrets() -> None:
    described = Config(ssl_certfile="c.pem", ssl_keyfile="k.pem", ssl_keyfile_password="hunter2").describe()
    assert described["ssl_keyfile_password"] == "***"
    assert "hunter2" not in repr(described)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match=f"ASGISCALE_GRACEFUL_TIMEOUT must be a finite number, got {value}"):
        Config.from_sources({}, env={"ASGISCALE_GRACEFUL_TIMEOUT": value}, cwd=Path("/nonexistent"))


def test_kubernetes_service_links_for_a_service_named_asgiscale_are_ignored() -> None:
    env = {
        "ASGISCALE_PORT": "tcp://10.96.0.12:8000",
        "ASGISCALE_SERVICE_HOST": "10.96.0.12",
        "ASGISCALE_SERVICE_PORT": "8000",
        "ASGISCALE_SERVICE_PORT_HTTP": "8000",
        "ASGISCALE_PORT_8000_TCP": "tcp://10.96.0.12:8000",
        "ASGISCALE_PORT_8000_TCP_ADDR": "10.96.0.12",
        "ASGISCALE_WORKERS": "3",
    }
    config = Config.from_sources({}, env=env, cwd=Path("/nonexistent"))
    assert (config.port, config.workers) == (8000, 3)


def test_the_platform_port_ranks_between_the_file_and_asgiscale_port(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text("port = 9000\n")
    assert Config.from_sources({}, env={"PORT": "8080"}, cwd=tmp_path).port == 8080
    assert Config.from_sources({}, env={"PORT": "8080", "ASGISCALE_PORT": "8081"}, cwd=tmp_path).port == 8081
    assert Config.from_sources({"port": 8082}, env={"PORT": "8080"}, cwd=tmp_path).port == 8082
    assert Config.from_sources({}, env={"PORT": ""}, cwd=tmp_path).port == 9000
    with pytest.raises(ConfigError, match=r"^PORT must be a whole number, got 'http'$"):
        Config.from_sources({}, env={"PORT": "http"}, cwd=tmp_path)


def test_secret_never_shown(tmp_path: Path) -> None:
    assert "hunter2" not in repr(Config(ssl_keyfile_password="hunter2"))
    (tmp_path / "asgiscale.toml").write_text("ssl_keyfile_password = 123456\n")
    with pytest.raises(ConfigError) as info:
        Config.from_sources({}, env={}, cwd=tmp_path)
    assert "123456" not in str(info.value)


def test_named_paths_must_exist(tmp_path: Path) -> None:
    Config(app_dir=str(tmp_path)).check_paths()
    with pytest.raises(ConfigError, match=r"^'reload_dirs' names 'nope', which does not exist"):
        Config(reload_dirs=("nope",)).check_paths()
    with pytest.raises(ConfigError, match=r"^'env_file' names '.env.prod', which does not exist"):
        Config(env_file=".env.prod").check_paths()


def test_named_paths_must_be_of_their_kind(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "main.py").write_text("")
    Config(app_dir=str(tmp_path), env_file=str(tmp_path / "main.py"), reload_dirs=(str(tmp_path),)).check_paths()
    conf, main = str(tmp_path / "conf"), str(tmp_path / "main.py")
    with pytest.raises(
        ConfigError, match=r"^'env_file' names '.*conf', which is a directory; give a file of KEY=VALUE"
    ):
        Config(env_file=conf).check_paths()
    with pytest.raises(ConfigError, match=r"^'ssl_certfile' names '.*conf', which is a directory; give the certif"):
        Config(ssl_certfile=conf).check_paths()
    with pytest.raises(ConfigError, match=r"^'ssl_keyfile' names '.*conf', which is a directory; give the private"):
        Config(ssl_certfile=main, ssl_keyfile=conf).check_paths()
    with pytest.raises(ConfigError, match=r"^'app_dir' names '.*main.py', which is a file; give the directory"):
        Config(app_dir=main).check_paths()
    with pytest.raises(ConfigError, match=r"^'reload_dirs' names '.*main.py', which is a file; give the directory"):
        Config(reload_dirs=(main,)).check_paths()


def test_the_scale_section_of_the_file_becomes_an_hpa_spec(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text(
        "min-workers = 2\nmax-workers = 6\nscale-targets = ['concurrency=8', 'cpu=60', 'rps=0.5']\n"
        "[scale.behavior.scaleDown]\nstabilizationWindowSeconds = 30\n"
        "policies = [{ type = 'Pods', value = 1, periodSeconds = 10 }]\n"
    )
    config = Config.from_sources({}, env={}, cwd=tmp_path)
    assert (config.autoscale, config.initial_workers) == (True, 2)
    assert config.hpa_spec == {
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "http_server_active_requests"},
                    "target": {"type": "AverageValue", "averageValue": "8"},
                },
            },
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
            },
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "http_server_requests_per_second"},
                    "target": {"type": "AverageValue", "averageValue": "500m"},
                },
            },
        ],
        "behavior": {
            "scaleDown": {
                "stabilizationWindowSeconds": 30,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 10}],
            }
        },
    }
    assert Config(max_workers=4).hpa_spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"min_workers": 5, "max_workers": 2},
            r"^'min_workers' \(5\) is above 'max_workers' \(2\); lower one of them$",
        ),
        ({"min_workers": 2}, r"^'min_workers' is set without 'max_workers'"),
        ({"workers": 4, "max_workers": 8}, r"^'workers' and 'max_workers' are both set"),
        ({"max_workers": 4, "scale_targets": ["cpus=70"]}, r"known metric; did you mean 'cpu=…'\?$"),
        ({"max_workers": 4, "scale_targets": ["rps=fast"]}, r"needs a number after '=' \(like rps=10\)$"),
        ({"max_workers": 4, "scale_targets": ["rps=-1"]}, r"must be a positive number$"),
        ({"max_workers": 4, "scale_targets": ["cpu=1", "cpu=2"]}, r"'cpu' is given twice"),
        ({"max_workers": 4, "scale_policy": "kpa", "scale_targets": ["cpu=70"]}, r"kpa policy scales on one target"),
        ({"max_workers": 4, "scale": {"behaviour": {}}}, r"unknown key 'behaviour' in the scale table; did you mean"),
        ({"max_workers": 4, "scale": {"behavior": 3}}, r"'scale.behavior' must be a table"),
    ],
)
def test_impossible_scaling_settings_are_one_line_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_sources(settings, env={}, cwd=Path("/nonexistent"))


def test_the_scale_table_cannot_come_from_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"^ASGISCALE_SCALE: 'scale' is a table; set it in asgiscale.toml"):
        Config.from_sources({}, env={"ASGISCALE_SCALE": "{}"}, cwd=Path("/nonexistent"))
