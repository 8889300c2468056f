"""Nothing `asgiscale run` started outlives a supervisor killed with SIGKILL (no chance to clean up)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import psutil
import pytest

from tests.utils import AsgiscaleProcess, is_alive, wait_for


def test_the_preloaded_process_admin_server_and_reload_watcher_stop_by_themselves(probe_dir: Path) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2", "--reload"], probe_dir) as server:
        workers = server.wait_workers(2)
        server.wait_log("Watching")
        admin, _ = server.admin()
        helpers = {child.pid for child in psutil.Process(server.pid).children()} - workers
        # The admin server, the pre-loaded process (the leader of the workers' process group), the watcher.
        (preloaded,) = {os.getpgid(pid) for pid in workers}
        assert admin in helpers and preloaded in helpers and len(helpers) == 3
        os.kill(server.pid, signal.SIGKILL)
        server.wait_exit(10)
        # Each notices on its own: the pre-loaded process by its control socket's end, the others by their parent.
        wait_for(lambda: not any(is_alive(pid) for pid in helpers | workers), 15, "every orphaned process to stop")
        # No process is left holding the listener open.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
