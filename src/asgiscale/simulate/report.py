"""The report of `asgiscale simulate`: a summary table, `report.json`, `index.html` and PNG plots.

The JSON document (`build_report`) is the one source; the table, the page and the plots are
drawn from it. Every run is on the same trace, so the plots overlay them for comparison.
Plots need matplotlib (`pip install 'asgiscale[bench]'`); the page says so when it is missing.

    >>> paths = write_report(report, Path("simulate-report"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asgiscale.bench.report import STYLE, html_table, save_png, write_files
from asgiscale.simulate.model import Platform, Run, Service
from asgiscale.simulate.trace import Trace

PLOTS = ("replicas", "load", "latency")
COLUMNS = ("policy", "max", "mean", "replica-h", "p50", "p99", "shed", "dropped", "changes")


def build_report(
    trace: Trace, platform: Platform, service: Service, runs: Sequence[Run], settings: dict[str, Any]
) -> dict[str, Any]:
    return {
        "trace": {"name": trace.name, "duration": trace.duration, "peak_rps": trace.peak, "about": trace.describe()},
        "platform": {
            "name": platform.name,
            "startup": platform.startup,
            "sync_period": platform.sync_period,
            "metrics_interval": platform.metrics_interval,
            "metrics_window": platform.metrics_window,
            "about": platform.description,
        },
        "service": {
            "capacity": service.capacity,
            "service_time": service.service_time,
            "slots": service.slots,
            "cpu_per_request": service.cpu_per_request,
            "max_concurrency": service.max_concurrency,
            "max_queue": service.max_queue,
            "queue_timeout": service.queue_timeout,
            "timeout": service.timeout,
        },
        "settings": settings,
        "runs": [run.to_dict() for run in runs],
    }


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per run, in the order of `COLUMNS`."""
    rows = []
    for run in report["runs"]:
        s = run["summary"]
        rows.append(
            [
                run["policy"],
                f"{s['replicas_max']:,}",
                f"{s['replicas_mean']:,.1f}",
                f"{s['replica_seconds'] / 3600:,.2f}",
                _ms(s["p50"]),
                _ms(s["p99"]),
                f"{s['shed_share']:.2%}",
                f"{s['dropped_share']:.2%}",
                f"{s['scale_events']:,}",
            ]
        )
    return rows


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write the report into directory `out` (created if needed); the paths written, page first."""
    return write_files(report, out, _plots, render_html)


def _plots(report: dict[str, Any], out: Path) -> list[Path]:
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        return []
    runs = report["runs"]
    hours = report["trace"]["duration"] >= 3 * 3600
    scale, unit = (3600.0, "hours") if hours else (60.0, "minutes") if report["trace"]["duration"] >= 600 else (1, "s")

    def new(title: str, ylabel: str) -> tuple[Any, Any]:
        figure = Figure(figsize=(9, 4), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(title)
        axes.set_xlabel(f"time ({unit})")
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        return figure, axes

    def times(run: dict[str, Any]) -> list[float]:
        return [t / scale for t in run["series"]["time"]]

    paths = []
    figure, axes = new("Replicas over time", "replicas")
    for run in runs:
        line = axes.step(times(run), run["series"]["replicas"], where="post", label=f"{run['policy']}: running")
        axes.step(
            times(run), run["series"]["ready"], ":", where="post", color=line[0].get_color(), label="ready"
        )  # fmt: skip
    axes.legend(fontsize="small")
    paths.append(save_png(figure, out / "replicas.png"))

    figure, axes = new("Offered and served load", "requests per second")
    axes.plot(times(runs[0]), runs[0]["series"]["offered"], color="grey", linewidth=2, label="offered")
    for run in runs:
        line = axes.plot(times(run), run["series"]["served"], label=f"{run['policy']}: served")
        failed = [a + b for a, b in zip(run["series"]["shed"], run["series"]["dropped"], strict=True)]
        if any(failed):
            axes.plot(times(run), failed, "--", color=line[0].get_color(), label="shed + dropped")
    axes.legend(fontsize="small")
    paths.append(save_png(figure, out / "load.png"))

    figure, axes = new("Latency (p50 dotted, p99 solid)", "latency (ms)")
    for run in runs:
        p99 = [None if v is None else v * 1000 for v in run["series"]["p99"]]
        p50 = [None if v is None else v * 1000 for v in run["series"]["p50"]]
        line = axes.plot(times(run), p99, label=f"{run['policy']}: p99")
        axes.plot(times(run), p50, ":", color=line[0].get_color())
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.yaxis.set_minor_formatter(ScalarFormatter())
    axes.legend(fontsize="small")
    paths.append(save_png(figure, out / "latency.png"))
    return paths


def render_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    e = html.escape
    trace, platform, service = report["trace"], report["platform"], report["service"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>asgiscale simulate: {e(trace['name'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(trace['about'])}</h1>",
        f"<p>Platform <strong>{e(platform['name'])}</strong>: {e(platform['about'])}. "
        f"Replicas ready {platform['startup']:g} s after they are asked for; the policy decides every "
        f"{platform['sync_period']:g} s on metrics refreshed every {platform['metrics_interval']:g} s.</p>",
        f"<p>One replica serves at most {service['capacity']:,.1f} req/s, a request takes "
        f"{service['service_time'] * 1000:.1f} ms at low load ({service['slots']} at once at capacity)"
        + (
            f"; admission control runs {service['max_concurrency']} at once and queues {service['max_queue']} more "
            f"for {service['queue_timeout']:g} s at most"
            if service["max_concurrency"]
            else f"; no admission control: a request waits until the client gives up after {service['timeout']:g} s"
        )
        + ".</p>",
        "<h2>Summary</h2>",
        html_table(list(COLUMNS), summary_rows(report)),
        "<ul>" + "".join(f"<li>{e(run['policy'])}: {e(run['about'])}</li>" for run in report["runs"]) + "</ul>",
        "<p>Shed: refused by admission control (503). Dropped: no ready replica, or the client gave up. "
        "Replica-hours are what the run costs.</p>",
    ]
    for name in PLOTS:
        if name in images:
            data = base64.b64encode(images[name]).decode()
            parts.append(f'<p><img alt="{name} plot" src="data:image/png;base64,{data}"></p>')
    if not images:
        parts.append("<p>Plots need matplotlib: <code>pip install 'asgiscale[bench]'</code>.</p>")
    for run in report["runs"]:
        parts.append(f"<h2>Scale events of {e(run['policy'])}</h2>")
        events = run["decisions"]
        if not events:
            parts.append("<p>None: the replica count never changed.</p>")
            continue
        rows = [[f"{t:,.0f} s", f"{a:,}", f"{b:,}"] for t, a, b in events[:200]]
        parts.append(html_table(["time", "from", "to"], rows))
        if len(events) > 200:
            parts.append(f"<p>… and {len(events) - 200:,} more in report.json.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
