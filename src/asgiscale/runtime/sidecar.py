"""The supervisor's helper processes (the admin server, the reload watcher): when to start them.

Pure, with the clock passed in. A helper runs from the first tick on (`due`); one that dies while
the service runs is started again with the common back-off (1, 2, 4 … 30 s, reset by 30 s
without a death). The workers never depend on a helper, so its death costs nothing else.

    >>> admin = Sidecar("admin server")
    >>> admin.due(now=0.0)
    True
    >>> admin.started(pid=42); admin.exited(now=5.0)
    1.0
    >>> admin.due(now=5.5), admin.due(now=6.0)
    (False, True)
"""

from __future__ import annotations

from asgiscale.runtime.backoff import Backoff


class Sidecar:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pid: int | None = None
        self._restarts = Backoff(first=1.0, maximum=30.0)

    def due(self, now: float) -> bool:
        """Whether to start it now."""
        return self.pid is None and self._restarts.due(now)

    def started(self, pid: int) -> None:
        self.pid = pid

    def start_failed(self, now: float) -> float:
        """It could not be started (a fork failed); the delay before the next attempt."""
        return self._restarts.failed(now)

    def exited(self, now: float) -> float:
        """It died; the delay before it is started again."""
        self.pid = None
        return self._restarts.failed(now)
