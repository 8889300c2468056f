"""Bind the listening socket once, in the supervisor, with errors a user can act on."""

from __future__ import annotations

import errno
import os
import socket
import stat

from asgiscale.config import Config


class BindError(Exception):
    """The listener could not be created; the message names the address and the fix."""


def bind(config: Config) -> socket.socket:
    """The listening socket for `config`: inherited fd, UNIX socket, or host and port."""
    if config.fd is not None:
        return _from_fd(config.fd)
    if config.uds is not None:
        return _bind_unix(config.uds, config.backlog)
    return _bind_tcp(config.host, config.port, config.backlog, config.bind_description)


def bind_admin(host: str, port: int) -> socket.socket:
    """The admin server's listening socket."""
    shown = f"[{host}]" if ":" in host else host
    return _bind_tcp(host, port, 128, f"the admin address {shown}:{port}", flag="--admin")


def describe(sock: socket.socket, config: Config) -> str:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and config.fd is None:
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if config.ssl_certfile else 'http'}://{host}:{port}"
    return config.bind_description


def _from_fd(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"cannot serve on file descriptor {fd}: {exc.strerror}; pass an open, bound socket") from None
    if sock.type != socket.SOCK_STREAM:
        raise BindError(f"file descriptor {fd} is not a stream socket; pass a bound TCP or UNIX socket")
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    try:
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise BindError(f"cannot listen on unix:{path}: {exc.strerror}") from None
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {exc.strerror}") from None
    return sock


def _remove_stale(path: str) -> None:
    """Remove a socket file nobody listens on any more; refuse to touch anything else."""
    if not os.path.exists(path):
        return
    if not stat.S_ISSOCK(os.stat(path).st_mode):
        raise BindError(f"cannot listen on unix:{path}: the path exists and is not a socket; choose another --uds")
    probe = socket.socket(socket.AF_UNIX)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # left behind by a process that is gone
        return
    except OSError as exc:
        raise BindError(
            f"cannot listen on unix:{path}: the socket exists and cannot be probed ({exc.strerror}); "
            "remove it if no server uses it"
        ) from None
    finally:
        probe.close()
    raise BindError(f"cannot listen on unix:{path}: another server is listening there; stop it first")


def _bind_tcp(host: str, port: int, backlog: int, where: str, flag: str = "--port") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as exc:
        raise BindError(f"cannot listen on {where}: {_advice(exc, host, flag)}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {where}: {_advice(exc, host, flag)}") from None
    return sock


def _advice(exc: OSError, host: str, flag: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"the address is already in use; stop the other server or choose another {flag}"
    if exc.errno == errno.EACCES:
        return f"permission denied; ports below 1024 need privileges, choose a {flag} port above 1024"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its addresses"
    if isinstance(exc, socket.gaierror):
        return f"the host {host!r} cannot be resolved; check {'--host' if flag == '--port' else flag}"
    return exc.strerror or str(exc)
