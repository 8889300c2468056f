"""Turning samples into the figures the benchmarks print: medians, ratios against the baseline, Markdown."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from _servers import BASELINE, REPO_DIR, Server, ServerFailedError

S = TypeVar("S")

DOCS_PATH = REPO_DIR / "docs" / "benchmarks.md"


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def paired_ratios(samples: dict[str, list[float | None]], name: str, baseline: str = BASELINE) -> list[float]:
    """``name``'s figure divided by the baseline's figure from the same round, for every round.

    Pairing by round cancels the slow drift of a noisy machine, which hits both servers of a
    round alike; a round where either side has no figure is left out.
    """
    if name not in samples or baseline not in samples:
        return []
    pairs = zip(samples[name], samples[baseline], strict=True)
    return [a / b for a, b in pairs if a is not None and b is not None and b != 0]


def paired_ratio(samples: dict[str, list[float | None]], name: str, baseline: str = BASELINE) -> float | None:
    """The median of :func:`paired_ratios`."""
    return median(paired_ratios(samples, name, baseline))


def spread(values: Sequence[float]) -> str:
    """The interquartile range as "low–high", or "n/a" with fewer than two values."""
    if len(values) < 2:
        return "n/a"
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return f"{low:.2f}–{high:.2f}"


def fmt(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rotated(items: Sequence[S], round_index: int) -> list[S]:
    """The round's running order: each server (or whatever takes turns) gets its turn at going first."""
    shift = round_index % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def take_turns(
    servers: Sequence[Server],
    rounds: int,
    measure: Callable[[Server, int], S],
    left_out: dict[str, str],
) -> dict[str, list[S]]:
    """`measure(server, round)` for every round, servers in rotated order; samples by server.

    A server that fails is left out (with its reason in `left_out`) and its samples dropped.
    """
    samples: dict[str, list[S]] = {}
    for r in range(rounds):
        for server in rotated(servers, r):
            if server.name in left_out:
                continue
            try:
                sample = measure(server, r)
            except ServerFailedError as exc:
                print(f"  {server.name}: {exc}")
                left_out[server.name] = exc.reason()
                samples.pop(server.name, None)
                continue
            samples.setdefault(server.name, []).append(sample)
    return {s.name: samples[s.name] for s in servers if s.name in samples}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return "missing"
    return (out.stdout + out.stderr).strip().splitlines()[0].split(" Copyright")[0]


def _code_version() -> str:
    """The commit asgiscale ran from, flagged when src/ had changes not committed yet."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True,
                              timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=REPO_DIR, capture_output=True, text=True,
                               timeout=10)  # fmt: skip
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return "unknown"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" with uncommitted changes in src/" if dirty.stdout.strip() else "")


def environment(servers: Sequence[Server]) -> str:
    """The machine and tool versions, as a Markdown list for the head of a results section."""
    facts = [
        f"machine: {os.cpu_count()} cores ({_cpu_model()}), Linux {platform.release()}",
        f"python: {platform.python_version()}",
        "servers: " + ", ".join(sorted({s.version() for s in servers})),
        "libraries: "
        + ", ".join(f"{p} {_package_version(p)}" for p in ("uvloop", "httptools", "uvicorn-worker", "fastapi")),
        f"load tool: {_wrk_version()}",
        f"asgiscale code: {_code_version()}",
    ]
    return "\n".join(f"- {fact}" for fact in facts)


INTRO = """\
# Benchmarks

asgiscale next to the servers people would otherwise pick, on the same app, the same worker
count and the same load tool. Servers take turns within **one run** (round-robin, the first
server changing every round), and each figure is also given as a **ratio to uvicorn `--workers`
from the same round**: the benchmark machines are small and noisy, so the absolute numbers move
from run to run while the ratios hold.

Run everything with `python benchmarks/run_all.py` (about 9 minutes on 2 cores); each run
appends a section below. How each figure is measured is in `benchmarks/README.md`.

Servers, all with access logs off and log level `warning`:

| name | command |
|---|---|
| asgiscale | `asgiscale run APP --workers N --host 127.0.0.1 --port P --admin 127.0.0.1:0` (as shipped) |
| uvicorn | `uvicorn APP --workers N --no-access-log` |
| gunicorn | `gunicorn APP -k uvicorn_worker.UvicornWorker --workers N` |
| gunicorn-preload | the same with `--preload` (app imported once in the master, workers forked from it) |
| granian | `granian --interface asgi --workers N APP` |

Reading the figures:

- *stale keep-alive, retried* (reload table): requests sent on a kept-alive connection that
  the server closed while it looked idle. The harness resends them once, as browsers do, so
  they are not counted as failed; a client that does not retry (many HTTP libraries, for
  non-idempotent methods) sees them fail. asgiscale's draining workers keep idle connections
  until their next request and answer it with `Connection: close`, hence its 0.
- *gunicorn-preload* matches asgiscale on adding a worker and on memory, because it also forks
  from a process that imported the app; but its reload forks from that same master, so it
  does not load new code (gunicorn's documentation of `preload_app` says as much), while
  asgiscale's reload loads the new code in a fresh pre-loaded process.
- *Instrumentation cost* and *scrape time* compare asgiscale with itself (metrics on against
  `--no-metrics`) and its admin server's `/metrics` with prometheus_client's multiprocess mode;
  they appear in `run_all.py` runs and in the sections that `instrumentation.py` and
  `scrape.py` append on their own.
"""


def append_to_docs(section: str, path: Path = DOCS_PATH) -> None:
    """Append one run's section to docs/benchmarks.md, writing the introduction first if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    if not existing.startswith("# Benchmarks"):
        existing = INTRO + ("\n" + existing if existing else "")
    path.write_text(existing.rstrip("\n") + "\n\n" + section.strip("\n") + "\n")


def publish(text: str, *, to_docs: bool) -> None:
    """Print a run's section and, unless told otherwise (--no-docs), append it to docs/benchmarks.md."""
    print("\n" + text + "\n")
    if to_docs:
        append_to_docs(text)
        print("appended to docs/benchmarks.md")


def section(title: str, servers: Sequence[Server], tables: Sequence[str], extra_facts: Sequence[str] = ()) -> str:
    """One run's results: a heading, the environment, then the tables."""
    facts = environment(servers) + "".join(f"\n- {fact}" for fact in extra_facts)
    return f"## {title}\n\n{facts}\n\n" + "\n\n".join(tables)
