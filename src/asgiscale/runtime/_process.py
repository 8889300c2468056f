"""What every process forked from the supervisor does first."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

# The signals the supervisor handles; a forked process must not inherit its handlers.
SUPERVISOR_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


def detach_from_supervisor(close_fds: list[int]) -> None:
    """In a fresh child: drop the supervisor's descriptors and signal handling.

    SIGINT is ignored: Ctrl-C belongs to the supervisor, which stops everything in order.
    """
    for fd in close_fds:
        os.close(fd)
    signal.set_wakeup_fd(-1)
    for sig in SUPERVISOR_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_forked(close_fds: list[int], body: Callable[[], int | None]) -> NoReturn:
    """The whole life of a helper process just forked from the supervisor: exit with the code
    `body` returns (0 for none), 1 with its traceback if it raises; never back into the
    supervisor's code."""
    code = 1
    try:
        detach_from_supervisor(close_fds)
        code = body() or 0
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)
