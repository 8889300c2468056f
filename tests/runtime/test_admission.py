"""Admission control of a real `asgiscale run`: a bounded queue, 503 with Retry-After beyond it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from tests.runtime.test_admin import scrape
from tests.utils import AsgiscaleProcess, wait_for

pytestmark = pytest.mark.usefixtures("meter")  # admission lives in the meter's request hook: both meters


async def burst(url: str, count: int) -> list[httpx.Response]:
    """`count` requests at once, each on its own connection."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return list(await asyncio.gather(*(client.get(url) for _ in range(count))))


def test_beyond_the_limit_and_the_queue_requests_get_503_with_retry_after_and_nothing_hangs(probe_dir: Path) -> None:
    limit, queue = 4, 2
    args = ["probe:app", "--no-access-log", "--max-concurrency", str(limit), "--max-queue", str(queue)]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(1)
        responses = asyncio.run(burst(server.url + "/slow?ms=400", 3 * (limit + queue)))
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {200: limit + queue, 503: 2 * (limit + queue)}
        for response in responses:
            if response.status_code == 503:
                assert response.headers["retry-after"] == "5"
                assert "at capacity" in response.text
        # The admin server is its own process: a full worker never sheds a probe or a scrape.
        assert httpx.get(server.admin_url + "/healthz", timeout=5).status_code == 200

        def counted() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
            samples = scrape(server.admin_url)
            return samples if samples["asgiscale_requests_shed_total"][()] == 2 * (limit + queue) else None

        samples = wait_for(counted, 5, "the shed requests in /metrics")
        assert samples["asgiscale_queue_wait_seconds_count"][()] == queue
        assert samples["asgiscale_queue_wait_seconds_sum"][()] > 0
        counts = samples["http_server_request_duration_seconds_count"]
        assert counts[(("http_request_method", "GET"), ("http_response_status_code", "503"))] == 2 * (limit + queue)
        assert counts[(("http_request_method", "GET"), ("http_response_status_code", "200"))] == limit + queue

        # Once the burst is over the worker admits again.
        assert server.get("/").status_code == 200


def test_a_request_that_waits_longer_than_the_queue_timeout_gets_503(probe_dir: Path) -> None:
    args = ["probe:app", "--no-access-log", "--max-concurrency", "1", "--max-queue", "5", "--queue-timeout", "0.2"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(1)
        responses = asyncio.run(burst(server.url + "/slow?ms=1500", 3))
        assert sorted(r.status_code for r in responses) == [200, 503, 503]
        assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 503)
        samples = wait_for(
            lambda: (s := scrape(server.admin_url))["asgiscale_requests_shed_total"][()] == 2 and s,
            5,
            "two shed requests",
        )
        assert samples["asgiscale_queue_wait_seconds_count"][()] == 0


def test_without_a_limit_a_burst_is_served_in_full(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--no-access-log"], probe_dir) as server:
        server.wait_workers(1)
        responses = asyncio.run(burst(server.url + "/slow?ms=200", 30))
        assert Counter(r.status_code for r in responses) == {200: 30}


def requests_at_once(server: AsgiscaleProcess, path: str, count: int) -> list[int]:
    """`count` requests on connections opened (and accepted) beforehand, sent back to back, so
    the worker reads and parses them together before any of their tasks runs; their statuses."""
    (worker,) = server.ready_workers()
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(count)]
    try:

        def accepted() -> bool:
            connections = psutil.Process(worker).net_connections(kind="tcp")
            return (
                sum(c.laddr.port == server.port and c.status == psutil.CONN_ESTABLISHED for c in connections) == count
            )

        wait_for(accepted, 10, f"the worker to accept {count} connections")
        request = f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode()
        for sock in sockets:
            sock.sendall(request)
        statuses = []
        for sock in sockets:
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
            statuses.append(int(response.split(b" ", 2)[1]))
        return statuses
    finally:
        for sock in sockets:
            sock.close()


def test_a_worker_that_never_yields_still_admits_its_queue_and_recovers(probe_dir: Path) -> None:
    # CPU-bound requests finish before the queued request's task first runs: the place that
    # came free must go to it, or the queue stays blocked until the queue timeout refuses it.
    args = ["probe:app", "--no-access-log", "--max-concurrency", "1", "--max-queue", "1", "--queue-timeout", "30"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(1)
        started = time.monotonic()
        statuses = Counter(requests_at_once(server, "/cpu?ms=50", 12))
        # The kernel may hand the worker the requests in more than one read, so the split varies
        # (usually 2 served and 10 refused), but some request always waits in the queue.
        assert statuses[200] >= 2 and statuses[200] + statuses[503] == 12, statuses
        assert time.monotonic() - started < 20, "the queued request waited for its timeout"
        samples = wait_for(
            lambda: (s := scrape(server.admin_url))["asgiscale_requests_shed_total"][()] == statuses[503] and s,
            5,
            "the shed requests in /metrics",
        )
        assert samples["asgiscale_queue_wait_seconds_count"][()] >= 1
        assert [server.get("/").status_code for _ in range(5)] == [200] * 5
