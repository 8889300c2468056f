"""`--reload`: a watcher process that asks the supervisor for a rolling reload on change.

It runs in its own forked process so the supervisor stays single-threaded, and it only
sends SIGHUP: a code change is handled exactly like `kill -HUP`, new code loaded in a
fresh pre-loaded process and rolled onto the workers without dropping a request.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from asgiscale.runtime._process import run_forked

logger = logging.getLogger("asgiscale.error")

WATCHED_SUFFIXES = (".py", ".pyx", ".pyd", ".toml", ".env")


def start(dirs: list[str], close_fds: list[int]) -> int:
    """Fork the watcher; returns its pid. `close_fds` are the supervisor's own descriptors."""
    supervisor = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    run_forked(close_fds, lambda: _watch(dirs, supervisor))


def _watch(dirs: list[str], supervisor: int) -> None:
    import watchfiles

    def relevant(change: watchfiles.Change, path: str) -> bool:
        return path.endswith(WATCHED_SUFFIXES) and "__pycache__" not in Path(path).parts

    for changes in watchfiles.watch(*dirs, watch_filter=relevant, rust_timeout=1000, yield_on_timeout=True):
        if os.getppid() != supervisor:
            return
        if changes:
            names = sorted({os.path.relpath(path) for _, path in changes})
            logger.info("Changed: %s; reloading.", ", ".join(names[:5]) + (" …" if len(names) > 5 else ""))
            os.kill(supervisor, signal.SIGHUP)
