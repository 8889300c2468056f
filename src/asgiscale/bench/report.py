"""The report of `asgiscale bench`: `report.json`, a self-contained `index.html` and PNG plots.

The JSON document `runner.run_bench` returns is the one source; the page and the plots are drawn
from it. The page has no external resource (the plots are inlined), so it reads offline and can be
attached to a ticket. Plots need matplotlib (`pip install 'asgiscale[bench]'`); without it the page
has the same figures as tables, and says how to get the plots.

    >>> paths = write_report(report, Path("bench-report"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asgiscale.bench.objective import format_us, parse_objectives

PLOTS = ("latency", "throughput", "cpu")


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write the report into directory `out` (created if needed); the paths written, page first."""
    return write_files(report, out, _plots, render_html)


def write_files(
    report: dict[str, Any],
    out: Path,
    plots: Callable[[dict[str, Any], Path], list[Path]],
    render: Callable[[dict[str, Any], dict[str, bytes]], str],
) -> list[Path]:
    """`report.json`, the PNGs `plots` draws into `out`, and the page `render` makes with them inlined."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "index.html", out / "report.json"]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    images = plots(report, out)
    written += images
    (out / "index.html").write_text(render(report, {p.stem: p.read_bytes() for p in images}))
    return written


def capacity_lines(report: dict[str, Any]) -> list[str]:
    """The findings in a few plain lines, for the terminal."""
    lines = []
    for cap in report["capacities"]:
        who = "the URL" if cap["workers"] is None else f"{cap['workers']} worker{'s' * (cap['workers'] != 1)}"
        bound = "" if cap["exact"] else " (at least: " + (cap["stopped"] or "not bracketed") + ")"
        cpu = "" if cap["cpu_per_worker"] is None else f", {cap['cpu_per_worker']:.2f} cores per worker"
        lines.append(f"{who}: {cap['rps']:,.0f} req/s{bound}, p99 {_us(cap['latency_us']['p99'])}{cpu}")
    rec = report["recommendation"]
    if rec:
        lines.append(
            f"per worker: {rec['rps_per_worker']:,.1f} req/s, {rec['concurrency_per_worker']:.1f} in flight; "
            f"scale target {rec['target']}"
            + (f", CPU request {rec['cpu_request']}" if rec["cpu_request"] else "")
            + (f"; {rec['replicas_at_peak']} workers for {rec['peak_rps']:,.0f} req/s" if rec["peak_rps"] else "")
        )
    return lines


def _us(value: int | None) -> str:
    return "∞ (failed requests)" if value is None else format_us(value)


def _by_workers(steps: Iterable[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for step in steps:
        groups.setdefault(step["workers"], []).append(step)
    return {k: sorted(v, key=lambda s: s["rate"]) for k, v in groups.items()}


def _label(workers: int | None) -> str:
    return "URL" if workers is None else f"{workers} worker{'s' * (workers != 1)}"


def _plots(report: dict[str, Any], out: Path) -> list[Path]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return []
    groups = _by_workers(report["steps"])
    if not groups:
        return []
    paths = []

    def new(title: str, ylabel: str) -> tuple[Any, Any]:
        figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(title)
        axes.set_xlabel("offered load (requests per second)")
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        return figure, axes

    figure, axes = new("Latency against offered load (from each request's scheduled time)", "latency (ms)")
    for workers, steps in groups.items():
        rates = [s["rate"] for s in steps]
        for name, style in (("p50", ":"), ("p99", "-")):
            values = [None if s["latency_us"][name] is None else s["latency_us"][name] / 1000 for s in steps]
            axes.plot(rates, values, style, marker="o", label=f"{name}, {_label(workers)}")
    for objective in parse_objectives(report["objectives"]):
        axes.axhline(objective.limit_us / 1000, color="red", linewidth=1, label=f"objective {objective}")
    axes.set_yscale("log")
    axes.legend(fontsize="small")
    paths.append(save_png(figure, out / "latency.png"))

    figure, axes = new("Throughput and failures against offered load", "successful answers per second")
    top = max(s["rate"] for s in report["steps"])
    axes.plot([0, top], [0, top], color="grey", linewidth=1, label="offered = answered")
    errors = axes.twinx()
    errors.set_ylabel("failed requests (%)")
    for workers, steps in groups.items():
        rates = [s["rate"] for s in steps]
        axes.plot(rates, [s["goodput"] for s in steps], marker="o", label=f"answered, {_label(workers)}")
        errors.plot(rates, [100 * s["error_share"] for s in steps], "x--", label=f"failed, {_label(workers)}")
    top_errors = max(100 * s["error_share"] for s in report["steps"])
    errors.set_ylim(0, max(1.0, 1.1 * top_errors))  # no negative share when nothing failed
    axes.legend(loc="upper left", fontsize="small")
    errors.legend(loc="lower right", fontsize="small")
    paths.append(save_png(figure, out / "throughput.png"))

    if any(s["cpu_per_worker"] is not None for s in report["steps"]):
        figure, axes = new("CPU per worker against offered load", "CPU per worker (cores)")
        for workers, steps in groups.items():
            measured = [s for s in steps if s["cpu_per_worker"] is not None]
            axes.plot(
                [s["rate"] for s in measured],
                [s["cpu_per_worker"] for s in measured],
                marker="o",
                label=_label(workers),
            )
        axes.axhline(1.0, color="grey", linewidth=1)
        axes.legend(fontsize="small")
        paths.append(save_png(figure, out / "cpu.png"))
    return paths


def save_png(figure: Any, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; font-variant-numeric: tabular-nums; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: right; } th { background: #f4f4f4; }
td.l, th.l { text-align: left; }
.problem { background: #fdecea; border-left: 4px solid #c0392b; padding: .6em 1em; }
.ok { color: #1e7e34; } .miss { color: #c0392b; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
img { max-width: 100%; }
"""


