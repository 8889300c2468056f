"""The Cloud Functions adapter: the WSGI-to-ASGI mapping as pure functions, the adapter in
Flask's test client, and a real `functions-framework` process (gunicorn, several threads)
serving an app with a lifespan, hit over loopback."""

from __future__ import annotations

import base64
import concurrent.futures
import logging
import os
import signal
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import flask
import httpx
import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgiscale.serverless._http import Reply
from asgiscale.serverless._wsgi import raw_path, request_from_environ, response_headers
from asgiscale.serverless.gcp import CloudFunction, cloud_function
from tests.serverless.conftest import echo_app
from tests.utils import free_port, is_alive, wait_for

FUNCTIONS_FRAMEWORK = Path(sys.executable).parent / "functions-framework"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# --- the mapping, pure ---------------------------------------------------------------


def gunicorn_environ(uri: str, *headers: tuple[str, str], **extra: str) -> dict[str, Any]:
    """An environ as gunicorn builds it: `RAW_URI` with the query, headers as `HTTP_*`."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": uri,
        "QUERY_STRING": uri.partition("?")[2],
        "PATH_INFO": unquote_to_bytes(uri.partition("?")[0]).decode("latin-1"),
        "SCRIPT_NAME": "",
        "SERVER_NAME": "0.0.0.0",
        "SERVER_PORT": "8080",
        "REMOTE_ADDR": "169.254.1.1",
        "REMOTE_PORT": "40000",
        "wsgi.url_scheme": "http",
    }
    for name, value in headers:
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ.update(extra)
    return environ


def test_the_path_is_kept_as_sent_and_decoded_once() -> None:
    environ = gunicorn_environ("/a%2Fb/c%20d?x=%2F&y=1&y=2", ("Host", "fn.example"))
    request = request_from_environ(environ, b"")
    scope = request.scope(None, {})
    assert (scope["path"], scope["raw_path"], scope["root_path"]) == ("/a/b/c d", b"/a%2Fb/c%20d", "")
    assert scope["query_string"] == b"x=%2F&y=1&y=2"


def test_bytes_a_server_passes_raw_are_escaped_once() -> None:
    # A WSGI string holds the bytes as latin-1: é sent as UTF-8 is two bytes, two escapes.
    utf8 = "/caf\u00e9".encode().decode("latin-1")
    environ = gunicorn_environ(utf8 + " x?q=\u00e9".encode().decode("latin-1"))
    request = request_from_environ(environ, b"")
    assert request.target == "/caf%C3%A9%20x"
    assert request.query == "q=%C3%A9"
    assert request.scope(None, {})["path"] == "/caf\u00e9 x"


def test_without_a_raw_uri_the_decoded_path_is_escaped_again() -> None:
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/a/100%/caf\u00c3\u00a9 x"}
    assert raw_path(environ) == "/a/100%25/caf%C3%A9%20x"


def test_an_absolute_form_target_gives_its_path() -> None:
    assert raw_path({"RAW_URI": "http://fn.example/a%2Fb?q=1"}) == "/a%2Fb"
    assert raw_path({"RAW_URI": "http://fn.example"}) == "/"


@given(st.binary(max_size=40).filter(lambda raw: b"?" not in raw and b"#" not in raw))
def test_escaping_never_changes_what_a_path_means(raw: bytes) -> None:
    target = request_from_environ({"RAW_URI": "/" + raw.decode("latin-1")}, b"").target
    assert target.isascii() and " " not in target
    assert unquote_to_bytes(target) == unquote_to_bytes(b"/" + raw)


def test_headers_are_lower_cased_in_order_with_repeats_as_the_server_joined_them() -> None:
    environ = gunicorn_environ(
        "/",
        ("Host", "fn.example"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("Content-Type", "application/json"),
        ("Cookie", "a=1; b=2"),
        ("X-Latin", "caf\u00e9"),
        CONTENT_LENGTH="",
    )
    headers = request_from_environ(environ, b"").headers
    assert headers == [
        (b"host", b"fn.example"),
        (b"x-multi", b"a,b"),
        (b"content-type", b"application/json"),
        (b"cookie", b"a=1; b=2"),
        (b"x-latin", b"caf\xe9"),
    ]


@pytest.mark.parametrize(
    ("hops", "forwarded", "client"),
    [
        (0, "6.6.6.6, 203.0.113.7", ("169.254.1.1", 40000)),
        # A client's own X-Forwarded-For comes first; Google's front end appends the peer.
        (1, "6.6.6.6, 203.0.113.7", ("203.0.113.7", 0)),
        (1, "203.0.113.7", ("203.0.113.7", 0)),
        # Behind an external Application Load Balancer: `<client>, <load balancer>`.
        (2, "6.6.6.6, 203.0.113.7, 34.120.0.1", ("203.0.113.7", 0)),
        (3, "203.0.113.7, 34.120.0.1", ("203.0.113.7", 0)),
        (1, None, ("169.254.1.1", 40000)),
    ],
)
def test_the_client_is_counted_from_the_end_of_x_forwarded_for(
    hops: int, forwarded: str | None, client: tuple[str, int]
) -> None:
    headers = [("X-Forwarded-For", forwarded)] if forwarded else []
    assert request_from_environ(gunicorn_environ("/", *headers), b"", trusted_hops=hops).client == client


def test_without_a_peer_there_is_no_client() -> None:
    assert request_from_environ({"RAW_URI": "/"}, b"").client is None


def test_the_forwarded_scheme_counts_only_behind_a_trusted_proxy() -> None:
    environ = gunicorn_environ("/", ("Host", "fn-abc-uc.a.run.app"), ("X-Forwarded-Proto", "https"))
    behind = request_from_environ(environ, b"", trusted_hops=1)
    assert (behind.scheme, behind.server) == ("https", ("fn-abc-uc.a.run.app", 443))
    direct = request_from_environ(environ, b"")
    assert (direct.scheme, direct.server) == ("http", ("fn-abc-uc.a.run.app", 80))
    odd = gunicorn_environ("/", ("X-Forwarded-Proto", "gopher"))
    assert request_from_environ(odd, b"", trusted_hops=1).scheme == "http"


def test_without_a_host_header_the_server_is_the_wsgi_one() -> None:
    assert request_from_environ(gunicorn_environ("/"), b"").server == ("0.0.0.0", 8080)


@pytest.mark.parametrize(
    ("uri", "root_path", "path"),
    [
        # A cloudfunctions.net URL delivers the path without the function's name ...
        ("/users/1", "/fn", "/fn/users/1"),
        ("/", "/fn", "/fn/"),
        # ... another route may keep it: either way the app sees the same scope.
        ("/fn/users/1", "/fn", "/fn/users/1"),
        ("/fn", "/fn", "/fn"),
    ],
)
def test_the_base_path_becomes_the_root_path(uri: str, root_path: str, path: str) -> None:
    scope = request_from_environ({"RAW_URI": uri}, b"", base_path="/fn").scope(None, {})
    assert (scope["root_path"], scope["path"]) == (root_path, path)


def test_every_response_header_is_kept_but_those_about_the_connection() -> None:
    reply = Reply(
        200,
        [
            (b"Set-Cookie", b"a=1; Path=/"),
            (b"content-type", b"text/plain"),
            (b"set-cookie", b"b=2; HttpOnly"),
            (b"connection", b"keep-alive"),
            (b"transfer-encoding", b"chunked"),
            (b"content-length", b"999"),
        ],
        b"hello",
    )
    assert response_headers(reply, "GET") == [
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; HttpOnly"),
        ("content-type", "text/plain"),
        ("Content-Length", "5"),
    ]


def test_a_response_without_a_body_keeps_the_length_the_app_declared() -> None:
    declared = Reply(200, [(b"content-length", b"42")], b"")
    assert response_headers(declared, "HEAD") == [("Content-Length", "42")]
    assert response_headers(Reply(304, [(b"content-length", b"42")], b""), "GET") == [("Content-Length", "42")]
    assert response_headers(Reply(200, [], b""), "HEAD") == []
    assert response_headers(Reply(204, [(b"content-length", b"0")], b""), "DELETE") == []


# --- the adapter in Flask's test client ------------------------------------------------


def flask_client(adapter: CloudFunction) -> Any:
    """A Flask app routing every path to `adapter`, as functions-framework does."""
    app = flask.Flask("gcp-test")

    def run(path: str) -> flask.Response:
        return adapter(flask.request)

    app.add_url_rule("/", "run", run, defaults={"path": ""}, methods=METHODS)
    app.add_url_rule("/<path:path>", "run", run, methods=METHODS)
    return app.test_client()


@pytest.fixture
def adapters() -> Iterator[Callable[..., CloudFunction]]:
    made: list[CloudFunction] = []

    def make(app: Any, **options: Any) -> CloudFunction:
        made.append(CloudFunction(app, **options))
        return made[-1]

    yield make
    for adapter in made:
        adapter.close()


def test_the_scope_from_a_flask_request(adapters: Callable[..., CloudFunction]) -> None:
    client = flask_client(adapters(echo_app, trusted_hops=0))
    client.set_cookie("a", "1")
    client.set_cookie("b", "2")
    body = bytes(range(256))
    response = client.post(
        "/a%2Fb/c d?x=%2F&y=1&y=2",
        data=body,
        headers=[("Content-Type", "application/octet-stream"), ("X-Custom", "Value")],
        environ_base={"REMOTE_ADDR": "192.0.2.10", "REMOTE_PORT": "5555"},
    )
    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2"]
    seen = response.get_json()
    assert seen["method"] == "POST"
    assert (seen["path"], seen["raw_path"], seen["root_path"]) == ("/a/b/c d", "/a%2Fb/c%20d", "")
    assert seen["query_string"] == "x=%2F&y=1&y=2"
    assert seen["client"] == ["192.0.2.10", 5555]
    assert seen["server"] == ["localhost", 80]
    assert seen["scheme"] == "http"
    assert base64.b64decode(seen["body"]) == body
    headers = [tuple(pair) for pair in seen["headers"]]
    assert ("x-custom", "Value") in headers
    assert ("cookie", "a=1; b=2") in headers
    assert ("content-type", "application/octet-stream") in headers
    assert ("content-length", "256") in headers
    assert seen["state"] == ["startups"]


def test_the_lifespan_starts_once_for_every_request(adapters: Callable[..., CloudFunction]) -> None:
    adapter = adapters(echo_app)
    client = flask_client(adapter)
    for _ in range(5):
        assert client.get("/").status_code == 200
    runtime = adapter._current()
    assert runtime.lifespan.state == {"startups": 1}


def test_an_app_without_a_content_type_gets_none_added(adapters: Callable[..., CloudFunction]) -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"\x00\xff"})

    response = flask_client(adapters(bare, lifespan="off")).put("/")
    assert (response.status_code, response.data) == (201, b"\x00\xff")
    assert "Content-Type" not in response.headers
    assert response.headers["Content-Length"] == "2"


def test_a_failed_startup_answers_503_until_one_succeeds(
    adapters: Callable[..., CloudFunction], caplog: pytest.LogCaptureFixture
) -> None:
    attempts = 0

    async def flaky(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal attempts
        if scope["type"] == "lifespan":
            await receive()
            attempts += 1
            if attempts == 1:
                await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    client = flask_client(adapters(flaky))
    with caplog.at_level(logging.ERROR, "asgiscale.error"):
        first = client.get("/")
    assert (first.status_code, first.data) == (503, b"Service Unavailable")
    assert "the app's lifespan startup failed: database unreachable" in caplog.text
    second = client.get("/")
    assert (second.status_code, second.data) == (200, b"ok")
    assert attempts == 2


def test_lifespan_on_with_an_app_without_lifespan_answers_503(
    adapters: Callable[..., CloudFunction], caplog: pytest.LogCaptureFixture
) -> None:
    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "no lifespan here"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with caplog.at_level(logging.ERROR, "asgiscale.error"):
        assert flask_client(adapters(http_only, lifespan="on")).get("/").status_code == 503
    assert "does not support the lifespan protocol" in caplog.text
    assert flask_client(adapters(http_only)).get("/").status_code == 200


def test_close_runs_the_shutdown_once() -> None:
    phases: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                phase = (await receive())["type"].split(".")[1]
                phases.append(phase)
                await send({"type": f"lifespan.{phase}.complete"})
                if phase == "shutdown":
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    adapter = CloudFunction(app)
    assert flask_client(adapter).get("/").status_code == 204
    adapter.close()
    adapter.close()
    assert phases == ["startup", "shutdown"]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="lifespan mode"):
        CloudFunction(echo_app, lifespan="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must start with '/'"):
        CloudFunction(echo_app, base_path="api")
    with pytest.raises(ValueError, match="trusted_hops"):
        CloudFunction(echo_app, trusted_hops=-1)


def test_forwarded_headers_are_trusted_by_default_only_on_googles_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("K_SERVICE", raising=False)
    assert CloudFunction(echo_app).trusted_hops == 0
    monkeypatch.setenv("K_SERVICE", "echo")
    assert CloudFunction(echo_app).trusted_hops == 1


def test_cloud_function_is_a_plain_function() -> None:
    # functions-framework refuses a target that is not of types.FunctionType.
    assert isinstance(cloud_function(echo_app), types.FunctionType)


def test_importing_the_package_does_not_load_flask() -> None:
    check = "import sys, asgiscale.serverless; assert 'flask' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=30)


# --- a real functions-framework process --------------------------------------------------

MAIN = """
import asyncio, base64, json, os, threading
from asgiscale.serverless.gcp import cloud_function

