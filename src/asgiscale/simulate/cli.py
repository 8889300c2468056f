"""`asgiscale simulate`: the command line over `asgiscale.simulate` (the I/O shell)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from asgiscale import scaling
from asgiscale.config import EXIT_USAGE, Config, ConfigError
from asgiscale.policy import PolicyError
from asgiscale.simulate import policies
from asgiscale.simulate.model import ARRIVALS, PLATFORMS, Platform, Service, SimPolicy, simulate
from asgiscale.simulate.report import COLUMNS, build_report, summary_rows, write_report
from asgiscale.simulate.trace import TraceError, describe_shapes, load

HELP = (
    "Replay a traffic trace through the scaling policy: replicas, latency, shed requests and cost over time, "
    "before the policy goes live.\n\n\b\nTrace shapes (NAME:key=value,…; times in s or with a unit: 90s, 5m, 2h, "
    "1d):\n" + describe_shapes()
)


@click.command("simulate", help=HELP, context_settings={"max_content_width": 120})
@click.option(
    "--trace",
    "trace_source",
    required=True,
    help="The offered load: a CSV file (time,rps[,cost]), a saved /status?history=N JSON, or a shape "
    "such as step:from=100,to=400,at=60 (see below).",
)
@click.option(
    "--policy",
    "policy_source",
    help="The policy: a config file (.toml), a manifest (.yaml: HorizontalPodAutoscaler or Knative Service) or a "
    "directory of them. Default: the config of this directory.",
)
@click.option("--hpa", "hpa_manifest", help="A HorizontalPodAutoscaler manifest to replay (the same as --policy FILE).")
@click.option("--compare", multiple=True, help="Another policy source replayed on the same trace (repeatable).")
@click.option("--platform", type=click.Choice(list(PLATFORMS)), default="kubernetes", show_default=True)
@click.option("--capacity", type=float, help="Requests per second one replica completes at most "
              "(default: rps_per_worker of [scale.capacity], measured by asgiscale bench).")  # fmt: skip
@click.option(
    "--service-time", type=float, help="Seconds a request takes at low load (default: from [scale.capacity])."
)
@click.option("--cpu-per-request", type=float, help="CPU seconds per request, for a cpu target (default: measured).")
@click.option("--startup", type=float, help="Seconds from the scale-up decision to a ready replica.")
@click.option("--sync-period", type=float, help="Seconds between the policy's decisions.")
@click.option("--metrics-interval", type=float, help="Seconds between fresh readings of the metrics.")
@click.option("--metrics-window", type=float, help="Seconds each reading averages over.")
@click.option("--max-pods", type=int, help="Node capacity: more replicas than this stay pending.")
@click.option("--initial", type=int, help="Replicas at the start (default: what the policy settles at for the "
              "first rate of the trace).")  # fmt: skip
@click.option("--min-replicas", type=int, help="Lowest replica count (default: min_workers, or 2).")
@click.option("--max-replicas", type=int, help="Highest replica count (default: max_workers, or measured, or 10).")
@click.option("--arrivals", type=click.Choice(ARRIVALS), default="poisson", show_default=True)
@click.option("--step", type=float, default=1.0, show_default=True, help="Seconds per simulated step.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds a client waits at most.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("simulate-report"), show_default=True,
              help="Directory of the report (index.html, report.json, plots).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report JSON instead of the table.")
def simulate_command(
    trace_source: str,
    policy_source: str | None,
    hpa_manifest: str | None,
    compare: tuple[str, ...],
    platform: str,
    out: Path,
    as_json: bool,
    **flags: Any,
) -> None:
    """`asgiscale simulate` (see HELP)."""
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        if policy_source and hpa_manifest:
            raise ConfigError("give --policy or --hpa, not both")
        trace = load(trace_source)
        where = platform_of(platform, flags)
        config = Config.from_sources(env=os.environ)
        service = service_of(config, flags)
        bounds = (flags["min_replicas"], flags["max_replicas"])
        chosen = [policies.load(hpa_manifest or policy_source, where, bounds)]
        chosen += [policies.load(source, where, bounds) for source in compare]
        _check_metrics(chosen, service)
        started = time.perf_counter()
        runs = [
            simulate(
                trace,
                policy,
                service,
                where,
                step=flags["step"],
                arrivals=flags["arrivals"],
                initial=flags["initial"],
                max_pods=flags["max_pods"],
            )
            for policy in chosen
        ]
        elapsed = time.perf_counter() - started
    except (TraceError, ConfigError, PolicyError, scaling.ScaleError) as exc:
        _fail(err, str(exc))
    settings = {"arrivals": flags["arrivals"], "step": flags["step"], "max_pods": flags["max_pods"]}
    report = build_report(trace, where, service, runs, settings)
    report["elapsed_seconds"] = round(elapsed, 3)
    paths = write_report(report, out)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table(title=trace.describe(), title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in summary_rows(report):
        table.add_row(*row)
    out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    out_console.print(table)
    speed = trace.duration * len(runs) / max(elapsed, 1e-9)
    out_console.print(f"Simulated {trace.duration * len(runs):,.0f} s in {elapsed:.2f} s ({speed:,.0f}x real time).")
    out_console.print(f"Report: {paths[0]}")


def platform_of(name: str, flags: dict[str, Any]) -> Platform:
    """The platform's preset with the timing flags given."""
    return PLATFORMS[name].with_(
        startup=flags["startup"],
        sync_period=flags["sync_period"],
        metrics_interval=flags["metrics_interval"],
        metrics_window=flags["metrics_window"],
    )


def service_of(config: Config, flags: dict[str, Any]) -> Service:
    """One replica's service from the flags, else from what `asgiscale bench --write-config` measured."""
    measured = scaling.capacity(config.scale)
    rps, concurrency, cpu = (measured.get(k) for k in ("rps_per_worker", "concurrency_per_worker", "cpu_per_worker"))
    service_time = flags["service_time"] or (concurrency / rps if rps and concurrency else None)
    if service_time is None:
        raise ConfigError(
            "no service time: give --service-time SECONDS, or measure the app with asgiscale bench APP --write-config"
        )
    capacity = flags["capacity"] or rps
    if config.max_concurrency is not None:
        limit = config.max_concurrency / service_time
        capacity = min(capacity, limit) if capacity else limit
    if not capacity:
        raise ConfigError(
            "no capacity per replica: give --capacity RPS, or measure it with asgiscale bench APP --write-config"
        )
    cpu_per_request = flags["cpu_per_request"] or (cpu / rps if cpu and rps else None)
    max_queue = config.max_queue if config.max_queue is not None else (config.max_concurrency or 0)
    return Service(
        capacity=capacity,
        service_time=service_time,
        cpu_per_request=cpu_per_request,
        max_concurrency=config.max_concurrency,
        max_queue=max_queue,
        queue_timeout=config.queue_timeout,
        timeout=flags["timeout"],
    )


def _check_metrics(chosen: list[SimPolicy], service: Service) -> None:
    for policy in chosen:
        if "cpu" in policy.metrics and service.cpu_per_request is None:
            raise ConfigError(
                f"{policy.name} scales on cpu: give --cpu-per-request SECONDS, or measure the app with"
                " asgiscale bench APP --write-config"
            )


def _fail(err: Console, message: str) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    sys.exit(EXIT_USAGE)
