"""`asgiscale bench APP|URL --slo p99=50ms` on the command line.

$ asgiscale bench main:app --slo p99=50ms                      # 1 worker, then one per core
$ asgiscale bench examples/hello.py:app --slo p99=50ms --workers 1,2,4 --peak-rps 3000
$ asgiscale bench http://127.0.0.1:8000/ --slo p99=20ms,p50=5ms --json > capacity.json
$ asgiscale bench main:app --slo p99=100ms --write-config      # into asgiscale.toml

Progress goes to standard error, the report to `--out` (index.html, report.json, PNG plots), and
with `--json` the report document to standard output. Exit status: 0 when every worker count was
measured, 1 when the measurement stopped early (its report is still written), 2 for bad flags.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from asgiscale.bench.configfile import capacity_table, write_capacity
from asgiscale.bench.generator import ARRIVALS, Target, TargetError, checked_path
from asgiscale.bench.objective import ObjectiveError, parse_objectives
from asgiscale.bench.report import capacity_lines, write_report
from asgiscale.bench.runner import BenchOptions, StepRecord, run_bench
from asgiscale.config import EXIT_USAGE, Config, ConfigError


def _share(text: str, flag: str) -> float:
    """`20%` or `0.2` -> 0.2."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a share like 20% or 0.2", param_hint=flag) from None
    if not 0 <= value < 1:
        raise click.BadParameter(f"{text!r} must be at least 0% and below 100%", param_hint=flag)
    return value


def _worker_counts(text: str | None) -> tuple[int, ...]:
    if text is None:
        cores = os.cpu_count() or 1
        return (1,) if cores == 1 else (1, cores)
    try:
        counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        counts = ()
    if not counts or counts[0] < 1:
        raise click.BadParameter(f"{text!r} is not a list of worker counts like 1,2,4", param_hint="--workers")
    return counts


def split_app(app: str, app_dir: str) -> tuple[str, str]:
    """`examples/hello.py:app` -> ('hello:app', 'examples'); 'module:attribute' is kept as it is."""
    module, sep, attribute = app.partition(":")
    if module.endswith(".py"):
        path = Path(app_dir) / module
        return f"{path.stem}{sep}{attribute}", str(path.parent)
    return app, app_dir


