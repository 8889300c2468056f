"""`asgiscale run` as users run it: real processes, real signals, real HTTP on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from tests.utils import AsgiscaleProcess, Load, get, is_alive, set_probe_version, wait_for


def test_serves_on_forked_workers_of_one_preloaded_process(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "3"], probe_dir) as server:
        workers = server.wait_workers(3)
        seen: set[int] = set()

        def answered_by_two() -> bool:
            # Which worker accepts is the kernel's choice: send a few at once until two have answered.
            with ThreadPoolExecutor(6) as pool:
                answers = pool.map(lambda _: server.get(headers={"connection": "close"}).text, range(12))
                seen.update(int(text.split()[1]) for text in answers)
            return len(seen) >= 2

        wait_for(answered_by_two, 30, "answers from two workers")
        assert seen <= workers
        supervisor = psutil.Process(server.pid)
        # Workers are the supervisor's own children (re-parented after the double fork) and
        # were forked from the pre-loaded process, not started from scratch.
        children = {c.pid for c in supervisor.children()}
        assert workers <= children
        admin_pid, _ = server.admin()
        (preloaded,) = children - workers - {admin_pid}
        # The pre-loaded process leads its own process group, inherited by what it forks.
        assert {os.getpgid(w) for w in workers} == {preloaded}
        assert server.stop() == 0


@pytest.mark.parametrize("how", ["SIGKILL", "exit-code"])
def test_dead_worker_is_replaced(probe_dir: Path, how: str) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        before = server.wait_workers(2)
        victim = min(before)
        if how == "SIGKILL":
            psutil.Process(victim).kill()
        else:
            with pytest.raises(httpx.HTTPError):
                for _ in range(50):  # until the request lands on a worker that exits
                    httpx.get(server.url + "/exit?code=7", headers={"connection": "close"})
            victim = wait_for(lambda: next(iter(before - server.ready_workers()), None), 10, "the worker to exit")
        after = server.wait_workers(2, excluding={victim})
        assert len(after - before) == 1
        assert "died while ready" in server.log()
        assert server.stop() == 0


def test_a_worker_that_dies_on_its_first_request_is_healed_not_taken_for_a_failed_start(probe_dir: Path) -> None:
    # The request waits in the listener's backlog (bound before any worker), so the first worker to start takes it
    # at once and dies within a millisecond of writing READY: before the supervisor's next 100 ms look at its slot.
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            wait_for(lambda: _connected(server.url), 20, "the listener")
            get(server.url + "/exit?code=7", headers={"connection": "close"}, timeout=20)
        server.wait_workers(2)
        assert "died while ready (exit code 7)" in server.log()
        assert "failed to start" not in server.log()
        assert server.get().status_code == 200
        assert server.stop() == 0


def test_a_worker_killed_again_and_again_is_replaced_at_once_every_time(probe_dir: Path) -> None:
    # Ten kills in a row of workers that were serving: each comes back at once; the boot back-off (0.1 … 10 s)
    # is for code that cannot start, and must never leave the service short of serving workers.
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        workers = server.wait_workers(2)
        for _ in range(10):
            victim = min(workers)
            psutil.Process(victim).kill()
            workers = server.wait_workers(2, timeout=5, excluding={victim})
        assert server.log().count("died while ready") == 10
        assert server.stop() == 0


def _connected(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def test_blocked_event_loop_is_killed_and_replaced(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--worker-timeout", "1"], probe_dir) as server:
        before = server.wait_workers(2)
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url + "/cpu?ms=20000", timeout=15)
        server.wait_log(r"Killing worker \[\d+\] \(its event loop was blocked")
        after = server.wait_workers(2)
        assert len(before - after) == 1
        # The dump taken just before the kill shows where the loop was stuck.
        assert 'File "' in server.log() and "probe.py" in server.log()
        assert server.stop() == 0


def test_import_error_stops_with_the_error_and_no_crash_loop(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import does_not_exist\n")
    server = AsgiscaleProcess(["broken:app", "--workers", "4"], tmp_path)
    with server:
        assert server.wait_exit(30) == 3
    log = server.log()
    assert "ModuleNotFoundError: No module named 'does_not_exist'" in log
    assert "Stopping: could not load the app 'broken:app'" in log
    assert "Started worker" not in log


def test_lifespan_startup_failure_stops_with_exit_3(probe_dir: Path) -> None:
    server = AsgiscaleProcess(["probe:app", "--workers", "3"], probe_dir, env={"PROBE_FAIL_STARTUP": "1"})
    with server:
        assert server.wait_exit(30) == 3
    log = server.log()
    assert "probe refuses to start" in log
    assert "failed to start (exit code 3)" in log
    assert log.count("Started worker") == 3  # the first batch only: no crash loop


def test_sigterm_drains_in_flight_requests_and_exits_0(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--graceful-timeout", "10"], probe_dir) as server:
        server.wait_workers(2)
        results: list[httpx.Response | Exception] = []

        def slow() -> None:
            try:
                results.append(httpx.get(server.url + "/slow?ms=1500", timeout=10))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results.append(exc)

        threads = [threading.Thread(target=slow) for _ in range(6)]
        for thread in threads:
            thread.start()
        server.wait_in_flight(6)
        started = time.monotonic()
        code = server.stop(30)
        for thread in threads:
            thread.join()
        assert code == 0
        assert [getattr(r, "status_code", r) for r in results] == [200] * 6
        assert time.monotonic() - started < 10  # exited once drained, not at the timeout
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url, timeout=2)


def test_shutdown_delay_keeps_serving_then_closes_the_listener(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--shutdown-delay", "2"], probe_dir) as server:
        server.wait_workers(2)
        server.send(signal.SIGTERM)
        stopped_at = time.monotonic()
        served_during_delay = 0
        while time.monotonic() - stopped_at < 1.5:
            assert server.get(headers={"connection": "close"}).status_code == 200
            served_during_delay += 1
        assert served_during_delay > 5
        assert server.wait_exit(30) == 0
        assert time.monotonic() - stopped_at >= 2
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url, timeout=2)


def test_graceful_timeout_kills_stragglers(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "1", "--graceful-timeout", "1"], probe_dir) as server:
        server.wait_workers(1)
        outcome: list[object] = []
        thread = threading.Thread(target=lambda: outcome.append(_swallow(lambda: server.get("/slow?ms=20000"))))
        thread.start()
        server.wait_in_flight(1)
        started = time.monotonic()
        assert server.stop(30) == 0
        assert time.monotonic() - started < 10
        thread.join(15)
        # The straggler was cut at the deadline: a 500 if its task was cancelled, else a dropped connection.
        (result,) = outcome
        assert getattr(result, "status_code", 500) == 500


def test_sighup_rolls_onto_new_code_without_failing_a_request(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "3"], probe_dir) as server:
        old = server.wait_workers(3)
        with Load(server.url, clients=6) as load:
            load.wait_requests(200)
            set_probe_version(probe_dir / "probe.py", "2")
            server.send(signal.SIGHUP)
            new = server.wait_workers(3, timeout=30, excluding=old)
            load.wait_requests(200)
        assert load.failures == []
        assert load.bodies["1"] > 0 and load.bodies["2"] > 0
        assert {server.get(headers={"connection": "close"}).text.split()[0] for _ in range(20)} == {"2"}
        assert len(new) == 3
        assert server.stop() == 0


def test_reload_with_broken_code_keeps_the_old_code_serving(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        old = server.wait_workers(2)
        (probe_dir / "probe.py").write_text("raise RuntimeError('half-written file')\n")
        server.send(signal.SIGHUP)
        server.wait_log("Reload failed: the code did not load")
        assert "RuntimeError: half-written file" in server.log()
        assert server.ready_workers() == old
        assert server.get().status_code == 200
        assert server.stop() == 0


def test_file_change_with_reload_flag_rolls_new_code(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--reload"], probe_dir) as server:
        old = server.wait_workers(2)
        server.wait_log("Watching")

        def changed() -> bool:
            # The watcher process logs "Watching" before its watch is set up: write again until it sees a change.
            set_probe_version(probe_dir / "probe.py", "3")
            return "Changed: probe.py; reloading." in server.log()

        wait_for(changed, 20, "the watcher to see the change", interval=0.5)
        server.wait_workers(2, timeout=30, excluding=old)
        assert server.get().text.split()[0] == "3"
        assert server.stop() == 0


def test_ttin_ttou_change_the_worker_count_never_below_one(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        server.wait_workers(2)
        with Load(server.url, clients=4) as load:
            server.send(signal.SIGTTIN)
            server.wait_workers(3)
            for target in (2, 1):
                # One signal at a time: two of the same kind pending at once are delivered as one.
                server.send(signal.SIGTTOU)
                server.wait_log(rf"Workers: {target + 1} -> {target} \(signal\)")
            server.send(signal.SIGTTOU)
            server.wait_log(r"Workers: staying at 1, the fewest allowed")
            server.wait_workers(1)
            load.wait_requests(100)
        assert load.failures == []
        assert len(server.ready_workers()) == 1
        assert server.stop() == 0


def test_max_requests_recycles_one_worker_at_a_time(probe_dir: Path) -> None:
    args = ["probe:app", "--workers", "3", "--limit-max-requests", "150", "--max-requests-jitter", "30"]
    with AsgiscaleProcess(args, probe_dir) as server:
        first = server.wait_workers(3)
        lowest = 3
        with Load(server.url, clients=4) as load:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and (len(server.ready_workers() - first) < 3 or load.ok < 600):
                lowest = min(lowest, len(server.ready_workers()))
                time.sleep(0.02)
        assert load.failures == []
        assert lowest >= 3, "capacity dropped: several workers recycled at once"
        assert server.log().count("(max-requests)") >= 3
        assert server.stop() == 0


def test_port_in_use_is_one_clear_line(probe_dir: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        server = AsgiscaleProcess(["probe:app"], probe_dir)
        server.args[server.args.index("--port") + 1] = str(port)
        with server:
            assert server.wait_exit(20) == 3
        assert (
            f"cannot listen on http://127.0.0.1:{port}: the address is already in use; stop the other server "
            "or choose another --port"
        ) in server.log()
        assert "Traceback" not in server.log()
    finally:
        holder.close()


def test_config_typo_is_rejected_before_anything_starts(probe_dir: Path) -> None:
    (probe_dir / "asgiscale.toml").write_text('app = "probe:app"\nworkres = 2\n')
    server = AsgiscaleProcess([], probe_dir)
    with server:
        assert server.wait_exit(20) == 2
    assert server.log().strip() == "asgiscale: error: unknown key 'workres' in asgiscale.toml; did you mean workers?"


def test_python_api_runs_the_same_supervisor(probe_dir: Path) -> None:
    script = probe_dir / "serve.py"
    server = AsgiscaleProcess([], probe_dir)
    script.write_text(
        f"import asgiscale\nasgiscale.run('probe:app', workers=2, host='127.0.0.1', port={server.port})\n"
    )
    with server.log_path.open("wb") as log:
        server.proc = subprocess.Popen(
            [sys.executable, str(script)], cwd=probe_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    with server:
        server.wait_workers(2)
        assert server.get().status_code == 200
        assert server.stop() == 0


def _refused(url: str) -> bool:
    """True once a connection is refused; False while one is still served, or reset in the listener's backlog as it
    closes; a connection left hanging raises ReadTimeout."""
    try:
        get(url, timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.RemoteProtocolError:
        return False
    return False


def _swallow(call):  # type: ignore[no-untyped-def]
    try:
        return call()
    except Exception as exc:  # noqa: BLE001
        return exc


def test_workers_stop_when_the_supervisor_is_killed(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        workers = server.wait_workers(2)
        os.kill(server.pid, signal.SIGKILL)
        server.wait_exit(10)
        wait_for(lambda: not any(is_alive(w) for w in workers), 15, "orphaned workers to stop")


def test_env_file_is_read_by_each_new_generation(probe_dir: Path) -> None:
    env_file = probe_dir / "app.env"
    env_file.write_text("PROBE_GREETING=first\n")
    with AsgiscaleProcess(["probe:app", "--env-file", str(env_file)], probe_dir) as server:
        old = server.wait_workers(1)
        assert server.get("/env?name=PROBE_GREETING").text == "first"
        env_file.write_text("PROBE_GREETING=second\n")
        server.send(signal.SIGHUP)
        server.wait_workers(1, excluding=old)
        assert server.get("/env?name=PROBE_GREETING").text == "second"
        assert server.stop() == 0


def test_unix_socket_listener_is_removed_on_exit(probe_dir: Path) -> None:
    path = probe_dir / "app.sock"
    with AsgiscaleProcess(["probe:app", "--uds", str(path), "--workers", "2"], probe_dir) as server:
        server.wait_workers(2)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
            assert client.get("http://probe/").status_code == 200
        assert server.stop() == 0
    assert not path.exists()


def test_worker_stuck_in_startup_stops_the_first_start(probe_dir: Path) -> None:
    args = ["probe:app", "--workers", "2", "--startup-timeout", "1"]
    with AsgiscaleProcess(args, probe_dir, env={"PROBE_HANG_STARTUP": "1"}) as server:
        assert server.wait_exit(30) == 3
    assert "it was not ready within --startup-timeout" in server.log()


def test_listener_refuses_connections_once_closed_even_with_reload(probe_dir: Path) -> None:
    args = ["probe:app", "--reload", "--shutdown-delay", "0", "--graceful-timeout", "10"]
    with AsgiscaleProcess(args, probe_dir) as server:
        server.wait_workers(1)
        server.wait_log("Watching")
        holder = threading.Thread(target=lambda: _swallow(lambda: server.get("/slow?ms=3000")))
        holder.start()
        server.wait_in_flight(1)
        server.send(signal.SIGTERM)
        server.wait_log("Closing the listener")
        # Still draining the slow request, yet new connections are refused, not left hanging.
        wait_for(lambda: _refused(server.url), 5, "new connections to be refused")
        assert server.proc is not None and server.proc.poll() is None
        holder.join(15)
        assert server.wait_exit(30) == 0


def test_lost_preloaded_process_is_replaced_and_workers_still_heal(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        workers = server.wait_workers(2)
        (preloaded,) = {c.pid for c in psutil.Process(server.pid).children()} - workers - {server.admin()[0]}
        os.kill(preloaded, signal.SIGKILL)
        server.wait_log(r"The pre-loaded process \[\d+\] died")
        server.wait_log("Code loaded \\(generation 2")
        # The new pre-loaded process rolls the workers onto the code on disk, then heals them as before.
        fresh = server.wait_workers(2, timeout=30, excluding=workers)
        psutil.Process(min(fresh)).kill()
        server.wait_workers(2, excluding={min(fresh)})
        assert server.get().status_code == 200
        assert server.stop() == 0
