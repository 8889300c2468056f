from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from asgiscale.config import Config
from asgiscale.runtime.sockets import BindError, bind, describe


def test_binds_tcp_and_reports_the_real_port() -> None:
    config = Config(port=0)
    sock = bind(config)
    try:
        assert describe(sock, config) == f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = socket.create_connection(sock.getsockname(), timeout=2)
        client.close()
    finally:
        sock.close()


def test_port_in_use() -> None:
    holder = bind(Config(port=0))
    port = holder.getsockname()[1]
    try:
        with pytest.raises(
            BindError, match=f"^cannot listen on http://127.0.0.1:{port}: the address is already in use"
        ):
            bind(Config(port=port))
    finally:
        holder.close()


def test_host_not_on_this_machine() -> None:
    with pytest.raises(BindError, match="192.0.2.1 is not an address of this machine"):
        bind(Config(host="192.0.2.1", port=0))


def test_stale_unix_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    live = bind(Config(uds=path))
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o666"
        with pytest.raises(BindError, match="another server is listening there"):
            bind(Config(uds=path))
    finally:
        live.close()


def test_uds_path_that_is_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("data")
    with pytest.raises(BindError, match="the path exists and is not a socket"):
        bind(Config(uds=str(path)))
    assert path.read_text() == "data"


def test_inherited_fd() -> None:
    original = bind(Config(port=0))
    try:
        sock = bind(Config(fd=original.fileno()))
        assert sock.getsockname() == original.getsockname()
        sock.detach()
    finally:
        original.close()


def test_fd_that_is_not_a_socket(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "file", os.O_CREAT | os.O_RDWR)
    try:
        with pytest.raises(BindError, match=f"cannot serve on file descriptor {fd}"):
            bind(Config(fd=fd))
    finally:
        os.close(fd)


def test_accepted_connections_get_tcp_nodelay_from_asyncio() -> None:
    # asyncio sets TCP_NODELAY on an accepted socket only when the listener says IPPROTO_TCP;
    # without it every small keep-alive response waits for Nagle's timer (--loop asyncio).
    import asyncio

    listener = bind(Config(host="127.0.0.1", port=0))
    assert listener.proto == socket.IPPROTO_TCP

    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(serve, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            value = await asyncio.wait_for(accepted, 5)
            writer.close()
        return value

    assert asyncio.run(main()) != 0
