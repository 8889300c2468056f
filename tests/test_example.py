"""The README's example app, served by a real `asgiscale run`."""

from __future__ import annotations

from pathlib import Path

from websockets.sync.client import connect

from tests.utils import REPO, AsgiscaleProcess


def test_example_app_under_asgiscale(tmp_path: Path) -> None:
    with AsgiscaleProcess(["examples.hello:app", "--workers", "2"], REPO, log_dir=tmp_path) as server:
        workers = server.wait_workers(2)
        assert server.get("/").json() == {"message": "Hello, World"}
        assert server.get("/pid", headers={"connection": "close"}).json()["pid"] in workers
        assert server.get("/slow?ms=50").json() == {"slept_ms": 50}
        assert server.get("/cpu?ms=5").json() == {"busy_ms": 5}
        with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            for text in ("hello", "asgiscale"):
                ws.send(text)
                assert ws.recv(timeout=5) == text
        assert server.stop() == 0