@click.command("bench", context_settings={"max_content_width": 120})
@click.argument("target", required=False, metavar="APP|URL")
@click.option(
    "--slo",
    "slos",
    multiple=True,
    required=True,
    metavar="pNN=TIME",
    help="Latency objective, like p99=50ms (repeat or comma-separate for several).",
)
@click.option(
    "--workers", "workers_text", metavar="N,N…", help="Worker counts to measure APP with [default: 1 and one per core]."
)
@click.option(
    "--duration", type=click.FloatRange(0.5, 600), default=5.0, show_default=True, help="Seconds of each load step."
)
@click.option("--path", default="/", show_default=True, help="The path to GET.")
@click.option(
    "--arrivals",
    type=click.Choice(ARRIVALS),
    default="constant",
    show_default=True,
    help="Request arrivals: evenly spaced, or a Poisson process (bursty, like independent users).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.01),
    default=5.0,
    show_default=True,
    help="Seconds before a request counts as failed.",
)
@click.option(
    "--max-errors",
    default="1%",
    show_default=True,
    help="Failed requests a step may have and still meet the objective.",
)
@click.option(
    "--headroom", default="20%", show_default=True, help="Capacity kept free at the recommended scale target."
)
@click.option("--peak-rps", type=click.FloatRange(min=0, min_open=True), help="The peak to size replicas for.")
@click.option(
    "--start-rate", type=click.FloatRange(min=0, min_open=True), help="First rate tried [default: from a probe]."
)
@click.option(
    "--load-processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Generator processes (one keeps its schedule to about 30,000 req/s).",
)
@click.option(
    "--connections",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Most connections per generator process.",
)
@click.option("--app-dir", default=".", show_default=True, help="Look for APP in this directory.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("bench-report"), show_default=True, help="Report directory."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report document (JSON) on standard output.")
@click.option(
    "--write-config", is_flag=True, help="Store the recommended scale target and the capacity in the config file."
)
def bench_command(
    target: str | None,
    slos: tuple[str, ...],
    workers_text: str | None,
    app_dir: str,
    out: Path,
    as_json: bool,
    write_config: bool,
    **values: Any,
) -> None:
    """Find the highest request rate APP (or a running URL) carries at a latency objective, per worker
    count, and the scaling settings that follow: scale target, CPU request, replicas for a peak."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        options = _options(target, slos, workers_text, app_dir, values)
    except (ConfigError, ObjectiveError, TargetError) as exc:
        click.echo(f"asgiscale: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except click.BadParameter as exc:
        click.echo(f"asgiscale: error: {exc.format_message()} ({exc.param_hint})", err=True)
        sys.exit(EXIT_USAGE)
    out.mkdir(parents=True, exist_ok=True)
    options = dataclasses.replace(options, log_dir=out.resolve())
    report = _run_with_progress(options, err)
    paths = write_report(report, out)
    for line in capacity_lines(report):
        err.print(line)
    if report["problem"]:
        err.print(f"[bold red]asgiscale: stopped early:[/] {report['problem']}")
    err.print(f"report: {paths[0]}")
    if write_config and report["recommendation"]:
        rec = report["recommendation"]
        table = capacity_table(report)
        try:
            written = write_capacity(Path.cwd(), rec["target"], table)
        except ConfigError as exc:
            err.print(f"[bold red]asgiscale: error:[/] {exc}")
            sys.exit(1)
        err.print(f'wrote scale_targets = ["{rec["target"]}"] and [scale.capacity] into {written}')
    elif write_config:
        err.print("nothing written to the config: no capacity was measured")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    sys.exit(1 if report["problem"] else 0)


def _options(
    target: str | None, slos: tuple[str, ...], workers_text: str | None, app_dir: str, values: dict[str, Any]
) -> BenchOptions:
    objectives = parse_objectives(slos)
    max_errors = _share(values.pop("max_errors"), "--max-errors")
    headroom = _share(values.pop("headroom"), "--headroom")
    workers = _worker_counts(workers_text)
    path = checked_path(values.pop("path"))
    common = dict(
        objectives=objectives,
        path=path,
        max_errors=max_errors,
        headroom=headroom,
        max_connections=values.pop("connections"),
        **values,
    )
    if target is not None and "://" in target:
        if workers_text is not None:
            raise click.BadParameter("a running URL has the workers it has; drop --workers", param_hint="--workers")
        return BenchOptions(url=Target.parse(target), **common)
    app = target or Config.from_sources(env=os.environ).app
    if not app:
        raise ConfigError("no app given: pass APP like 'main:app' (or a URL), or set app in asgiscale.toml")
    app, app_dir = split_app(app, app_dir)
    if ":" not in app:
        raise ConfigError(f"APP must look like 'module:attribute' or 'path/to/file.py:attribute', got {app!r}")
    if not Path(app_dir).is_dir():
        raise ConfigError(f"the app directory {app_dir!r} does not exist")
    return BenchOptions(app=app, workers=workers, settings={"app_dir": app_dir}, **common)


def _run_with_progress(options: BenchOptions, err: Console) -> dict[str, Any]:
    """`run_bench` with a bar per step (on a terminal) and one line per finished step."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True)
    task = progress.add_task("starting", total=options.duration)
    step_began = [0.0]
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.2):
            if step_began[0]:
                progress.update(task, completed=min(time.monotonic() - step_began[0], options.duration))

    def on_step(kind: str, text: str, record: StepRecord | None) -> None:
        progress.update(task, description=text, completed=0)
        step_began[0] = time.monotonic() if kind == "step" else 0.0
        if record is None:
            if kind == "info":
                progress.console.print(text)
            return
        summary = record.summary()
        p99 = summary["latency_us"]["p99"]
        shown = "∞" if p99 is None else f"{p99 / 1000:.1f} ms"
        verdict = "[green]met[/]" if record.verdict.met else "[red]" + "; ".join(record.verdict.reasons) + "[/]"
        progress.console.print(f"  {text}: p99 {shown}, {summary['error_share']:.1%} failed, {verdict}")

    ticker = threading.Thread(target=tick, daemon=True)
    with progress:
        ticker.start()
        try:
            return run_bench(options, on_step)
        finally:
            stop.set()
            ticker.join()
