"""One `Config` for every part of asgiscale, and the sources it is read from.

Precedence, lowest first: defaults < `asgiscale.toml` or `[tool.asgiscale]` in
`pyproject.toml` < `ASGISCALE_*` environment variables < command line (or the keyword
arguments of `asgiscale.run`). Every field is declared once here, with its type, default,
bounds and help; the CLI options and `docs/settings.md` are generated from this table.

    >>> config = Config.from_sources({"app": "main:app", "workers": 4}, env={}, cwd=Path("/srv"))
    >>> config.workers
    4
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asgiscale import scaling
from asgiscale.policy import PolicyError, ScalingPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "ASGISCALE_"
PLATFORM_PORT = "PORT"  # the port a hosting platform tells the app to serve on
# Read by the runtime itself, not settings: set to any value, it runs the pure-Python request
# meter instead of the compiled one (asgiscale.runtime.instrument).
NO_EXTENSIONS = "ASGISCALE_NO_EXTENSIONS"
CONFIG_FILE = "asgiscale.toml"
PYPROJECT = "pyproject.toml"

LIFESPAN_MODES = ("auto", "on", "off")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOOPS = ("auto", "asyncio", "uvloop")
HTTP_IMPLS = ("auto", "h11", "httptools")
WS_IMPLS = ("auto", "none", "websockets", "websockets-sansio", "wsproto")
SCALE_POLICIES = ("hpa", "kpa")

DEFAULT_ADMIN = "127.0.0.1:9000"
OFF = "off"

# Exit codes of `asgiscale run`, shared by the CLI and the supervisor.
EXIT_USAGE = 2
EXIT_STARTUP_FAILURE = 3


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line that names it and the fix."""


