"""Lifecycle events: the supervisor's log records, forwarded to the admin process.

The supervisor already says everything worth knowing in its log ("Started worker",
"Worker ready", "Draining", "died", "Reloading"...). `EventForwarder` is a logging
handler that sends each of those records as one JSON line down a pipe to the admin
process, which keeps the recent ones for `/status` and the dashboard. Records carry an
`event` kind when they are given one (`logger.info(..., extra={"event": "spawn"})`).

The pipe never blocks the supervisor: a full pipe drops the line. Processes forked from
the supervisor inherit the handler; it stays silent outside the supervisor's own pid.
"""

from __future__ import annotations

import collections
import json
import logging
import os

KEPT = 200
MAX_MESSAGE = (
    600  # characters (6 bytes at most each, escaped); keeps every line under PIPE_BUF, so a write is all or nothing
)


class EventForwarder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.pid = os.getpid()
        self.recent: collections.deque[bytes] = collections.deque(maxlen=KEPT)
        self.fd = -1
        self.dropped = 0

    def connect(self, fd: int) -> None:
        """Send to a new admin process, starting with the recent events it missed."""
        self.fd = fd
        for line in list(self.recent):
            self._write(line)

    def disconnect(self) -> None:
        self.fd = -1

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self.pid:
            return
        event = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", ""),
            "message": record.getMessage()[:MAX_MESSAGE],
        }
        line = json.dumps(event).encode() + b"\n"
        self.recent.append(line)
        self._write(line)

    def _write(self, line: bytes) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, line)
        except BlockingIOError:
            self.dropped += 1
        except OSError:
            self.fd = -1  # the admin process is gone; the supervisor starts another
