"""Serverless adapter cost: asgiscale's AWS Lambda handler against Mangum 0.22, per invocation and at import.

    python benchmarks/serverless.py [--rounds 40] [--calls 200] [--import-rounds 20] [--quick] [--no-docs]

Per invocation: the same app and the same real AWS events (tests/serverless/events, path and
method set to the app's route) go through `lambda_handler(app)`, `Mangum(app)` (its default
lifespan="auto", which runs the app's lifespan startup and shutdown on every invocation) and
`Mangum(app, lifespan="off")`. Two apps, each with a lifespan: a raw ASGI app answering a small
JSON body (the adapter's own cost dominates) and the repo's FastAPI example.

Import: `from asgiscale.serverless import lambda_handler` against `from mangum import Mangum`
(and `import asgiscale` alone) in fresh interpreters with `-X importtime`, bytecode cached for
everything, and again with the package's own modules compiled from source.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _report import _code_version, _cpu_model, fmt, median, paired_ratios, publish, rotated, spread, table
from _servers import REPO_DIR

EVENTS_DIR = REPO_DIR / "tests" / "serverless" / "events"
TARGET = 0.8  # issue 6: asgiscale at most 0.8x Mangum's time per invocation
JSON_BODY = b'{"message":"Hello, World"}'
BLOB = bytes(range(256)) * 16  # 4 KiB, not UTF-8: every adapter must send it base64-encoded

SUBJECT = "asgiscale"
MANGUM = "Mangum"
MANGUM_OFF = "Mangum lifespan=off"
Handler = Callable[[Any, Any], Any]


def _variants() -> dict[str, Callable[[Any], Handler]]:
    from mangum import Mangum

    from asgiscale.serverless import lambda_handler

    return {
        SUBJECT: lambda app: lambda_handler(app),
        MANGUM: lambda app: Mangum(app),  # lifespan="auto", Mangum's default
        MANGUM_OFF: lambda app: Mangum(app, lifespan="off"),
    }


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    path: str = "/"


CASES = (
    Case("REST API (v1)", "aws-lambda-go/apigw-request.json"),
    Case("HTTP API (v2)", "powertools-lambda-python/apiGatewayProxyV2Event.json"),
    Case("ALB", "powertools-lambda-python/albEvent.json"),
    Case("Function URL", "powertools-lambda-python/lambdaFunctionUrlEvent.json"),
    Case("Lambda@Edge", "aws-sam-cli/CloudFrontModifyQueryString.json"),
    Case("HTTP API (v2), 4 KiB binary", "powertools-lambda-python/apiGatewayProxyV2Event.json", "/binary"),
)


def load_event(file: str, path: str | None = None, method: str = "GET") -> dict[str, Any]:
    """An event file; `path` given: retargeted to that path and `method`, everything else as recorded.

    The SAM CloudFront files are templates; without `path` they get SAM's defaults (/test, GET).
    """
    text = (EVENTS_DIR / file).read_text()
    text = text.replace("{{{uri}}}", path or "/test").replace("{{{method}}}", method if path else "GET")
    event: dict[str, Any] = json.loads(text)
    if path is None:
        return event
    context = event.get("requestContext") or {}
    if "Records" in event:
        event["Records"][0]["cf"]["request"].update(uri=path, method=method)
    elif isinstance(context.get("http"), dict):  # HTTP API and Function URL (payload 2.0)
        event["rawPath"] = path
        context["http"].update(path=path, method=method)
    else:  # REST API and ALB
        event.update(path=path, httpMethod=method)
    return event


@dataclass(frozen=True)
class Context:
    """What the Lambda runtime passes as `context` (the attributes of its LambdaContext)."""

    function_name: str = "bench"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/bench"
    log_stream_name: str = "2026/11/24/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class LifespanLog:
    startups: int = 0
    shutdowns: int = 0


def raw_app(log: LifespanLog) -> Any:
    """A bare ASGI app with a lifespan: a small JSON body at any path, 4 KiB of bytes at /binary."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    log.startups += 1
                    scope.get("state", {})["greeting"] = "Hello"
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    log.shutdowns += 1
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()
        binary = scope["path"].endswith("/binary")
        body, media = (BLOB, b"image/png") if binary else (JSON_BODY, b"application/json")
        headers = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def fastapi_app(log: LifespanLog) -> Any:
    """examples/hello.py (a fresh copy), given a lifespan and a /binary route answering 4 KiB of bytes."""
    from fastapi import Response

    spec = importlib.util.spec_from_file_location("_serverless_bench_hello", REPO_DIR / "examples" / "hello.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        log.startups += 1
        yield {"greeting": "Hello"}
        log.shutdowns += 1

    app = module.app
    app.router.lifespan_context = lifespan

    @app.get("/binary")
    async def binary() -> Response:
        return Response(BLOB, media_type="image/png")

    return app


APPS: dict[str, Callable[[LifespanLog], Any]] = {"raw": raw_app, "fastapi": fastapi_app}


def decoded(answer: Any) -> tuple[int, bytes]:
    """(status, body bytes) of a handler's answer, whatever the source's response shape."""
    status = int(answer.get("statusCode", answer.get("status", 0)))
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded") is True or answer.get("bodyEncoding") == "base64":
        return status, base64.b64decode(body)
    return status, body.encode()


def _failure(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 70 else text[:69] + "…"


def _time_calls(handler: Handler, event: dict[str, Any], calls: int, fresh_copy: bool) -> float:
    """The median of `calls` invocations, in µs. Only the handler call is timed."""
    context = Context()
    times = []
    for _ in range(calls):
        given = copy.deepcopy(event) if fresh_copy else event
        start = time.perf_counter_ns()
        handler(given, context)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


@dataclass
class InvocationResult:
    rounds: int
    calls: int
    # (app, case) -> variant -> the round's median µs per invocation (None: the variant failed the case)
    samples: dict[tuple[str, str], dict[str, list[float | None]]] = field(default_factory=dict)
    failed: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    mutates: set[str] = field(default_factory=set)
    lifespans: dict[tuple[str, str], LifespanLog] = field(default_factory=dict)
    invocations: dict[tuple[str, str], int] = field(default_factory=dict)

    def ratios(self, key: tuple[str, str], baseline: str) -> list[float]:
        return paired_ratios(self.samples[key], SUBJECT, baseline)

    def markdown(self) -> str:
        title = (
            f"### Per invocation, asgiscale `lambda_handler` vs Mangum {metadata.version('mangum')}"
            f" ({self.rounds} rounds x {self.calls} calls per adapter and event, interleaved)"
        )
        headers = ["app", "event", "asgiscale µs", "Mangum µs", "Mangum lifespan=off µs", "asgiscale / Mangum",
                   "asgiscale / Mangum lifespan=off", f"≤ {TARGET}x Mangum"]  # fmt: skip
        rows = []
        for (app, case), samples in self.samples.items():
            failed = self.failed.get((app, case), {})
            cells = [app, case]
            for variant in (SUBJECT, MANGUM, MANGUM_OFF):
                values = [v for v in samples.get(variant, []) if v is not None]
                cells.append(failed[variant] if variant in failed else fmt(median(values), ".1f"))
            for baseline in (MANGUM, MANGUM_OFF):
                ratios = self.ratios((app, case), baseline)
                value = median(ratios)
                cells.append(fmt(value, ".2f", "x") + (f" ({spread(ratios)})" if value is not None else ""))
            value = median(self.ratios((app, case), MANGUM))
            cells.append("n/a" if value is None else "met" if value <= TARGET else "**not met**")
            rows.append(cells)
        apps = sorted({app for app, _ in self.lifespans})
        lifespan = "; ".join(
            f"{variant} {' / '.join(str(self.lifespans[(a, variant)].startups) for a in apps)} startups in"
            f" {' / '.join(str(self.invocations[(a, variant)]) for a in apps)} invocations"
            for variant in (SUBJECT, MANGUM, MANGUM_OFF)
        )
        copied = (
            f"{', '.join(sorted(self.mutates))} modified the event, so every call got a fresh deep copy (made untimed)"
            if self.mutates
            else "Neither adapter modified an event (checked), so each call gets the same event object"
        )
        note = (
            "\n\nµs: median over rounds of each round's median time of `handler(event, context)`"
            " (`time.perf_counter_ns`, one process, warm, garbage collector on). Ratios: median of the per-round"
            f" ratios, IQR in brackets. Lifespan startups the apps saw ({' / '.join(apps)}): {lifespan}. {copied}."
        )
        return title + "\n\n" + table(headers, rows) + note


def run_invocations(rounds: int, calls: int, warmup: int = 200) -> InvocationResult:
    # One process, adapters alternating in blocks of `calls` invocations: a handler is a plain
    # function call, so separate processes would only add their own differences (memory layout,
    # hash seeds, CPU frequency at their start) while sharing the drift of a noisy machine anyway;
    # in one process, a slow spell hits the three adapters of a round alike and the per-round
    # ratio cancels it. Each adapter gets its own app instance, so Mangum's lifespan restarts
    # never touch the app asgiscale keeps started.
    result = InvocationResult(rounds, calls)
    variants = _variants()
    handlers: dict[tuple[str, str], Handler] = {}
    for app_name, factory in APPS.items():
        for variant, make in variants.items():
            log = LifespanLog()
            handlers[(app_name, variant)] = make(factory(log))
            result.lifespans[(app_name, variant)] = log
            result.invocations[(app_name, variant)] = 0

    events = {case.name: load_event(case.file, case.path) for case in CASES}
    active: dict[tuple[str, str], list[str]] = {}
    for app_name in APPS:
        for case in CASES:
            key = (app_name, case.name)
            result.samples[key] = {}
            active[key] = []
            expected = (200, BLOB if case.path == "/binary" else JSON_BODY)
            for variant in variants:
                event = events[case.name]
                before = copy.deepcopy(event)
                try:
                    answer = decoded(handlers[(app_name, variant)](event, Context()))
                except Exception as exc:  # noqa: BLE001 - an adapter that cannot serve an event is a finding
                    result.failed.setdefault(key, {})[variant] = _failure(exc)
                    continue
                finally:
                    result.invocations[(app_name, variant)] += 1
                if event != before:
                    result.mutates.add(variant)
                    events[case.name] = before
                if answer != expected:
                    result.failed.setdefault(key, {})[variant] = f"answered {answer[0]} {answer[1][:40]!r}"
                    continue
                active[key].append(variant)

    def block(app_name: str, case: Case, variant: str, n: int) -> float:
        result.invocations[(app_name, variant)] += n
        return _time_calls(handlers[(app_name, variant)], events[case.name], n, variant in result.mutates)

    for key, names in active.items():
        case = next(c for c in CASES if c.name == key[1])
        for variant in names:
            block(key[0], case, variant, warmup)
    for r in range(rounds):
        for app_name in APPS:
            for case in CASES:
                key = (app_name, case.name)
                for variant in rotated(list(variants), r):
                    value = block(app_name, case, variant, calls) if variant in active[key] else None
                    result.samples[key].setdefault(variant, []).append(value)
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return result


@dataclass
class SurveyResult:
    """What each adapter makes of every request event in tests/serverless/events (raw app)."""

    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> adapter -> outcome

    def markdown(self) -> str:
        odd = {f: o for f, o in self.outcomes.items() if set(o.values()) != {"200"}}
        rows = [[f"`{file}`", o[SUBJECT], o[MANGUM]] for file, o in sorted(odd.items())]
        title = f"### Request events not answered 200 by both adapters (raw app, {len(self.outcomes)} event files)"
        note = (
            f"\n\nThe other {len(self.outcomes) - len(odd)} request events: 200 from both. Files as recorded"
            " (SAM CloudFront templates with SAM's defaults, /test and GET); the response documents are left out."
        )
        return title + "\n\n" + table(["event file", "asgiscale", f"Mangum {metadata.version('mangum')}"], rows) + note


def run_survey() -> SurveyResult:
    result = SurveyResult()
    variants = _variants()
    handlers = {variant: variants[variant](raw_app(LifespanLog())) for variant in (SUBJECT, MANGUM)}
    for path in sorted(EVENTS_DIR.rglob("*.json")):
        if path.name.endswith("-response.json"):
            continue
        name = str(path.relative_to(EVENTS_DIR))
        for variant, handler in handlers.items():
            try:
                outcome = str(decoded(handler(load_event(name), Context()))[0])
            except Exception as exc:  # noqa: BLE001 - recorded, not raised
                outcome = _failure(exc)
            result.outcomes.setdefault(name, {})[variant] = outcome
    return result


IMPORTS = {
    "asgiscale.serverless": "from asgiscale.serverless import lambda_handler",
    "Mangum": "from mangum import Mangum",
    "asgiscale": "import asgiscale",
}
# What `asgiscale run` needs and a Lambda handler must not pay for.
SERVER_MODULES = ("asgiscale.config", "asgiscale.main", "asgiscale.runtime", "uvicorn", "click", "prometheus_client",
                  "yaml", "rich")  # fmt: skip
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| *(\S+)\s*$", re.MULTILINE)


def _env(pycache: Path, write: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME")}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _interpreter(statement: str, env: dict[str, str], cwd: Path, importtime: bool) -> tuple[float, dict[str, int]]:
    """(wall ms of the whole process, self µs of every module imported) for a fresh `python -c`."""
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", statement]
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    wall = (time.perf_counter() - start) * 1000
    return wall, {name: int(self_us) for self_us, _, name in _IMPORT_LINE.findall(out.stderr)}


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass
class ImportResult:
    rounds: int
    # statement -> per round: {module: self µs} of the modules it loaded beyond interpreter startup
    modules: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    from_source: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    wall_ms: dict[str, list[float]] = field(default_factory=dict)  # over `python -c pass`, same round

    def totals(self, which: dict[str, list[dict[str, int]]], name: str) -> list[float | None]:
        return [sum(m.values()) / 1000 for m in which[name]]

    def module_ms(self, name: str) -> dict[str, float]:
        """Each module's median self time in ms, over the rounds (bytecode cached)."""
        names = {m for run in self.modules[name] for m in run}
        return {m: statistics.median(run.get(m, 0) for run in self.modules[name]) / 1000 for m in names}

    def markdown(self) -> str:
        title = f"### Import time (cold start), {self.rounds} fresh interpreters per statement, interleaved"
        headers = ["statement", "modules loaded", "import ms, .pyc", "vs Mangum", "import ms, package from source",
                   "vs Mangum", "process ms over `python -c pass`", "vs Mangum"]  # fmt: skip
        wall: dict[str, list[float | None]] = {n: list(v) for n, v in self.wall_ms.items()}
        rows = []
        for name, statement in IMPORTS.items():
            cells = [f"`{statement}`", str(len(self.module_ms(name)))]
            for figures in (
                {n: self.totals(self.modules, n) for n in IMPORTS},
                {n: self.totals(self.from_source, n) for n in IMPORTS},
                wall,
            ):
                ratios = paired_ratios(figures, name, "Mangum")
                cells += [fmt(median([v for v in figures[name] if v is not None]), ".1f"),
                          fmt(median(ratios), ".2f", "x") + (f" ({spread(ratios)})" if ratios else "")]  # fmt: skip
            rows.append(cells)
        note = (
            "\n\n*import ms*: the sum of `-X importtime` self times of every module the statement loaded beyond"
            " interpreter startup, median over runs; *.pyc*: bytecode cached for every module (a fresh"
            " `PYTHONPYCACHEPREFIX`, written by one untimed run), as after `pip install`; *package from source*: the"
            " same cache without the package's own modules (asgiscale's, Mangum's), compiled on every import, as on"
            " Lambda from a zip without .pyc (/var/task is read-only, so nothing is cached). *process ms*: wall time"
            " of `python -c STATEMENT` (no -X importtime, .pyc cached) less that of `python -c pass` in the same"
            " round. Ratios: median of per-round ratios (IQR).\n\n" + self.breakdown()
        )
        return title + "\n\n" + table(headers, rows) + note

    def breakdown(self) -> str:
        ours, theirs = self.module_ms("asgiscale.serverless"), self.module_ms("Mangum")
        own = {m: t for m, t in ours.items() if m == "asgiscale" or m.startswith("asgiscale.")}
        only = {m: t for m, t in ours.items() if m not in theirs and m not in own}
        shared = {m: t for m, t in ours.items() if m in theirs}
        mangum_own = {m: t for m, t in theirs.items() if m == "mangum" or m.startswith("mangum.")}
        mangum_only = {m: t for m, t in theirs.items() if m not in ours and m not in mangum_own}

        def top(modules: dict[str, float], n: int = 6) -> str:
            ranked = sorted(modules.items(), key=lambda kv: -kv[1])[:n]
            return ", ".join(f"{m} {t:.1f}" for m, t in ranked) or "none"

        heavy = [h for h in SERVER_MODULES if any(m == h or m.startswith(h + ".") for m in ours)]
        loaded = f"loaded: {', '.join(heavy)}" if heavy else "none of them loaded"
        return (
            f"Server-side modules ({', '.join(SERVER_MODULES)}): {loaded}. "
            f"Where `{IMPORTS['asgiscale.serverless']}` spends its {sum(ours.values()):.1f} ms (.pyc cached, ms by"
            f" module, self time): {sum(shared.values()):.1f} ms in the {len(shared)} modules Mangum's import loads"
            f" too (largest: {top(shared)}); {sum(own.values()):.1f} ms in asgiscale's own {len(own)} modules"
            f" ({top(own, 10)}); {sum(only.values()):.1f} ms in {len(only)} other modules only asgiscale loads"
            f" ({top(only)}). Mangum's {sum(theirs.values()):.1f} ms: its own {len(mangum_own)} modules"
            f" {sum(mangum_own.values()):.1f} ms, {len(mangum_only)} modules only it loads"
            f" {sum(mangum_only.values()):.1f} ms ({top(mangum_only)})."
        )


def run_imports(rounds: int) -> ImportResult:
    result = ImportResult(rounds)
    tmp = Path(tempfile.mkdtemp(prefix="asgiscale-imports-"))
    try:
        cached, without_packages, cwd = tmp / "pyc", tmp / "pyc-without-packages", tmp / "cwd"
        cwd.mkdir()
        for statement in ("pass", *IMPORTS.values()):  # writes the bytecode cache, untimed
            _interpreter(statement, _env(cached, write=True), cwd, importtime=False)
        shutil.copytree(cached, without_packages)
        for package in ("asgiscale", "mangum"):
            shutil.rmtree(without_packages / _package_dir(package).relative_to("/"))
        for r in range(rounds):
            for name in rotated(["pass", *IMPORTS], r):
                statement = IMPORTS.get(name, "pass")
                _, modules = _interpreter(statement, _env(cached, write=False), cwd, importtime=True)
                _, compiled = _interpreter(statement, _env(without_packages, write=False), cwd, importtime=True)
                wall, _ = _interpreter(statement, _env(cached, write=False), cwd, importtime=False)
                result.modules.setdefault(name, []).append(modules)
                result.from_source.setdefault(name, []).append(compiled)
                result.wall_ms.setdefault(name, []).append(wall)
        startup = {m for run in result.modules.pop("pass") + result.from_source.pop("pass") for m in run}
        for which in (result.modules, result.from_source):
            for name, runs in which.items():
                which[name] = [{m: t for m, t in run.items() if m not in startup} for run in runs]
        base = result.wall_ms.pop("pass")
        result.wall_ms = {n: [w - b for w, b in zip(v, base, strict=True)] for n, v in result.wall_ms.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


@dataclass
class ServerlessResult:
    invocations: InvocationResult | None = None
    survey: SurveyResult | None = None
    imports: ImportResult | None = None
    skipped: str = ""

    def markdown(self) -> str:
        if self.skipped:
            return f"### Serverless adapter vs Mangum\n\nNot measured: {self.skipped}."
        return "\n\n".join(r.markdown() for r in (self.invocations, self.survey, self.imports) if r is not None)


FULL = {"rounds": 40, "calls": 200, "import_rounds": 20}
QUICK = {"rounds": 3, "calls": 30, "import_rounds": 3}


def run(rounds: int, calls: int, import_rounds: int) -> ServerlessResult:
    missing = [name for name in ("mangum", "fastapi") if importlib.util.find_spec(name) is None]
    if missing:
        return ServerlessResult(skipped=f"{', '.join(missing)} not installed (pip install -e '.[dev]')")
    print("  per invocation", flush=True)
    invocations = run_invocations(rounds, calls, warmup=min(200, calls * 2))
    print("  event survey", flush=True)
    survey = run_survey()
    print("  import time", flush=True)
    imports = run_imports(import_rounds)
    return ServerlessResult(invocations, survey, imports)


def environment() -> list[str]:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("mangum", "fastapi", "starlette"))
    return [
        f"machine: {os.cpu_count()} cores ({_cpu_model()}), Linux {platform.release()}",
        f"python: {platform.python_version()}",
        f"libraries: {versions}",
        f"asgiscale code: {_code_version()}",
        f"load average at the start: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1 / 5 / 15 min)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=FULL["rounds"])
    parser.add_argument("--calls", type=int, default=FULL["calls"], help="invocations per adapter, event and round")
    parser.add_argument("--import-rounds", type=int, default=FULL["import_rounds"])
    parser.add_argument("--quick", action="store_true", help="a short run, to check the harness")
    parser.add_argument("--no-docs", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    sizes = QUICK if args.quick else {"rounds": args.rounds, "calls": args.calls, "import_rounds": args.import_rounds}
    started_at, facts = time.gmtime(), environment()
    result = run(**sizes)
    title = time.strftime("Serverless adapter, run of %Y-%m-%d %H:%M UTC", started_at)
    facts.append(f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    text = f"## {title}\n\n" + "\n".join(f"- {f}" for f in facts) + "\n\n" + result.markdown()
    publish(text, to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
