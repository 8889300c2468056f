"""A deliberately small HTTP/1.1 client on asyncio streams.

The benchmarks need to control exactly when a connection is new and when it is reused, and to
tell "the server closed an idle keep-alive connection under us" apart from a real failure, which
a general-purpose client hides behind its pool.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

HOST = "127.0.0.1"
# What a request can fail with short of an HTTP answer: refused, reset or truncated connections,
# timeouts (an OSError since Python 3.11, listed for 3.10) and garbled responses.
REQUEST_ERRORS = (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
_PID = re.compile(rb"\d+")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    keep_alive: bool

    def pid(self) -> int:
        """The worker pid from a ``/pid`` answer, whether the app wrote it as text or JSON."""
        match = _PID.search(self.body)
        if match is None:
            raise ValueError(f"no pid in {self.body!r}")
        return int(match.group())


class StaleConnectionError(ConnectionError):
    """A reused keep-alive connection was closed before any byte of the response arrived.

    Clients (browsers, urllib3, httpx's retries) resend an idempotent request in that case, so
    the benchmarks retry it once on a fresh connection and count it apart from failures.
    """


class Connection:
    """One HTTP/1.1 connection to a loopback port, reusable while the server keeps it alive.

    >>> conn = await Connection.open(8000)
    >>> (await conn.get("/")).status
    200
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.requests = 0

    @classmethod
    async def open(cls, port: int, timeout: float = 5.0) -> Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        return cls(reader, writer)

    async def get(self, path: str, *, close: bool = False, timeout: float = 5.0) -> Response:
        return await asyncio.wait_for(self._get(path, close), timeout)

    async def _get(self, path: str, close: bool) -> Response:
        reused = self.requests > 0
        self.requests += 1
        connection = b"close" if close else b"keep-alive"
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: %s\r\n\r\n" % (path.encode(), HOST.encode(), connection)
        try:
            self._writer.write(request)
            await self._writer.drain()
            first = await self._reader.readexactly(1)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            if reused:
                raise StaleConnectionError(str(exc) or type(exc).__name__) from exc
            raise
        head = first + await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._read_chunked()
        else:
            body = await self._reader.read()
        keep_alive = not close and headers.get("connection") != "close"
        return Response(status, body, keep_alive)

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def fetch(port: int, path: str = "/", timeout: float = 5.0) -> Response:
    """One request on its own fresh connection (``Connection: close``)."""
    conn = await Connection.open(port, timeout)
    try:
        return await conn.get(path, close=True, timeout=timeout)
    finally:
        await conn.close()


async def sample_pids(port: int, concurrency: int, timeout: float = 5.0) -> set[int]:
    """Pids of the workers that accepted ``concurrency`` simultaneous fresh connections to ``/pid``."""
    results = await asyncio.gather(*(fetch(port, "/pid", timeout) for _ in range(concurrency)), return_exceptions=True)
    return {r.pid() for r in results if isinstance(r, Response) and r.status == 200}
