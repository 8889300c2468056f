"""Run every benchmark in one go and append the results to docs/benchmarks.md.

    python benchmarks/run_all.py            # full run, about 20 minutes on 2 cores
    python benchmarks/run_all.py --quick    # one short round of each, to check the harness
    python benchmarks/run_all.py --servers uvicorn,granian --no-docs

Servers that are not installed (asgiscale before `pip install -e .`) are skipped with a note.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import chaos
import instrumentation
import memory
import overload
import reload
import scale_up
import scaling
import scrape
import serverless
import throughput
from _report import fmt, publish, section, spread, table
from _servers import BASELINE, DEFAULT_SERVERS, SERVERS, Server, select_servers

SUBJECT = "asgiscale"
T = TypeVar("T")
P = ParamSpec("P")


def _verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "not measured"
    return "met" if ok(value) else "**not met**"


def targets(
    tp: dict[str, throughput.ThroughputResult],
    su: dict[str, scale_up.ScaleUpResult],
    mem: dict[str, memory.MemoryResult],
    rl: reload.ReloadResult | None,
    ins: instrumentation.InstrumentationResult | None = None,
    ov: overload.OverloadResult | None = None,
    ch: chaos.ChaosResult | None = None,
) -> str:
    """asgiscale's figures against the goals the project set for it."""
    rows = []
    for app, res in tp.items():
        value = res.ratio(SUBJECT)
        shown = fmt(value, ".2f", "x") + (f" (IQR {spread(res.ratios(SUBJECT))})" if value is not None else "")
        rows.append([f"throughput, {app} app", f"≥ 0.97x {BASELINE}", shown, _verdict(value, lambda v: v >= 0.97)])
    for app, su_res in su.items():
        value = su_res.speedup(SUBJECT)
        rows.append([f"add a worker, {app} app", f"≥ 10x faster than {BASELINE}", fmt(value, ".1f", "x faster"),
                     _verdict(value, lambda v: v >= 10)])  # fmt: skip
    for app, mem_res in mem.items():
        value = mem_res.ratio(SUBJECT)
        rows.append([f"memory, {mem_res.workers} workers, {app} app", f"≤ 0.6x {BASELINE}", fmt(value, ".2f", "x"),
                     _verdict(value, lambda v: v <= 0.6)])  # fmt: skip
    if ins is not None:
        for app in ins.runs:
            value = ins.ratio(app)
            shown = fmt(value, ".3f", "x") + (f" (IQR {spread(ins.ratios(app))})" if value is not None else "")
            rows.append([f"metrics on vs --no-metrics, {app} app", f"≥ {instrumentation.TARGET}x", shown,
                         _verdict(value, lambda v: v >= instrumentation.TARGET)])  # fmt: skip
    if rl is not None:
        failed = rl.failed(SUBJECT)
        rows.append(["failed requests during SIGHUP reload", "0", fmt(failed, "d"),
                     _verdict(failed, lambda v: v == 0)])  # fmt: skip
    if ch is not None:
        no_ready, hung, recycled = ch.no_ready_seconds(SUBJECT), ch.timeouts(SUBJECT), ch.recycle_failed(SUBJECT)
        rows.append(["s with no ready worker, SIGKILL every 2 s", "0", fmt(no_ready, ".1f"),
                     _verdict(no_ready, lambda v: v == 0)])  # fmt: skip
        rows.append(["requests hung to the timeout, SIGKILL every 2 s", "0", fmt(hung, "d"),
                     _verdict(hung, lambda v: v == 0)])  # fmt: skip
        rows.append([f"failed requests, recycling every {chaos.RECYCLE_LIMIT} requests", "0", fmt(recycled, "d"),
                     _verdict(recycled, lambda v: v == 0)])  # fmt: skip
    if ov is not None:
        rows += ov.targets()
    note = (
        "\n\nThroughput ratios are medians of per-round ratios; with the machine's noise, a verdict whose"
        " IQR straddles the target is not settled by one run."
    )
    return "### asgiscale against its targets\n\n" + table(["figure", "target", "asgiscale", "verdict"], rows) + note