MARKER = os.environ["LIFESPAN_LOG"]
STARTUPS = 0
FAILURES_LEFT = int(os.environ.get("FAIL_STARTUPS", "0"))
IN_FLIGHT = PEAK = 0


def record(line):
    with open(MARKER, "a") as f:
        f.write(f"{line} {os.getpid()}\\n")


async def app(scope, receive, send):
    global STARTUPS, FAILURES_LEFT, IN_FLIGHT, PEAK
    if scope["type"] == "lifespan":
        await receive()
        if FAILURES_LEFT:
            FAILURES_LEFT -= 1
            record("failed")
            await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
            return
        STARTUPS += 1
        scope["state"]["pool"] = f"pool-{os.getpid()}-{id(asyncio.get_running_loop())}"
        record("startup")
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.to_thread(record, "shutdown")  # thread pools still work at exit
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    route = scope["path"][len(scope["root_path"]):]
    if route == "/boom":
        raise RuntimeError("boom")
    if route == "/bytes":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": body})
        return
    if route == "/head":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"42")]})
        await send({"type": "http.response.body", "body": b""})
        return
    IN_FLIGHT += 1
    PEAK = max(PEAK, IN_FLIGHT)
    if route == "/slow":
        await asyncio.sleep(0.3)
    IN_FLIGHT -= 1
    seen = {
        "method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode(),
        "root_path": scope["root_path"], "query_string": scope["query_string"].decode(),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "client": scope["client"], "server": scope["server"], "scheme": scope["scheme"],
        "body": base64.b64encode(body).decode(), "pool": scope["state"]["pool"],
        "startups": STARTUPS, "peak": PEAK, "pid": os.getpid(), "thread": threading.current_thread().name,
    }
    headers = [(b"content-type", b"application/json"), (b"set-cookie", b"a=1; Path=/"),
               (b"set-cookie", b"b=2; HttpOnly")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


handler = cloud_function(app, base_path=os.environ.get("BASE_PATH", ""))
"""


class FunctionsFramework:
    """`functions-framework --target handler` on a free loopback port, logging to a file;
    stopped by its pid (and its gunicorn workers by theirs)."""

    def __init__(self, directory: Path, **env: str) -> None:
        (directory / "main.py").write_text(MAIN)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lifespan_log = directory / "lifespan.log"
        self.log_path = directory / "functions-framework.log"
        inherited = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "WORKERS", "THREADS")}
        environment = {**inherited, "WORKERS": "1", "THREADS": "8", "LIFESPAN_LOG": str(self.lifespan_log), **env}
        command = [str(FUNCTIONS_FRAMEWORK), "--target", "handler", "--source", str(directory / "main.py")]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port), "--host", "127.0.0.1"],
                cwd=directory,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers: set[int] = set()

    def wait_ready(self, timeout: float = 30) -> None:
        # functions-framework answers /robots.txt itself: the app, and its lifespan, stay untouched.
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"functions-framework exited with {self.proc.returncode}\n{self.log()}")
            try:
                return httpx.get(self.url + "/robots.txt", timeout=2).status_code == 404
            except httpx.TransportError:
                return False

        wait_for(answers, timeout, "functions-framework to answer")
        self.workers = {child.pid for child in psutil.Process(self.proc.pid).children(recursive=True)}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lifespan(self) -> list[str]:
        return self.lifespan_log.read_text().splitlines() if self.lifespan_log.exists() else []

    def stop(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.workers:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionsFramework]:
    """As on Google's platform: `K_SERVICE` set, served under the function's name."""
    server = FunctionsFramework(tmp_path_factory.mktemp("gcf"), K_SERVICE="echo", BASE_PATH="/echo")
    try:
        server.wait_ready()
        yield server
    finally:
        server.cleanup()


def test_a_real_request_round_trips(served: FunctionsFramework) -> None:
    response = httpx.patch(
        served.url + "/echo/a%2Fb/c%20d?x=%2F&y=1&y=2",
        content=b"\x00\x01binary\xff",
        headers=[
            ("X-Custom", "Value"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Cookie", "a=1; b=2"),
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
        ],
        timeout=10,
    )
    assert response.status_code == 200, served.log()
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    seen = response.json()
    assert seen["method"] == "PATCH"
    assert (seen["path"], seen["raw_path"], seen["root_path"]) == ("/echo/a/b/c d", "/echo/a%2Fb/c%20d", "/echo")
    assert seen["query_string"] == "x=%2F&y=1&y=2"
    assert base64.b64decode(seen["body"]) == b"\x00\x01binary\xff"
    headers = [tuple(pair) for pair in seen["headers"]]
    assert ("x-custom", "Value") in headers
    assert ("x-multi", "a,b") in headers  # joined by gunicorn before the app sees them
    assert ("cookie", "a=1; b=2") in headers
    # K_SERVICE set: one trusted proxy, whose entry is the last one.
    assert seen["client"] == ["203.0.113.7", 0]
    assert seen["scheme"] == "https"
    assert seen["server"] == ["127.0.0.1", served.port]
    assert seen["thread"] == "asgiscale-loop"


def test_a_path_delivered_without_the_function_name_gets_it_as_root_path(served: FunctionsFramework) -> None:
    seen = httpx.get(served.url + "/users/1", timeout=10).json()
    assert (seen["path"], seen["root_path"], seen["raw_path"]) == ("/echo/users/1", "/echo", "/echo/users/1")


def test_a_binary_body_round_trips_both_ways(served: FunctionsFramework) -> None:
    payload = bytes(range(256)) * 64
    response = httpx.post(served.url + "/echo/bytes", content=payload, timeout=10)
    assert (response.status_code, response.content) == (200, payload)
    assert response.headers["content-length"] == str(len(payload))


def test_a_head_answer_keeps_the_apps_length(served: FunctionsFramework) -> None:
    response = httpx.head(served.url + "/echo/head", timeout=10)
    assert (response.status_code, response.content, response.headers["content-length"]) == (200, b"", "42")


def test_one_lifespan_and_one_loop_serve_concurrent_requests(served: FunctionsFramework) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: httpx.get(f"{served.url}/echo/slow?i={i}", timeout=10), range(24)))
    assert [r.status_code for r in responses] == [200] * 24
    seen = [r.json() for r in responses]
    assert {s["pool"] for s in seen} == {seen[0]["pool"]}  # the state the startup made, in every request
    assert {s["startups"] for s in seen} == {1}
    assert {s["pid"] for s in seen} == served.workers
    assert max(s["peak"] for s in seen) > 1  # several requests at once on the one loop
    assert served.lifespan() == [f"startup {seen[0]['pid']}"]


def test_an_app_exception_is_a_500_and_the_process_keeps_serving(served: FunctionsFramework) -> None:
    before = httpx.get(served.url + "/echo/", timeout=10).json()
    failed = httpx.get(served.url + "/echo/boom", timeout=10)
    assert (failed.status_code, failed.text) == (500, "Internal Server Error")
    after = httpx.get(served.url + "/echo/", timeout=10).json()
    assert (after["pid"], after["pool"], after["startups"]) == (before["pid"], before["pool"], 1)
    wait_for(lambda: "RuntimeError: boom" in served.log(), 10, "the traceback in the log")
    assert "Exception in ASGI application" in served.log()


def test_a_failed_startup_is_retried_and_sigterm_runs_the_shutdown(tmp_path: Path) -> None:
    server = FunctionsFramework(tmp_path, FAIL_STARTUPS="1")
    try:
        server.wait_ready()
        first = httpx.get(server.url + "/", timeout=10)
        assert (first.status_code, first.text) == (503, "Service Unavailable")
        assert "the app's lifespan startup failed: database unreachable" in server.log()
        second = httpx.get(server.url + "/", timeout=10)
        assert second.status_code == 200, server.log()
        seen = second.json()
        assert seen["client"][0] == "127.0.0.1"  # no K_SERVICE: the peer, X-Forwarded-For ignored
        assert (seen["root_path"], seen["scheme"]) == ("", "http")
        assert server.proc.poll() is None
        assert server.stop() == 0
    finally:
        server.cleanup()
    worker = seen["pid"]
    assert server.lifespan() == [f"failed {worker}", f"startup {worker}", f"shutdown {worker}"]
