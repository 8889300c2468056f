"""Recycling at full speed: `--limit-max-requests 20` with 4 workers under load for 30 s fails no request.

Each worker serves its 20 requests in a fraction of a second, so a replacement starts several times a second, and
keep-alive clients always hold connections to workers about to drain. A draining worker answers the request in
flight on a kept-alive connection with `Connection: close`, so neither kind of client sees a failure.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.chaos._load import ChaosLoad, watched
from tests.utils import AsgiscaleProcess

pytestmark = pytest.mark.chaos

WORKERS = 4
LIMIT = 20
DURATION = 30.0


def test_recycling_every_20_requests_for_30s_fails_no_request(probe_dir: Path) -> None:
    args = ["probe:app", "--workers", str(WORKERS), "--limit-max-requests", str(LIMIT), "--no-access-log"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(WORKERS)
        with (
            watched(server) as (sampler, _),
            ChaosLoad(server.url, clients=3) as kept,
            ChaosLoad(server.url, clients=3, close=True) as fresh,
        ):
            time.sleep(DURATION)  # the load and the watchers run meanwhile; there is no condition to wait for
            kept.wait_requests(10)
            fresh.wait_requests(10)
        recycled = len(re.findall(r"Draining worker \[\d+\] \(max-requests\)", server.log()))
        print(
            f"\n{recycled} workers recycled; longest time with no ready worker: {sampler.max_gap():.3f}s;\n"
            f"keep-alive: {kept.summary()}\nconnection close: {fresh.summary()}"
        )
        assert kept.failed == 0, kept.summary()
        assert fresh.failed == 0, fresh.summary()
        assert recycled >= 10
        assert sampler.max_gap() == 0
        assert server.stop() == 0
