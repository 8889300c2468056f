"""Self-scaling workers of a real `asgiscale run` under a step of slow concurrent requests."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from tests.runtime.test_admin import scrape
from tests.utils import AsgiscaleProcess, Load

# Scale-down waits 2 s of lower recommendations, then may remove every surplus worker at once.
BEHAVIOR = """
[scale.behavior.scaleDown]
stabilizationWindowSeconds = 2
policies = [{ type = "Percent", value = 100, periodSeconds = 1 }]
"""


def test_hpa_follows_a_load_step_up_and_back_down_without_failing_a_request(probe_dir: Path) -> None:
    (probe_dir / "asgiscale.toml").write_text(BEHAVIOR)
    args = ["probe:app", "--no-access-log", "--min-workers", "1", "--max-workers", "4"]
    args += ["--scale-target", "concurrency=2", "--scale-sync-period", "0.5"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(1)
        # 8 clients, each always waiting on a 100 ms request: 8 in flight against a target of
        # 2 per worker. The HPA wants ceil(8 / 2) = 4 workers; its default scale-up policy
        # (4 pods or 100 % per 15 s, the larger) allows that in one sync, or two when the load
        # starts part-way through a sync period.
        with Load(server.url, clients=8, path="/slow?ms=100", max_seconds=60) as load:
            up = server.wait_log(r"Workers: 1 -> (\d+) \(hpa: (.*)\)\.")
            assert re.search(r"concurrency [\d.]+/worker; .* ratio [\d.]+ -> \d", up[2]), up[0]
            server.wait_log(r"Workers: \d -> 4 \(hpa: ")
            server.wait_workers(4)
            load.wait_requests(100)
        assert load.failures == []
        # Load gone: the 2 s window passes, then the surplus drains (100 % per second allowed),
        # in one step or a few: a recommendation made while the last requests finished can be
        # the window's maximum for a while.
        server.wait_log(r"Workers: [2-4] -> 1 \(hpa: .*\)\.")
        steps = [(int(a), int(b)) for a, b in re.findall(r"Workers: (\d) -> (\d) \(hpa", server.log())]
        ups = sum(b > a for a, b in steps)
        downs = sum(b < a for a, b in steps)
        assert max(b for _, b in steps) == 4  # never above --max-workers
        assert steps[ups - 1][1] == 4 and all(b < a for a, b in steps[ups:]), steps  # up to 4, then only down
        server.wait_workers(1)
        samples = scrape(server.admin_url)
        assert samples["asgiscale_scale_decisions_total"] == {
            (("direction", "up"),): ups,
            (("direction", "down"),): downs,
        }
        assert samples["asgiscale_workers_desired"][()] == 1
        assert server.get("/").status_code == 200
        status = httpx.get(server.admin_url + "/status", timeout=10).json()
        assert status["scaling"] == {
            "policy": "hpa",
            "min_workers": 1,
            "max_workers": 4,
            "targets": ["concurrency=2"],
        }
        assert status["supervisor"]["scale_decisions"] == {"up": ups, "down": downs}
        assert [e["event"] for e in status["events"]].count("scale") == ups + downs


def test_kpa_scales_on_concurrency_too(probe_dir: Path) -> None:
    args = ["probe:app", "--no-access-log", "--min-workers", "1", "--max-workers", "3", "--scale-policy", "kpa"]
    args += ["--scale-target", "concurrency=2", "--scale-sync-period", "0.5"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(1)
        with Load(server.url, clients=6, path="/slow?ms=100", max_seconds=60) as load:
            up = server.wait_log(r"Workers: 1 -> (\d+) \(kpa: .*\)\.")
            assert int(up[1]) > 1, up[0]
            load.wait_requests(50)
        assert load.failures == []


def test_hpa_scales_on_the_rate_of_requests_that_arrived_before_any_is_answered(probe_dir: Path) -> None:
    # 6 requests of two minutes reach the one worker: `rps` counts them in the sync period they arrive, not when
    # they are answered, so the workers grow well before the first answer.
    args = ["probe:app", "--no-access-log", "--min-workers", "1", "--max-workers", "3"]
    args += ["--scale-target", "rps=1", "--scale-sync-period", "0.5"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(1)
        clients = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(6)]
        try:
            for client in clients:
                client.sendall(b"GET /slow?ms=120000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            up = server.wait_log(r"Workers: 1 -> (\d+) \(hpa: (.*)\)\.", timeout=60)
            assert int(up[1]) > 1 and re.search(r"rps [\d.]+/worker", up[2]), up[0]
            for client in clients:  # none answered yet, none closed
                client.setblocking(False)
                with pytest.raises(BlockingIOError):
                    client.recv(1)
        finally:
            for client in clients:
                client.close()