def render_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    """The page: findings, recommendation, plots (inlined PNGs) and every step."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>asgiscale bench: {e(report['target'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Capacity of {e(report['target'])} at {e(', '.join(report['objectives']))}</h1>",
        f"<p>GET {e(report['path'])}, {e(report['settings']['arrivals'])} arrivals, "
        f"{report['settings']['duration']:g} s per step, started {e(report['started'])} on "
        f"{report['machine']['cores']} cores ({e(report['machine']['system'])}, Python "
        f"{e(report['machine']['python'])}). Latency runs from each request's scheduled time, so "
        "a server that stalls is charged for every request that waited (no coordinated omission); "
        "a failed request counts as infinitely slow.</p>",
    ]
    if report["problem"]:
        parts.append(f'<p class="problem"><strong>Stopped early:</strong> {e(report["problem"])}</p>')
    if report["capacities"]:
        parts.append("<h2>Capacity found</h2>")
        rows = []
        for cap in report["capacities"]:
            rows.append(
                [
                    _label(cap["workers"]),
                    f"{cap['rps']:,.0f}" + ("" if cap["exact"] else " or more"),
                    f"{cap['rps_per_worker']:,.1f}",
                    _us(cap["latency_us"]["p50"]),
                    _us(cap["latency_us"]["p99"]),
                    "n/a" if cap["cpu_per_worker"] is None else f"{cap['cpu_per_worker']:.2f}",
                ]
            )
        parts.append(
            html_table(["", "req/s at the objective", "per worker", "p50", "p99", "CPU per worker (cores)"], rows)
        )
    rec = report["recommendation"]
    if rec:
        parts.append("<h2>Recommended settings</h2><ul>")
        unit = " (% of one core, per worker)" if rec["target"].startswith("cpu=") else " (per worker)"
        parts.append(
            f"<li>One worker carries <strong>{rec['rps_per_worker']:,.1f} req/s</strong> and "
            f"<strong>{rec['concurrency_per_worker']:.1f} requests in flight</strong> at the objective.</li>"
        )
        parts.append(
            f"<li>Scale target <code>{e(rec['target'])}</code>{unit}, keeping {rec['headroom']:.0%} headroom: "
            f"{e(rec['why'])}.</li>"
        )
        if rec["cpu_request"]:
            parts.append(
                f"<li>CPU request per worker: <code>{e(rec['cpu_request'])}</code> (what it used at capacity).</li>"
            )
        if rec["peak_rps"]:
            parts.append(
                f"<li>{rec['replicas_at_peak']} workers carry a peak of {rec['peak_rps']:,.0f} req/s "
                "at the target.</li>"
            )
        if len(rec["scaling"]) > 1:
            shown = ", ".join(f"{k}: {v:.0%}" for k, v in rec["scaling"].items())
            parts.append(f"<li>Per-worker capacity against one worker's, on this machine: {e(shown)}.</li>")
        parts.append("</ul><p><code>asgiscale bench … --write-config</code> stores these in the config file.</p>")
    for name in PLOTS:
        if name in images:
            data = base64.b64encode(images[name]).decode()
            parts.append(f'<p><img alt="{name} plot" src="data:image/png;base64,{data}"></p>')
    if report["steps"] and not images:
        parts.append("<p>Plots need matplotlib: <code>pip install 'asgiscale[bench]'</code>.</p>")
    if report["steps"]:
        parts.append("<h2>Every step</h2>")
        rows = []
        for s in report["steps"]:
            verdict = (
                '<span class="ok">met</span>' if s["met"] else f'<span class="miss">{e("; ".join(s["why_not"]))}</span>'
            )
            rows.append(
                [
                    _label(s["workers"]),
                    f"{s['rate']:,.0f}",
                    f"{s['goodput']:,.0f}",
                    *(_us(s["latency_us"][p]) for p in ("p50", "p90", "p99", "p99.9")),
                    f"{s['error_share']:.2%}",
                    "n/a" if s["cpu_per_worker"] is None else f"{s['cpu_per_worker']:.2f}",
                    f"{s['generator_cpu']:.2f}",
                    _us(s["send_lag_p99_us"]),
                    verdict,
                ]
            )
        headers = [
            "",
            "offered req/s",
            "answered req/s",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "failed",
            "CPU per worker",
            "generator CPU",
            "send lag p99",
            "objective",
        ]
        parts.append(html_table(headers, rows, raw_last=True))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def html_table(headers: list[str], rows: list[list[str]], raw_last: bool = False) -> str:
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"]
    for row in rows:
        cells = [f'<td class="l">{e(row[0])}</td>'] + [f"<td>{e(c)}</td>" for c in row[1:-1]]
        cells.append(f'<td class="l">{row[-1] if raw_last else e(row[-1])}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"