def _timed(label: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    print(f"\n== {label}", flush=True)
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--quick", action="store_true", help="one short round of everything (harness check)")
    parser.add_argument("--no-docs", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    servers = select_servers(args.servers.split(","))
    if SUBJECT not in {s.name for s in servers}:
        print(f"note: {SUBJECT} is not part of this run; the targets table will say 'not measured'", file=sys.stderr)
    # --preload changes when the app is imported, not how requests are served: it is compared
    # where import and memory sharing matter, and left out of the throughput runs.
    serving: list[Server] = [s for s in servers if s is not SERVERS["gunicorn-preload"]]

    started, started_at = time.perf_counter(), time.gmtime()
    quick = args.quick
    tp = {
        app: _timed(f"throughput, {app} app", throughput.run, serving, app, rounds=1 if quick else 8,
                    duration=2 if quick else 3)
        for app in ("raw", "fastapi")
    }  # fmt: skip
    su = {
        app: _timed(f"add a worker, {app} app", scale_up.run, servers, app, rounds=1 if quick else 3,
                    samples=1 if quick else 2)
        for app in ("fastapi", "heavy")
    }  # fmt: skip
    mem = {
        app: _timed(f"memory, {app} app", memory.run, servers, app, rounds=1 if quick else 2)
        for app in ("fastapi", "raw")
    }
    rl = _timed("rolling reload under load", reload.run, servers, "fastapi", rounds=1 if quick else 2)
    ch = None
    if {SUBJECT, BASELINE} <= {s.name for s in servers}:
        ch = _timed("chaos: SIGKILL every 2 s, recycling every 20 requests", chaos.run,
                    [SERVERS[SUBJECT], SERVERS[BASELINE]], "fastapi", duration=10 if quick else 40,
                    recycle_duration=6 if quick else 20)  # fmt: skip
    # asgiscale against itself: what its metrics cost and what a scrape costs.
    ins = sc = None
    if SUBJECT in {s.name for s in servers}:
        ins = _timed("metrics on vs --no-metrics", instrumentation.run, ["raw", "fastapi"], rounds=2 if quick else 10,
                     duration=2 if quick else 3)  # fmt: skip
        sc = _timed("scrape /metrics and /status, 16 workers", scrape.run, rounds=1 if quick else 4,
                    requests=20 if quick else 50, traffic=1 if quick else 3)  # fmt: skip
    # Open loop, 1 worker at 3 x its capacity, and the self-scaling step (they need uvicorn for C).
    ov = sg = None
    if {SUBJECT, BASELINE} <= {s.name for s in servers}:
        chosen = [v for v in overload.variants(1, 1) if v.command in {s.name for s in servers}]
        ov = _timed("overload, 1 worker at 3x capacity", overload.run_overload, chosen, rounds=1 if quick else 2,
                    duration=4 if quick else 8)  # fmt: skip
        sg = (
            _timed("self-scaling: load step", scaling.run_step, scaling.step_variants(), rounds=1 if quick else 2,
                   duration=8 if quick else 20),
            _timed("memory at idle, up to 8 workers", scaling.run_memory, rounds=1 if quick else 2),
        )  # fmt: skip
    sl = _timed("serverless adapter vs Mangum", serverless.run, **(serverless.QUICK if quick else serverless.FULL))
    elapsed = time.perf_counter() - started

    tables = [
        targets(tp, su, mem, rl, ins, ov, ch),
        *(r.markdown() for r in tp.values()),
        *(r.markdown() for r in su.values()),
        *(r.markdown() for r in mem.values()),
        rl.markdown(),
        *([ch.markdown()] if ch is not None else []),
        *(r.markdown() for r in (ins, sc, ov) if r is not None),
        *(r.markdown() for r in sg or ()),
        sl.markdown(),
    ]
    skipped = [name for name in args.servers.split(",") if name not in {s.name for s in servers}]
    facts = [f"wall time: {elapsed / 60:.1f} min" + (" (--quick)" if args.quick else "")]
    if skipped:
        facts.append("not installed, skipped: " + ", ".join(skipped))
    if sc is not None:
        facts.append(scrape.reference_versions())
    if ov is not None:
        facts.append(overload.GENERATOR)
    if ch is not None:
        facts += chaos.FACTS
    text = section(time.strftime("Run of %Y-%m-%d %H:%M UTC", started_at), servers, tables, facts)
    publish(text, to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
