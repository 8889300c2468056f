"""Signal storms on a live service under load: 20 SIGHUPs at once, then SIGTTIN/SIGTTOU ten times over.

Clients open a new connection for every request (`Connection: close`), so no request can be lost with a kept-alive
connection: a rolling reload and a scale-down drain gracefully, and not one request may fail.
"""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import pytest

from tests.chaos._load import ChaosLoad, watched
from tests.utils import AsgiscaleProcess, set_probe_version, wait_for

pytestmark = pytest.mark.chaos

WORKERS = 3
HUPS = 20
SCALE_ROUNDS = 10
SCALE_LINE = r"Workers: \d+ -> \d+ \(signal\)"


def test_sighup_and_ttin_ttou_storms_keep_every_request_answered(probe_dir: Path) -> None:
    rng = random.Random(17)
    args = ["probe:app", "--workers", str(WORKERS), "--no-access-log"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(WORKERS)
        with watched(server) as (sampler, _), ChaosLoad(server.url, clients=4, close=True) as load:
            load.wait_requests(50)
            first = sampler.wait_sample(lambda s: len(s.ready) == WORKERS, 20, "the first generation").generation

            set_probe_version(probe_dir / "probe.py", "2")
            for _ in range(HUPS):
                server.send(signal.SIGHUP)
                time.sleep(rng.uniform(0, 0.03))  # a burst, not one signal: some land during a load, some between
            newest = _wait_settled(server, WORKERS)
            assert newest > first
            load.wait_requests(50)

            scale_lines = len(re.findall(SCALE_LINE, server.log()))
            for _ in range(SCALE_ROUNDS):
                # Two signals of the same kind pending at once are delivered as one: the pair goes out back to back,
                # and the next pair once both were handled.
                server.send(signal.SIGTTIN)
                server.send(signal.SIGTTOU)
                scale_lines += 2
                wait_for(lambda n=scale_lines: len(re.findall(SCALE_LINE, server.log())) >= n, 20, "both handled")
            server.send(signal.SIGTTIN)
            server.wait_log(rf"Workers: {WORKERS} -> {WORKERS + 1} \(signal\)")
            assert _wait_settled(server, WORKERS + 1) == newest  # scaling loads no code
            load.wait_requests(50)
        print(f"\ngenerations {first} -> {newest}; longest time with no ready worker: {sampler.max_gap():.3f}s; "
              f"load: {load.summary()}")  # fmt: skip
        assert load.failed == 0, load.summary()
        assert sampler.max_gap() == 0
        assert {server.get().text.split()[0] for _ in range(10)} == {"2"}
        assert server.stop() == 0


def _wait_settled(server: AsgiscaleProcess, count: int) -> int:
    """Until every load asked for has ended and `count` workers of the newest generation serve; that generation."""

    def settled() -> int | None:
        log = server.log()
        if log.count("Reloading:") != log.count("Code loaded (") - 1:
            return None  # a load is under way
        status = server.status()
        if status is None:
            return None
        generation = int(status["supervisor"]["generation"])
        workers = [w for w in status["workers"] if w["state"] == "ready"]
        ready = {w["pid"] for w in workers} & server.ready_workers()
        if len(workers) == count == len(ready) and {w["generation"] for w in workers} == {generation}:
            if status["supervisor"]["target_workers"] == count:
                return generation
        return None

    return wait_for(settled, 60, f"{count} workers of the newest generation")  # type: ignore[no-any-return]
