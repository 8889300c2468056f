"""What every process forked from the supervisor does first."""

from __future__ import annotations

import os
import signal

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
