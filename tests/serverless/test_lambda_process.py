"""The handler in a real Python process, as Lambda's runtime holds it: loaded from
`asgiscale.serverless.entry` by `ASGISCALE_APP`, invoked several times, then ended by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.serverless.conftest import EVENTS

APP = """
import json, os

async def app(scope, receive, send):
    log = os.environ["LIFESPAN_LOG"]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            phase = message["type"].split(".")[1]
            with open(log, "a") as f:
                f.write(phase + "\\n")
            await send({"type": f"lifespan.{phase}.complete"})
            if phase == "shutdown":
                return
    await receive()
    body = json.dumps({"path": scope["path"], "root_path": scope["root_path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""

# Lambda's runtime loop, reduced: import the handler, answer invocations, wait to be ended.
RUNTIME = """
import json, sys, time
from asgiscale.serverless.entry import handler
event = json.load(open(sys.argv[1]))
for _ in range(3):
    print(json.dumps(handler(event, None)), flush=True)
print("idle", flush=True)
time.sleep(60)
"""


def _start(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    (tmp_path / "main.py").write_text(APP)
    (tmp_path / "runtime.py").write_text(textwrap.dedent(RUNTIME))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ASGISCALE_")}
    environment = {**inherited, "PYTHONPATH": str(tmp_path), "LIFESPAN_LOG": str(tmp_path / "lifespan.log"), **env}
    event = EVENTS / "aws-lambda-go/apigw-request.json"
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "runtime.py"), str(event)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_runs_the_lifespan_shutdown_once_after_many_invocations(tmp_path: Path) -> None:
    with _start(tmp_path, ASGISCALE_APP="main:app") as process:
        try:
            assert process.stdout is not None
            answers = [json.loads(process.stdout.readline()) for _ in range(3)]
            assert process.stdout.readline() == "idle\n"
            expected = {"path": "/testStage/hello/world", "root_path": "/testStage"}
            assert [json.loads(a["body"]) for a in answers] == [expected] * 3
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert (tmp_path / "lifespan.log").read_text() == "startup\nshutdown\n"


def test_the_root_path_variable_sets_the_base_path(tmp_path: Path) -> None:
    with _start(tmp_path, ASGISCALE_APP="main:app", ASGISCALE_ROOT_PATH="/hello") as process:
        try:
            assert process.stdout is not None
            answer = json.loads(json.loads(process.stdout.readline())["body"])
            assert answer == {"path": "/testStage/hello/world", "root_path": "/testStage/hello"}
        finally:
            process.kill()


def test_a_missing_or_wrong_app_is_one_clear_line(tmp_path: Path) -> None:
    for env, message in (
        ({}, "ImportError: ASGISCALE_APP is not set; set it to the app's import string, e.g. 'main:app'"),
        ({"ASGISCALE_APP": "main"}, "ImportError: ASGISCALE_APP='main' is not of the form 'module:attribute'"),
        ({"ASGISCALE_APP": "shop:app"}, "ImportError: ASGISCALE_APP='shop:app': no module named 'shop' in the package"),
        ({"ASGISCALE_APP": "main:api"}, "ImportError: ASGISCALE_APP='main:api': 'main' has no attribute 'api'"),
    ):
        with _start(tmp_path, **env) as process:
            _, stderr = process.communicate(timeout=30)
        assert process.returncode == 1
        assert stderr.strip().splitlines()[-1].startswith(message), stderr
