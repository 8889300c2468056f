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
