"""Random SIGKILL of a ready worker every 2 s for 30 s under keep-alive load: the service heals each loss at once."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import time
from pathlib import Path

import pytest

from tests.chaos._load import ChaosLoad, recovery_times, watched
from tests.utils import AsgiscaleProcess

pytestmark = pytest.mark.chaos

WORKERS = 4
CLIENTS = 6
PERIOD = 2.0
DURATION = 30.0
# A forked worker serves within tens of milliseconds; a second allows for a machine with a core taken elsewhere.
HEAL_WITHIN = 1.0


def test_random_sigkill_every_2s_under_load_is_healed_within_1s_and_never_leaves_no_ready_worker(
    probe_dir: Path,
) -> None:
    rng = random.Random(17)
    args = ["probe:app", "--workers", str(WORKERS), "--no-access-log"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(WORKERS)
        kills: list[tuple[float, int]] = []
        with watched(server) as (sampler, _), ChaosLoad(server.url, clients=CLIENTS) as load:
            load.wait_requests(50)
            start = time.monotonic()
            for index in range(int(DURATION / PERIOD)):
                # Every 2 s on the clock, not 2 s after the last kill: a slow heal does not slow the chaos down.
                time.sleep(max(0.0, start + index * PERIOD - time.monotonic()))
                ready = sorted(server.ready_workers())
                if not ready:
                    continue  # nothing to kill: the outage shows in the sampler's gap
                victim = rng.choice(ready)
                os.kill(victim, signal.SIGKILL)
                kills.append((time.monotonic(), victim))
            # The last kill heals too before the load stops; if it does not, the heal times below say so.
            with contextlib.suppress(AssertionError):
                sampler.wait_sample(lambda s: len(s.ready) == WORKERS, 20, f"{WORKERS} ready workers at the end")
            answered = load.ok
            load.wait_requests(50)
        healed = recovery_times(sampler.samples, kills, WORKERS)
        measured = [t for t in healed if t is not None]
        gap = sampler.max_gap()
        median = statistics.median(measured) if measured else float("nan")
        print(
            f"\n{len(kills)} kills; heal times: median {median:.3f}s, max {max(measured, default=float('nan')):.3f}s,"
            f" unhealed before the next kill: {healed.count(None)}; longest time with no ready worker: {gap:.3f}s"
            f" over {len(sampler.samples)} samples; load: {load.summary()}"
        )
        slow = [(round(t, 3) if t is not None else None) for t in healed if t is None or t > HEAL_WITHIN]
        assert not slow, f"kills not healed within {HEAL_WITHIN}s: {slow} (all: {healed})\n{server.log()[-3000:]}"
        assert gap == 0, f"no ready worker for {gap:.3f}s"
        assert len(kills) == DURATION / PERIOD, f"only {len(kills)} kills: no ready worker at some kill times"
        # A request in flight on a killed worker is lost with its connection; nothing hangs, nothing else fails.
        assert load.timeouts == 0 and not load.statuses, load.summary()
        assert sum(load.connection_errors.values()) <= CLIENTS * len(kills), load.summary()
        assert answered > 0 and load.ok > answered
        assert server.stop() == 0
