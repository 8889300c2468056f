"""Loading code has a deadline (`--startup-timeout`): a hung import never blocks the service or later reloads."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.utils import AsgiscaleProcess, set_probe_version, wait_for

# A hung import (a lock, a network call with no timeout); it leaves a mark first, so the test knows it hangs.
HANG = '\nimport pathlib as _p, time as _t\n_p.Path("hanging").touch()\n_t.sleep(3600)\n'


def test_a_reload_that_hangs_at_import_is_killed_and_a_later_reload_rolls_the_fixed_code(probe_dir: Path) -> None:
    probe = probe_dir / "probe.py"
    good = probe.read_text()
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--startup-timeout", "3"], probe_dir) as server:
        old = server.wait_workers(2)
        probe.write_text(good + HANG)
        server.send(signal.SIGHUP)
        wait_for((probe_dir / "hanging").exists, 20, "the new code to hang")
        # The fix is saved and asked for while the broken code still hangs: it waits for that load to end.
        probe.write_text(good)
        set_probe_version(probe, "22")
        server.send(signal.SIGHUP)
        server.wait_log(r"Reload failed: it did not finish within --startup-timeout \(3s\)", timeout=30)
        log = server.log()
        assert "Loading generation 2 takes longer than --startup-timeout (3s); its stack" in log
        assert 'probe.py", line' in log  # the stack the hung process dumped shows where the import hangs
        assert server.ready_workers() == old  # the running code served throughout
        server.wait_workers(2, timeout=30, excluding=old)
        wait_for(lambda: server.get().text.split()[0] == "22", 20, "the workers of generation 3 to answer")
        assert server.stop() == 0


def test_a_first_start_that_hangs_at_import_stops_at_the_deadline_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "hangs.py").write_text(HANG + "app = None\n")
    server = AsgiscaleProcess(["hangs:app", "--startup-timeout", "2"], tmp_path)
    with server:
        assert server.wait_exit(30) == 3
    log = server.log()
    assert "Stopping: could not load the app 'hangs:app': it did not finish within --startup-timeout (2s)." in log
    assert 'hangs.py", line 4' in log


def test_an_app_that_calls_sys_exit_at_import_exits_with_its_code(tmp_path: Path) -> None:
    (tmp_path / "quits.py").write_text("import sys\nprint('no database configured', file=sys.stderr)\nsys.exit(4)\n")
    server = AsgiscaleProcess(["quits:app"], tmp_path)
    with server:
        assert server.wait_exit(30) == 4
    log = server.log()
    assert "no database configured" in log
    assert "Stopping: could not load the app 'quits:app': it called sys.exit(4) while loading." in log
    assert "Traceback" not in log
