"""Exponential back-off after consecutive failures, with the clock passed in.

One rule for everything the supervisor starts again (workers that fail to boot, the
pre-loaded process of the running code, the admin server, the reload watcher): the first
`free` failures are retried at once, each later one waits twice as long as the one
before (`first`, 2 × `first` … `maximum`), and `reset_after` seconds without a failure
start the count again.

    >>> backoff = Backoff(first=1.0, maximum=30.0)
    >>> backoff.failed(now=0.0), backoff.failed(now=1.0), backoff.due(2.5)
    (1.0, 2.0, False)
"""

from __future__ import annotations

import dataclasses

# Time with no failure after which the count starts again.
QUIET = 30.0


@dataclasses.dataclass
class Backoff:
    first: float
    maximum: float
    free: int = 0
    reset_after: float = QUIET
    failures: int = 0
    retry_at: float = 0.0
    last_failure_at: float | None = None

    def failed(self, now: float) -> float:
        """Count a failure at `now`; the delay before the next attempt."""
        if self.last_failure_at is not None and now - self.last_failure_at >= self.reset_after:
            self.failures = 0
        self.failures += 1
        self.last_failure_at = now
        beyond = self.failures - self.free
        delay = 0.0 if beyond <= 0 else min(self.first * 2 ** (beyond - 1), self.maximum)
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0
        self.last_failure_at = None

    def due(self, now: float) -> bool:
        return now >= self.retry_at
