"""The admin server of a real `asgiscale run`: metrics over every worker, probes, status."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asgiscale.runtime.shm import RETIRED_SERIES
from tests.utils import TLS, AsgiscaleProcess, get, is_alive, wait_for

COUNT = "http_server_request_duration_seconds_count"


def scrape(admin: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels -> value} of every sample, parsed by prometheus_client's own parser."""
    response = get(admin + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_status(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[tuple[str, str], float]:
    counts = samples["http_server_request_duration_seconds_count"]
    return {
        (dict(labels)["http_request_method"], dict(labels)["http_response_status_code"]): v
        for labels, v in counts.items()
    }


MIX = [("GET", "/", 200), ("GET", "/?status=404", 404), ("POST", "/?status=201", 201), ("GET", "/?status=503", 503)]


def test_scraped_counters_sum_exactly_over_workers_and_never_go_back_when_one_is_killed(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "3", "--no-access-log"], probe_dir) as server:
        workers = server.wait_workers(3)
        admin = server.admin_url
        sent = 0
        for method, path, status in itertools.islice(itertools.cycle(MIX), 200):
            # A new connection each time, so that every worker takes a share.
            response = httpx.request(method, server.url + path, headers={"connection": "close"}, timeout=10, verify=TLS)
            assert response.status_code == status
            sent += 1
        expected = {(method, str(status)): sent / len(MIX) for method, _, status in MIX}

        # Workers publish their counts on their 100 ms tick.
        def exact() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
            samples = scrape(admin)
            return samples if by_status(samples) == expected else None

        samples = wait_for(exact, 5, "exact counts")
        buckets = samples["http_server_request_duration_seconds_bucket"]
        assert sum(v for labels, v in buckets.items() if dict(labels)["le"] == "+Inf") == sent
        per_worker = {dict(labels)["pid"]: v for labels, v in samples["asgiscale_worker_http_requests_total"].items()}
        assert sum(per_worker.values()) == sent and len([v for v in per_worker.values() if v]) >= 2
        assert samples["asgiscale_workers"][(("state", "ready"),)] == 3

        victim = max(workers, key=lambda pid: per_worker[str(pid)])
        os.kill(victim, signal.SIGKILL)
        server.wait_workers(3, excluding={victim})
        after = scrape(admin)
        assert by_status(after) == expected
        assert str(victim) not in {dict(labels)["pid"] for labels in after["asgiscale_worker_http_requests_total"]}
        assert after["asgiscale_worker_restarts_total"][(("reason", "crash"),)] == 1
        status = get(admin + "/status", timeout=10).json()
        assert status["totals"]["requests"] == sent
        assert status["totals"]["by_status"] == {"200": 50, "201": 50, "404": 50, "503": 50}
        assert {w["pid"] for w in status["workers"]} == server.ready_workers()
        kinds = [e["event"] for e in status["events"]]
        assert kinds.count("spawn") == 4 and "crash" in kinds
        assert server.stop() == 0


def test_readyz_turns_503_at_sigterm_while_requests_are_still_served(probe_dir: Path) -> None:
    args = ["probe:app", "--workers", "2", "--shutdown-delay", "3", "--no-access-log"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(2)
        admin = server.admin_url
        assert get(admin + "/readyz").status_code == 200
        assert get(admin + "/healthz").status_code == 200
        server.send(signal.SIGTERM)
        unready = wait_for(lambda: (r := get(admin + "/readyz")).status_code == 503 and r, 2, "/readyz 503")
        assert "stopping" in unready.text
        # Load balancers see the service unready, and it still answers them meanwhile.
        assert server.get().status_code == 200
        assert get(admin + "/healthz").status_code == 200
        status = get(admin + "/status").json()
        assert status["supervisor"]["stage"] == "stopping" and status["supervisor"]["ready"] is False
        assert server.wait_exit(30) == 0


@pytest.mark.parametrize("check", ["probe:ready", "probe:ready_async"])
def test_the_apps_readiness_check_is_consulted(probe_dir: Path, check: str) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--readiness", check], probe_dir) as server:
        server.wait_workers(2)
        admin = server.admin_url
        response = get(admin + "/readyz")
        assert response.status_code == 503 and "--readiness check fails" in response.text
        assert get(admin + "/healthz").status_code == 200  # unready is not dead: nothing restarts
        server.wait_log(r"is not ready: the --readiness check failed \(it returned False\)")
        (probe_dir / "ready.flag").touch()
        wait_for(lambda: get(admin + "/readyz").status_code == 200, 10, "/readyz 200 once the check passes")
        # Ready as soon as one worker passes; each worker runs the check on its own tick.
        wait_for(
            lambda: [w["app_ready"] for w in get(admin + "/status").json()["workers"]] == [True, True],
            10,
            "the check to pass on both workers",
        )


def test_a_readiness_check_that_does_not_import_stops_the_start(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--readiness", "probe:nothing"], probe_dir) as server:
        assert server.wait_exit(30) == 3
        assert "Could not load the --readiness check" in server.log()


def test_admin_answers_only_its_own_paths(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app"], probe_dir) as server:
        server.wait_workers(1)
        admin = server.admin_url
        assert get(admin + "/nope").status_code == 404
        assert httpx.post(admin + "/metrics").status_code == 405
        assert get(admin + "/status?history=x").status_code == 400
        assert get(admin + "/", timeout=10).headers["content-type"].startswith("text/html")


def test_a_killed_admin_server_comes_back_on_the_same_address(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app"], probe_dir) as server:
        server.wait_workers(1)
        pid, admin = server.admin()
        os.kill(pid, signal.SIGKILL)
        server.wait_log("The admin server stopped")
        wait_for(lambda: not is_alive(pid), 5, "the old admin process to be gone")
        found = wait_for(lambda: _get(admin + "/readyz"), 10, "the new admin server")
        assert found.status_code == 200
        assert server.get().status_code == 200


def _get(url: str) -> httpx.Response | None:
    try:
        return get(url, timeout=2)
    except httpx.TransportError:
        return None


def test_admin_address_errors_are_one_line(probe_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with AsgiscaleProcess(["probe:app", "--admin", f"127.0.0.1:{port}"], probe_dir) as server:
            assert server.wait_exit(30) == 3
            errors = [line for line in server.log().splitlines() if "ERROR" in line]
            assert errors == [
                f"ERROR:    cannot listen on the admin address 127.0.0.1:{port}: the address is already in use; "
                "stop the other server or choose another --admin"
            ]
    result = subprocess.run(
        [sys.executable, "-m", "asgiscale", "run", "probe:app", "--admin", "localhost:http"],
        cwd=probe_dir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "asgiscale: error: 'admin' must be HOST:PORT (like 127.0.0.1:9000) or 'off', got 'localhost:http'"
    ]


def test_no_admin_runs_without_an_admin_process(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--no-admin"], probe_dir) as server:
        server.wait_workers(1)
        assert "Admin server" not in server.log()
        assert server.stop() == 0


def test_counters_never_go_back_with_more_pairs_than_the_retired_slot_holds_and_workers_recycling(
    probe_dir: Path,
) -> None:
    # 5 methods x 120 statuses: more (method, status) pairs than the retired slot has series, answered by workers
    # recycled every 40 requests; then the first 150 pairs again, which live and dead workers now share.
    pairs = [(method, status) for status in range(400, 520) for method in ("GET", "PUT", "POST", "DELETE", "PATCH")]
    args = ["probe:app", "--workers", "2", "--limit-max-requests", "40", "--no-access-log"]
    with AsgiscaleProcess(args, probe_dir) as server, httpx.Client(timeout=10, verify=TLS) as client:
        server.wait_workers(2)
        admin = server.admin_url
        seen: dict[str, float] = {}
        backwards: list[str] = []
        scrapes = 0

        def scrape_all() -> dict[str, float]:
            """Every request series of /metrics, and the request counts of /status; none may ever decrease."""
            nonlocal scrapes
            scrapes += 1
            # `name{labels} value` lines split by hand: prometheus_client's parser takes 0.5 s for these 500 kB.
            lines = get(admin + "/metrics", timeout=10).text.splitlines()
            current = {
                series: float(value)
                for series, value in (line.rsplit(" ", 1) for line in lines if line.startswith("http_server_request"))
            }
            totals = get(admin + "/status", timeout=10).json()["totals"]
            current["/status requests"] = totals["requests"]
            current.update({f"/status by_status {k}": v for k, v in totals["by_status"].items()})
            for key, before in seen.items():
                after = current.get(key)
                if after is None or after < before:
                    backwards.append(f"{key}: {before} -> {after}")
            seen.update(current)
            return current

        sent = 0
        for index, (method, status) in enumerate(pairs + pairs[:150]):
            # A new connection each time, so that both workers take a share.
            response = client.request(method, f"{server.url}/?status={status}", headers={"connection": "close"})
            assert response.status_code == status
            sent += 1
            if index % 20 == 0:
                scrape_all()
        # Every request is counted once the workers have published their last tick.
        final = wait_for(lambda: (s := scrape_all())["/status requests"] == sent and s, 10, f"{sent} requests")
        assert not backwards, f"{len(backwards)} decreases in {scrapes} scrapes, e.g. {backwards[:5]}"
        assert server.log().count("max-requests") >= 10, server.log()
        # The retired series all got a pair, and the pairs never seen before shared the overflow series.
        counts = {k: v for k, v in final.items() if k.startswith(COUNT)}
        assert counts.pop(COUNT + '{http_request_method="_OTHER",http_response_status_code="_OTHER"}') > 0
        assert RETIRED_SERIES - 1 <= len(counts) < len(pairs)


def refused(url: str, request: bytes) -> bytes:
    """What the server answers `request` on a raw connection, up to its close."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


GARBAGE = [
    b"this is not http\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    b"GET / HTTP/1.1\r\n:\r\n\r\n",
]


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_requests_the_http_parser_refuses_are_counted_and_kept_when_their_worker_dies(
    probe_dir: Path, http: str
) -> None:
    with AsgiscaleProcess(["probe:app", "--http", http, "--no-access-log"], probe_dir) as server:
        (worker,) = server.wait_workers(1)
        admin = server.admin_url
        assert server.get().status_code == 200
        for request in GARBAGE:
            assert refused(server.url, request).startswith(b"HTTP/1.1 400 "), request

        def malformed() -> float:
            return scrape(admin)["asgiscale_http_malformed_requests_total"][()]

        # Never taken for requests the app answered, whose count the pure-Python meter publishes on its next tick.
        wait_for(
            lambda: malformed() == len(GARBAGE) and by_status(scrape(admin)) == {("GET", "200"): 1},
            10,
            f"{len(GARBAGE)} malformed requests and the answered one in /metrics",
        )
        assert get(admin + "/status").json()["totals"]["malformed"] == len(GARBAGE)
        os.kill(worker, signal.SIGKILL)
        server.wait_workers(1, excluding={worker})
        assert malformed() == len(GARBAGE)
