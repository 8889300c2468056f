"""The supervisor's side of the control socket of a pre-loaded process, against a fake one.

Each way a spawn request can end is its own exception, for the supervisor to act on: a failed fork
is an OSError with the reason (retried with the same process), no answer in time a TimeoutError
(the process is replaced: its late answer would be read as the next one's), a hang-up or an
answer out of turn a ConnectionError.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from asgiscale.runtime import preload
from asgiscale.runtime.preload import Preloader


@pytest.fixture
def pair() -> Iterator[tuple[Preloader, socket.socket]]:
    """A Preloader handle and the socket its (fake) pre-loaded process answers on."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    handle = Preloader(1, pid=0, control=ours)
    handle.reaped = True  # pid 0 is nobody's: stop() must not signal it
    try:
        yield handle, theirs
    finally:
        handle.stop()
        theirs.close()


def test_a_spawned_worker_is_its_pid(pair: tuple[Preloader, socket.socket]) -> None:
    handle, theirs = pair
    theirs.send(b"spawned 3 4242")  # queued: the answer is read after the request is sent
    assert handle.spawn(3) == 4242
    assert theirs.recv(64) == b"spawn 3"


def test_a_failed_fork_is_an_oserror_with_the_reason(pair: tuple[Preloader, socket.socket]) -> None:
    handle, theirs = pair
    theirs.send(b"failed 3 [Errno 11] Resource temporarily unavailable")
    with pytest.raises(OSError, match=r"^\[Errno 11\] Resource temporarily unavailable$") as caught:
        handle.spawn(3)
    assert not isinstance(caught.value, ConnectionError)  # the supervisor retries with the same process


@pytest.mark.parametrize("answer", [b"spawned 2 4242", b"spawned 3", b"what?"], ids=["other-slot", "short", "junk"])
def test_an_answer_out_of_turn_means_the_process_stopped_answering(
    pair: tuple[Preloader, socket.socket], answer: bytes
) -> None:
    handle, theirs = pair
    theirs.send(answer)
    with pytest.raises(ConnectionError, match="stopped answering"):
        handle.spawn(3)


def test_a_process_gone_is_a_connection_error(pair: tuple[Preloader, socket.socket]) -> None:
    handle, theirs = pair
    theirs.close()
    with pytest.raises(ConnectionError):
        handle.spawn(3)


def test_no_answer_is_a_timeout_and_the_socket_blocks_again(
    pair: tuple[Preloader, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    handle, _ = pair
    monkeypatch.setattr(preload, "SPAWN_TIMEOUT", 0.05)
    with pytest.raises(TimeoutError):
        handle.spawn(3)
    assert handle.control.gettimeout() is None  # the supervisor's loop waits on it with select


@pytest.mark.parametrize(
    ("message", "status"), [(b"loaded", "loaded"), (b"failed", "failed"), (b"exit 4", 4), (b"exit 0", 0), (None, None)]
)
def test_load_status(pair: tuple[Preloader, socket.socket], message: bytes | None, status: str | int | None) -> None:
    handle, theirs = pair
    if message is None:
        theirs.close()  # died while loading: its exit status tells why
    else:
        theirs.send(message)
    assert handle.read_status() == status
    assert handle.loaded is (status == "loaded")


def test_stop_signals_a_live_process_but_not_a_reaped_one(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []

    def kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        raise ProcessLookupError  # already gone: not an error

    monkeypatch.setattr(preload.os, "kill", kill)
    for reaped in (False, True):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        handle = Preloader(1, pid=123456, control=ours)
        handle.reaped = reaped
        handle.stop()
        assert ours.fileno() == -1
        theirs.close()
    assert [pid for pid, _ in sent] == [123456]
