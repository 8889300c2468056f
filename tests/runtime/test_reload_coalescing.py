"""A reload asked for while new code is still loading is not lost: the newest code loads next."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.utils import AsgiscaleProcess, set_probe_version, wait_for

# Appended to the probe: while `hold` exists, importing it blocks, so a generation stays loading until the test says.
HOLD = '\nimport os as _os, time as _time\nwhile _os.path.exists("hold"):\n    _time.sleep(0.01)\n'


def test_sighup_while_loading_loads_the_newest_code_once_the_load_ends(probe_dir: Path) -> None:
    probe = probe_dir / "probe.py"
    probe.write_text(probe.read_text() + HOLD)
    hold = probe_dir / "hold"
    with AsgiscaleProcess(["probe:app", "--workers", "1"], probe_dir) as server:
        old = server.wait_workers(1)
        hold.touch()
        set_probe_version(probe, "2")
        server.send(signal.SIGHUP)
        server.wait_log("Reloading: loading the new code")
        # A longer version: the source's size tells it from the bytecode cached a moment ago, in the same second.
        set_probe_version(probe, "30")
        server.send(signal.SIGHUP)
        # TTOU at one worker changes nothing but logs a line; sent after the SIGHUP, it is handled after it.
        server.send(signal.SIGTTOU)
        server.wait_log("Workers: staying at 1, the fewest allowed")
        assert server.log().count("Reloading:") == 1  # the second SIGHUP waits for the load under way
        hold.unlink()
        server.wait_log(r"Code loaded \(generation 3")
        server.wait_workers(1, timeout=30, excluding=old)
        wait_for(lambda: server.get().text.split()[0] == "30", 20, "the workers of generation 3 to answer")
        assert server.log().count("Reloading:") == 2
        assert server.stop() == 0
