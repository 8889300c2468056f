"""The admin server killed three times under load: it comes back on the same address each time, the app never stops
answering, and the counters it serves after each return carry on from where they were."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.chaos._load import ChaosLoad, watched
from tests.utils import ADMIN_LINE, AsgiscaleProcess, get, is_alive, wait_for

pytestmark = pytest.mark.chaos

KILLS = 3


def test_admin_server_killed_three_times_comes_back_and_the_app_never_stops_answering(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--no-access-log"], probe_dir) as server:
        server.wait_workers(2)
        admin_url = server.admin_url
        with watched(server) as (_, metrics), ChaosLoad(server.url, clients=4) as load:
            for kill in range(KILLS):
                admins = re.findall(ADMIN_LINE, server.log())
                assert len(admins) == kill + 1 and {url for _, url in admins} == {admin_url}
                pid = int(admins[-1][0])
                scrapes = metrics.history.scrapes
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda p=pid: not is_alive(p), 10, "the admin process to be gone")
                # It comes back after a back-off (1, 2, then 4 s): a new process, logged with its pid.
                wait_for(lambda n=kill + 2: len(re.findall(ADMIN_LINE, server.log())) == n, 30, "a new admin server")
                wait_for(lambda: _answers(admin_url + "/readyz"), 10, "the new admin server to answer")
                wait_for(lambda n=scrapes: metrics.history.scrapes > n + 2, 10, "scrapes of the new admin server")
                load.wait_requests(20)
        print(f"\nadmin restarts: {KILLS}; failed scrapes: {metrics.failed_scrapes}; load: {load.summary()}")
        assert load.failed == 0, load.summary()
        assert server.stop() == 0


def _answers(url: str) -> bool:
    try:
        return get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
