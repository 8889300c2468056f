"""The simulator against the real runtime: one short trace, replayed live under `asgiscale run`
and in the model, with the same config and the same policy object.

The probe app sleeps 50 ms per request; admission control runs 4 at once per worker and queues 8
more, so one worker carries 80 req/s. The trace steps from 30 to 150 req/s and back: the one
worker overloads and sheds, the HPA (1 s syncs, target concurrency=2) goes to 4 workers, and back
to 1 when the load falls. Requests leave at fixed times on fresh connections (as from many
clients), so the live run and the model see the same offered load. The live syncs fall at some
moment of the second; the model is given the same moment (read from the first scale event), since
where the step falls between two syncs shifts the reaction by up to a sync period.

The comparison is drawn to `.artifacts/fidelity.png` (the plot in docs/simulate.md). Live suite: the
10 % agreement holds on a quiet machine; the model's parts are unit-tested in tests/simulate/.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from asgiscale.bench.generator import Step, StepResult, Target, run_step
from asgiscale.config import Config
from asgiscale.simulate import policies
from asgiscale.simulate.cli import service_of
from asgiscale.simulate.model import PLATFORMS, simulate
from asgiscale.simulate.trace import Trace, parse_csv
from tests.utils import REPO, AsgiscaleProcess

ARTIFACTS = REPO / ".artifacts"
CONFIG = """
min_workers = 1
max_workers = 4
scale_targets = ["concurrency=2"]
scale_sync_period = 1.0
max_concurrency = 4
max_queue = 8
access_log = false

[scale.behavior.scaleDown]
stabilizationWindowSeconds = 3
"""
TRACE = "time,rps\n0,30\n6,150\n18,30\n30,30\n"
SERVICE_SECONDS = 0.05
STEP = 0.1  # the runtime samples its workers every 100 ms


def due_times(trace: Trace) -> list[float]:
    """Each step's requests spread evenly over it."""
    times: list[float] = []
    for k, (rate, _) in enumerate(trace.sample(STEP)):
        count = round(rate * STEP)
        times += [k * STEP + i * STEP / count for i in range(count)]
    return times


def replay_live(directory: Path, trace: Trace) -> tuple[StepResult, list[tuple[float, int]], list[float]]:
    """The trace against `asgiscale run`: the requests' result, (time, ready workers), scale event times."""
    times = due_times(trace)
    with AsgiscaleProcess(["probe:app"], directory) as server:
        server.wait_workers(1)
        status_url = server.admin_url + "/status"
        url = Target.parse(f"{server.url}/slow?ms={SERVICE_SECONDS * 1000:g}")
        step = Step(url, len(times) / trace.duration, trace.duration, times=tuple(times), keep_alive=False, timeout=10)
        samples: list[tuple[float, int]] = []
        begin, begin_wall = time.monotonic() + 0.2, time.time() + 0.2
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    workers = client.get(status_url).json()["workers"]
                    samples.append((time.monotonic() - begin, sum(w["state"] == "ready" for w in workers)))
                    stop.wait(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            result = run_step(step, start=begin)
        finally:
            stop.set()
            poller.join()
        events = httpx.get(status_url, timeout=5).json()["events"]
    scales = [e["time"] - begin_wall for e in events if e["event"] == "scale"]
    return result, samples, scales


def worker_seconds(samples: Sequence[tuple[float, float]], duration: float) -> float:
    """The integral of a step function given as (time, value) points, over [0, duration]."""
    total = 0.0
    for (t0, n), (t1, _) in zip(samples, [*samples[1:], (duration, 0.0)], strict=True):
        total += n * max(0.0, min(t1, duration) - max(t0, 0.0))
    return total


def test_simulated_workers_and_p99_agree_with_the_live_runtime(probe_dir: Path) -> None:
    (probe_dir / "asgiscale.toml").write_text(CONFIG)
    trace = parse_csv(TRACE, "fidelity.csv")
    result, live_samples, scales = replay_live(probe_dir, trace)
    assert scales, "the live runtime never scaled"
    assert result.sent == len(due_times(trace)) and not result.errors, result.errors

    config = Config.from_sources(env={}, cwd=probe_dir)
    platform = PLATFORMS["local"]
    flags = {"service_time": SERVICE_SECONDS, "capacity": None, "cpu_per_request": None, "timeout": 30.0}
    service = service_of(config, flags)
    assert service.capacity == 80.0  # 4 at once, 50 ms each
    sim = simulate(
        trace,
        policies.from_config(config, platform),
        service,
        platform,
        step=STEP,
        arrivals="constant",
        initial=1,
        points=10**6,
        sync_offset=scales[0] % config.scale_sync_period,
    )
    sim_samples = list(zip(sim.times, (float(n or 0) for n in sim.series["ready"]), strict=True))
    figures = {
        "worker_seconds": (worker_seconds(live_samples, trace.duration), worker_seconds(sim_samples, trace.duration)),
        "p99": ((result.latency.value_at(99) or 0) / 1e6, sim.summary["p99"]),
        "shed": (result.statuses.get(503, 0), sim.summary["shed"]),
        "max_workers": (max(n for _, n in live_samples), sim.summary["replicas_max"]),
    }
    _draw(trace, live_samples, sim_samples, figures)
    (ARTIFACTS / "fidelity.json").write_text(json.dumps(figures, indent=1))
    live_ws, sim_ws = figures["worker_seconds"]
    live_p99, sim_p99 = figures["p99"]
    assert abs(sim_ws - live_ws) <= 0.1 * live_ws, figures
    assert abs(sim_p99 - live_p99) <= 0.1 * live_p99, figures
    assert figures["max_workers"] == (4, 4), figures
    live_shed, sim_shed = figures["shed"]
    assert live_shed > 0 and sim_shed > 0, figures  # both overloaded before the scale-up


def _draw(
    trace: Trace, live: list[tuple[float, int]], simulated: list[tuple[float, float]], figures: dict[str, Any]
) -> None:
    from matplotlib.figure import Figure

    ARTIFACTS.mkdir(exist_ok=True)
    figure = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.step([t for t, _ in live], [n for _, n in live], where="post", label="asgiscale run (live)")
    axes.step([t for t, _ in simulated], [n for _, n in simulated], "--", where="post", label="asgiscale simulate")
    rates = axes.twinx()
    rates.step(trace.times, trace.rps, ":", color="grey", where="post", label="offered req/s")
    rates.set_ylabel("offered requests per second")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("ready workers")
    (live_ws, sim_ws), (live_p99, sim_p99) = figures["worker_seconds"], figures["p99"]
    axes.set_title(
        f"worker-seconds {live_ws:.1f} live, {sim_ws:.1f} simulated; "
        f"p99 {live_p99 * 1000:.0f} ms live, {sim_p99 * 1000:.0f} ms simulated",
        fontsize="medium",
    )
    axes.legend(loc="upper right", fontsize="small")
    rates.legend(loc="upper left", fontsize="small")
    figure.savefig(ARTIFACTS / "fidelity.png", format="png")
