"""Process plumbing: what every process forked from the supervisor does first, and the
supervisor's own signals, reaping and subreaper status."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import NoReturn

from asgiscale.runtime.fleet import Exit

PR_SET_CHILD_SUBREAPER = 36

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


def install_wakeup(handler: Callable[[int, object], None]) -> tuple[int, int]:
    """Route the supervisor's signals to a non-blocking pipe (read end, write end).

    The C-level handler writes each signal number to the pipe; the loop reads them there,
    so a signal never runs Python code in the middle of the supervisor's work.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    for sig in SUPERVISOR_SIGNALS:
        signal.signal(sig, handler)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    return read_end, write_end


def uninstall_wakeup(fds: tuple[int, int]) -> None:
    signal.set_wakeup_fd(-1)
    for sig in SUPERVISOR_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def become_subreaper() -> None:
    """Workers are forked by a pre-loaded process; this makes them our children once orphaned."""
    if not sys.platform.startswith("linux"):
        raise OSError("asgiscale run needs Linux (it relies on PR_SET_CHILD_SUBREAPER)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap() -> Iterator[tuple[int, Exit]]:
    """Every child that has ended, with how it ended; never blocks."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status):
            yield pid, Exit(signal=os.WTERMSIG(status))
        else:
            yield pid, Exit(code=os.waitstatus_to_exitcode(status))


def send(pid: int, sig: signal.Signals) -> None:
    """Signal `pid`, which may have ended already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