def _field(
    default: Any,
    help: str,
    *,
    flags: tuple[str, ...] = (),
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    secret: bool = False,
    negatable: bool = False,
    file_only: bool = False,
) -> Any:
    metadata = {
        "negatable": negatable,
        "file_only": file_only,
        "help": help,
        "flags": flags,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "secret": secret,
    }
    if isinstance(default, (list, dict)):  # pragma: no cover - guarded by design
        raise TypeError("use tuples for sequence defaults")
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of `asgiscale run`, validated.

    Build it with `Config.from_sources(...)` to honour files and the environment, or
    directly (`Config(app="main:app", workers=4)`) for tests and embedding.
    """

    app: str | None = _field(None, "The ASGI app as 'module:attribute' (for example 'main:app').")
    host: str = _field("127.0.0.1", "Bind the socket to this host; use 0.0.0.0 to listen on every interface.")
    port: int = _field(8000, "Bind the socket to this port (0 picks a free one).", minimum=0, maximum=65535)
    uds: str | None = _field(None, "Bind to this UNIX domain socket path instead of host and port.")
    fd: int | None = _field(None, "Serve on this inherited, already bound socket file descriptor.", minimum=0)
    app_dir: str = _field(".", "Look for the app in this directory (added to sys.path).")
    factory: bool = _field(False, "Treat APP as a factory: a callable that returns the ASGI app.")
    lifespan: str = _field("auto", "Run the ASGI lifespan protocol in each worker.", choices=LIFESPAN_MODES)
    log_level: str = _field("info", "Log level.", choices=LOG_LEVELS)
    access_log: bool = _field(True, "Log every request (the uvicorn access log).")
    use_colors: bool | None = _field(None, "Colour the log output (default: when the terminal supports it).")
    proxy_headers: bool = _field(
        True, "Trust X-Forwarded-Proto/For from the addresses in --forwarded-allow-ips for scheme and client."
    )
    forwarded_allow_ips: str | None = _field(
        None, "Comma-separated addresses or networks trusted for proxy headers ('*' for all; default 127.0.0.1)."
    )
    root_path: str = _field("", "ASGI root_path: the path prefix the app is mounted under behind a proxy.")
    timeout_keep_alive: float = _field(5, "Close keep-alive connections idle for this many seconds.", minimum=0)
    backlog: int = _field(2048, "Maximum number of connections waiting to be accepted.", minimum=1)
    limit_concurrency: int | None = _field(
        None, "Per worker, answer 503 beyond this many concurrent connections and tasks.", minimum=1
    )
    limit_max_requests: int | None = _field(
        None, "Recycle a worker after it has served this many requests (one worker at a time).", minimum=1
    )
    max_requests_jitter: int = _field(
        0,
        "Add a random 0..N to each worker's --limit-max-requests so workers do not recycle together.",
        flags=("--max-requests-jitter", "--limit-max-requests-jitter"),
        minimum=0,
    )
    env_file: str | None = _field(None, "Load environment variables from this file before importing the app.")
    reload: bool = _field(False, "Roll the workers onto the new code whenever a watched file changes.")
    reload_dirs: tuple[str, ...] = _field(
        (), "Directories to watch with --reload (default: the current one).", flags=("--reload-dir",)
    )
    workers: int = _field(1, "Number of worker processes (a fixed count; see --max-workers).", minimum=1, maximum=512)
    min_workers: int | None = _field(
        None,
        "Self-scaling: the fewest workers (default 1 when --max-workers is set); the count starts here.",
        minimum=1,
        maximum=512,
    )
    max_workers: int | None = _field(
        None,
        "Self-scaling: scale the worker count with load up to this many, with --scale-policy.",
        minimum=1,
        maximum=512,
    )
    scale_policy: str = _field(
        "hpa", "Self-scaling algorithm: the Kubernetes HPA's or Knative's KPA.", choices=SCALE_POLICIES
    )
    scale_targets: tuple[str, ...] = _field(
        (),
        "Self-scaling: what one worker should carry, METRIC=VALUE with cpu (% of one core), concurrency "
        "(requests in flight) or rps (default cpu=70 for hpa, concurrency=100 for kpa).",
        flags=("--scale-target",),
    )
    scale_sync_period: float = _field(
        1.0, "Self-scaling: seconds between two decisions of the policy.", minimum=0.1, maximum=3600
    )
    scale: dict[str, Any] | None = _field(
        None,
        "Self-scaling details, file only: 'behavior' (an autoscaling/v2 HPA behavior, camelCase), "
        "'tolerance', 'kpa', 'capacity' (measured by asgiscale bench; see docs/scaling.md).",
        file_only=True,
    )
    graceful_timeout: float = _field(
        30,
        "Seconds a stopping worker gets to finish in-flight requests before it is killed.",
        flags=("--graceful-timeout", "--timeout-graceful-shutdown"),
        minimum=0,
    )
    shutdown_delay: float = _field(
        0, "Seconds to keep serving after SIGTERM, before the listener closes (lets load balancers notice).", minimum=0
    )
    worker_timeout: float = _field(
        30, "Replace a worker whose event loop has not run for this many seconds (0 disables).", minimum=0
    )
    startup_timeout: float = _field(
        120,
        "Kill a worker not ready, or a process still loading the code, this many seconds after it started "
        "(0 disables).",
        minimum=0,
    )
    admin: str = _field(
        DEFAULT_ADMIN,
        "Serve /healthz, /readyz, /metrics, /status and the dashboard on this HOST:PORT ('off' or --no-admin "
        "to disable; port 0 picks a free one).",
        negatable=True,
    )
    metrics: bool = _field(True, "Count every request per worker (instrumentation inside uvicorn's request cycle).")
    max_concurrency: int | None = _field(
        None,
        "Admission control: per worker, run at most this many requests at once; more wait in a queue, and "
        "beyond it get 503 with Retry-After.",
        minimum=1,
    )
    max_queue: int | None = _field(
        None, "Requests that may wait for admission per worker (default: as many as --max-concurrency).", minimum=0
    )
    queue_timeout: float = _field(
        5, "Seconds a request may wait for admission before it gets 503 with Retry-After.", minimum=0.001
    )
    readiness: str | None = _field(
        None, "An app readiness check 'module:callable' (sync or async, returns a bool), consulted by /readyz."
    )
    loop: str = _field("auto", "Event loop implementation.", choices=LOOPS)
    http: str = _field("auto", "HTTP/1.1 protocol implementation.", choices=HTTP_IMPLS)
    ws: str = _field("auto", "WebSocket protocol implementation.", choices=WS_IMPLS)
    server_header: bool = _field(True, "Send a 'server: uvicorn' header.")
    date_header: bool = _field(True, "Send a 'date' header.")
    ssl_keyfile: str | None = _field(None, "TLS private key file.")
    ssl_certfile: str | None = _field(None, "TLS certificate file.")
    ssl_keyfile_password: str | None = _field(None, "Password of the TLS private key.", secret=True)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_bounds(field, getattr(self, field.name), f"'{field.name}'")
        if self.uds is not None and self.fd is not None:
            raise ConfigError("'uds' and 'fd' are both set; choose one way to listen")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("'ssl_keyfile' is set without 'ssl_certfile'; give both to serve TLS")
        self.admin_address  # noqa: B018 - validates
        self._check_scaling()
        if self.max_queue is not None and self.max_concurrency is None:
            raise ConfigError("'max_queue' is set without 'max_concurrency'; set the concurrency limit it queues for")
        if self.readiness is not None and ":" not in self.readiness:
            raise ConfigError(f"'readiness' must look like 'module:callable', got {self.readiness!r}")

    def _check_scaling(self) -> None:
        try:
            scaling.check_table(self.scale or {})
        except scaling.ScaleError as exc:
            raise ConfigError(str(exc)) from None
        if self.max_workers is None:
            if self.min_workers is not None:
                raise ConfigError("'min_workers' is set without 'max_workers'; give both to scale with load")
            return
        if self.workers != 1:
            raise ConfigError(
                "'workers' and 'max_workers' are both set; with self-scaling the count starts at 'min_workers'"
            )
        if self.min_workers is not None and self.min_workers > self.max_workers:
            raise ConfigError(
                f"'min_workers' ({self.min_workers}) is above 'max_workers' ({self.max_workers}); lower one of them"
            )
        try:
            targets = scaling.parse_targets(self.scale_targets or scaling.DEFAULT_TARGETS[self.scale_policy])
            if self.scale_policy == "kpa" and (len(targets) != 1 or targets[0].metric == "cpu"):
                raise ConfigError("the kpa policy scales on one target, concurrency=N or rps=N (not cpu)")
            self.scaling_policy()
        except scaling.ScaleError as exc:
            raise ConfigError(str(exc)) from None
        except PolicyError as exc:
            raise ConfigError(f"the [scale] policy: {exc}") from None

    @property
    def autoscale(self) -> bool:
        """Whether the worker count follows the load (`max_workers` is set)."""
        return self.max_workers is not None

    @property
    def initial_workers(self) -> int:
        return (self.min_workers or 1) if self.autoscale else self.workers

    @property
    def targets(self) -> tuple[scaling.Target, ...]:
        """The scale targets, parsed, with the policy's default when none is given."""
        return scaling.parse_targets(self.scale_targets or scaling.DEFAULT_TARGETS[self.scale_policy])

    @property
    def hpa_spec(self) -> dict[str, Any]:
        """The scaling policy as the `spec` of an autoscaling/v2 HPA (without scaleTargetRef)."""
        return scaling.hpa_spec(
            min_replicas=self.min_workers or 1,
            max_replicas=self.max_workers or self.workers,
            targets=self.targets,
            table=self.scale or {},
        )

    def scaling_policy(self) -> ScalingPolicy:
        """A new policy object for the runtime (or a simulation) to drive; it keeps its own history."""
        return scaling.build_policy(
            self.scale_policy,
            min_replicas=self.min_workers or 1,
            max_replicas=self.max_workers or self.workers,
            targets=self.targets,
            table=self.scale or {},
            sync_period=self.scale_sync_period,
        )

    @property
    def admin_address(self) -> tuple[str, int] | None:
        """(host, port) of the admin server, or None when it is off."""
        text = self.admin.strip()
        if text.lower() in (OFF, "", "none", "false", "no"):
            return None
        host, _, port = text.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"'admin' must be HOST:PORT (like {DEFAULT_ADMIN}) or 'off', got {self.admin!r}")
        return host, int(port)

    @classmethod
    def from_sources(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        file: Path | None = None,
    ) -> Config:
        """Merge defaults, the config file in `cwd` (or `file`), `PORT` and the `ASGISCALE_*`
        variables of `env`, and `overrides`."""
        cwd = Path.cwd() if cwd is None else cwd
        env = {} if env is None else env
        values: dict[str, Any] = {}
        file_values, where = read_config_file(cwd, file)
        for key, raw in file_values.items():
            name = key.replace("-", "_")
            field = _lookup(name, f"unknown key '{key}' in {where}", lambda n: n)
            values[name] = _coerce(field, raw, f"'{key}' in {where}")
        if env.get(PLATFORM_PORT):
            # Cloud Run, Heroku, Render and others name the port to serve on in $PORT.
            values["port"] = _coerce(_BY_NAME["port"], env[PLATFORM_PORT], PLATFORM_PORT, from_text=True)
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX) or key == NO_EXTENSIONS or _is_service_link(key, raw):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            field = _lookup(name, f"unknown environment variable {key}", lambda n: ENV_PREFIX + n.upper())
            values[name] = _coerce(field, raw, key, from_text=True)
        for name, raw in (overrides or {}).items():
            if raw is None:
                continue
            field = _lookup(name, f"unknown setting '{name}'", lambda n: n)
            values[name] = _coerce(field, raw, f"'{name}'")
        return cls(**values)

    def check_paths(self) -> None:
        """Files and directories the settings name must exist and be of their kind, and the TLS certificate
        and key must load (checked before anything starts)."""
        named = [("app_dir", self.app_dir), ("env_file", self.env_file)]
        named += [("reload_dirs", d) for d in self.reload_dirs]
        named += [("ssl_certfile", self.ssl_certfile), ("ssl_keyfile", self.ssl_keyfile)]
        for name, path in named:
            if path is None:
                continue
            want_dir, fix = _PATH_KINDS[name]
            if not os.path.exists(path):
                raise ConfigError(f"'{name}' names {path!r}, which does not exist (relative to {os.getcwd()})")
            if os.path.isdir(path) != want_dir:
                kind = "directory" if os.path.isdir(path) else "file"
                fix = fix.format(inside=os.path.join(path, ".env"))
                raise ConfigError(f"'{name}' names {path!r}, which is a {kind}; {fix}")
        if self.ssl_certfile is not None:
            from asgiscale._tls import tls_problem  # ssl: only for the configs that serve TLS

            problem = tls_problem(self.ssl_certfile, self.ssl_keyfile, self.ssl_keyfile_password)
            if problem is not None:
                raise ConfigError(problem)

    @property
    def bind_description(self) -> str:
        if self.uds is not None:
            return f"unix:{self.uds}"
        if self.fd is not None:
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_certfile else "http"
        return f"{scheme}://{host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        """The settings as plain values, with secrets masked: safe to log."""
        return {
            f.name: ("***" if f.metadata["secret"] and getattr(self, f.name) else getattr(self, f.name))
            for f in dataclasses.fields(self)
        }


def fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Config)


def field_type(field: dataclasses.Field[Any]) -> tuple[type, bool]:
    """The base type of a field (str, int, float, bool or tuple) and whether None is allowed."""
    hint = _HINTS[field.name]
    if typing.get_origin(hint) is tuple:
        return tuple, False
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    return typing.get_origin(base) or base, optional


def read_config_file(cwd: Path, file: Path | None = None) -> tuple[dict[str, Any], str]:
    """The asgiscale table of `asgiscale.toml`, else of `[tool.asgiscale]` in `pyproject.toml`;
    or of `file` (a whole file of settings, or a pyproject.toml), which must exist."""
    if file is not None:
        if not file.is_file():
            raise ConfigError(f"{file}: no such config file")
        if file.name != PYPROJECT:
            return _read_toml(file), str(file)
        pyproject = file
    elif (cwd / CONFIG_FILE).is_file():
        return _read_toml(cwd / CONFIG_FILE), CONFIG_FILE
    else:
        pyproject = cwd / PYPROJECT
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("asgiscale", {})
        if not isinstance(table, dict):
            raise ConfigError(f"[tool.asgiscale] in {PYPROJECT} must be a table of settings")
        return table, f"{PYPROJECT} [tool.asgiscale]"
    return {}, ""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None


# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT=tcp://… and the like for every
# Service in the namespace; a Service named "asgiscale" must not break the configuration.
_SERVICE_LINK = re.compile(r"^ASGISCALE_(SERVICE_(HOST|PORT)(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_\w+)?)$")


def _is_service_link(key: str, value: str) -> bool:
    return bool(_SERVICE_LINK.match(key)) or (key == "ASGISCALE_PORT" and "://" in value)


# Whether each path setting names a directory (else a file), and what to give when it names the other kind.
_PATH_KINDS = {
    "app_dir": (True, "give the directory the app's module is in (APP names the module)"),
    "reload_dirs": (True, "give the directory to watch for changes"),
    "env_file": (False, "give a file of KEY=VALUE lines (like {inside!r})"),
    "ssl_certfile": (False, "give the certificate file (PEM)"),
    "ssl_keyfile": (False, "give the private key file (PEM)"),
}
_HINTS = typing.get_type_hints(Config)
_BY_NAME = {f.name: f for f in dataclasses.fields(Config)}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _lookup(name: str, problem: str, spell: typing.Callable[[str], str]) -> dataclasses.Field[Any]:
    field = _BY_NAME.get(name)
    if field is not None:
        return field
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.6)
    hint = f"; did you mean {spell(close[0])}?" if close else "; see 'asgiscale run --help' for the valid settings"
    raise ConfigError(problem + hint)


def _coerce(field: dataclasses.Field[Any], raw: Any, where: str, *, from_text: bool = False) -> Any:
    value = _convert(field, raw, where, from_text)
    _check_bounds(field, value, where)
    return value


def _convert(field: dataclasses.Field[Any], raw: Any, where: str, from_text: bool) -> Any:
    base, optional = field_type(field)
    if raw is None and optional:
        return None
    if from_text and field.metadata["file_only"]:
        raise ConfigError(f"{where}: '{field.name}' is a table; set it in {CONFIG_FILE} or [tool.asgiscale]")
    if isinstance(raw, str) and (from_text or base is str):
        return _from_text(field, base, optional, raw, where)
    if base is tuple and isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    if base is dict and isinstance(raw, Mapping):
        return dict(raw)
    if base is bool and isinstance(raw, bool):
        return raw
    if base is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if base is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    shown = "***" if field.metadata["secret"] else repr(raw)
    raise ConfigError(f"{where} must be {_describe_type(field)}, got {shown}")


def _from_text(field: dataclasses.Field[Any], base: type, optional: bool, text: str, where: str) -> Any:
    value = text.strip()
    if optional and value.lower() in {"", "none"} and base is not str:
        return None
    try:
        if base is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError
        if base is int:
            return int(value)
        if base is float:
            return float(value)
    except ValueError:
        raise ConfigError(f"{where} must be {_describe_type(field)}, got {text!r}") from None
    if base is tuple:
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return text


def _describe_type(field: dataclasses.Field[Any]) -> str:
    base, _ = field_type(field)
    choices = field.metadata["choices"]
    if choices:
        return "one of " + ", ".join(choices)
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        tuple: "a list of strings",
        dict: "a table",
    }.get(base, "a string")


def _check_bounds(field: dataclasses.Field[Any], value: Any, where: str) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    meta = field.metadata
    if meta["choices"] and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), meta["choices"], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{where} must be one of {', '.join(meta['choices'])}, got {value!r}{hint}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ConfigError(f"{where} must be at least {meta['minimum']:g}, got {value!r}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise ConfigError(f"{where} must be at most {meta['maximum']:g}, got {value!r}")


def settings_markdown() -> str:
    """The settings reference (`docs/settings.md`), rendered from the fields above."""
    lines = [
        "# Settings",
        "",
        "Generated from `asgiscale.config.Config`; do not edit by hand "
        "(`python -c 'import asgiscale.config as c; print(c.settings_markdown(), end=\"\")' > docs/settings.md`).",
        "",
        "Every setting can be given, lowest precedence first, as a key in `asgiscale.toml` (or `[tool.asgiscale]` in",
        "`pyproject.toml`; dashes or underscores), an `ASGISCALE_*` environment variable, a command-line flag, or a",
        "keyword argument of `asgiscale.run()`. Unknown keys and bad values stop with a one-line error. The `PORT`",
        "variable that Cloud Run, Heroku and other platforms set counts as a port given between the file and",
        "`ASGISCALE_PORT`.",
        "",
        f"`{NO_EXTENSIONS}` is not a setting: set to any value, it makes the workers count requests with the",
        "pure-Python meter instead of the compiled one, and `pip install` skip compiling it (docs/metrics.md).",
        "",
        "| key | flag | environment | type | default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for field in fields():
        flags = field.metadata["flags"] or ("--" + field.name.replace("_", "-"),)
        base, optional = field_type(field)
        if (base is bool or field.metadata["negatable"]) and field.name != "app":
            flags = tuple(f"{flag}/--no-{flag[2:]}" for flag in flags[:1])
        flag = "APP (argument)" if field.name == "app" else ", ".join(f"`{f}`" for f in flags)
        if field.metadata["file_only"]:
            flag = "(file only)"
        kind = _describe_type(field) + (" or none" if optional else "")
        default = "" if field.default in (None, ()) else f"`{field.default!r}`"
        env = "" if field.metadata["file_only"] else f"`{ENV_PREFIX}{field.name.upper()}`"
        lines.append(f"| `{field.name}` | {flag} | {env} | {kind} | {default} | {field.metadata['help']} |")
    return "\n".join(lines) + "\n"
