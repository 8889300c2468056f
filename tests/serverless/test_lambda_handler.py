"""The Lambda handler on the points where adapters go wrong: lifespan once per environment,
root_path from the stage, the Lambda@Edge answer, excluded headers, escaped paths, the ALB
client address, odd events; and binary bodies, app errors, lifespan failures."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import logging
from typing import Any

import pytest
from fastapi import FastAPI, Request

from asgiscale.serverless import LifespanError, MalformedEvent, UnsupportedEvent, lambda_handler
from tests.serverless.conftest import echo_app, echoed, load_event

REST = "aws-lambda-go/apigw-request.json"
HTTP_API = "aws-lambda-rust-runtime/apigw_v2_proxy_request_with_stage_in_path.json"
FUNCTION_URL = "powertools-lambda-python/lambdaFunctionUrlEvent.json"
ALB = "powertools-lambda-python/albEvent.json"
ALB_MULTI = "powertools-lambda-python/albMultiValueHeadersEvent.json"
EDGE = "aws-sam-cli/CloudFrontABTest.json"


def replying(status: int, headers: list[tuple[str, str]], body: bytes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        encoded = [(name.encode(), value.encode()) for name, value in headers]
        await send({"type": "http.response.start", "status": status, "headers": encoded})
        await send({"type": "http.response.body", "body": body})

    return app


# Lifespan: once per execution environment, not once per invocation.


def test_lifespan_starts_once_and_its_state_reaches_every_request() -> None:
    events: list[str] = []
    app = FastAPI(lifespan=_recording_lifespan(events))

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    def read(request: Request) -> dict[str, Any]:
        return {"pool": id(request.state.pool)}

    del read
    handler = lambda_handler(app)
    answers = [json.loads(handler(load_event(name), None)["body"]) for name in [REST, HTTP_API, FUNCTION_URL] * 5]
    assert events == ["startup"]
    assert len({answer["pool"] for answer in answers}) == 1  # the same pool object every time
    handler.close()
    assert events == ["startup", "shutdown"]


class _Pool:
    """Stands for a connection pool made at startup."""


def _recording_lifespan(events: list[str]) -> Any:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        events.append("startup")
        yield {"pool": _Pool()}
        events.append("shutdown")

    return lifespan


def test_each_request_gets_its_own_copy_of_the_state() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["shared"] = []
            await send({"type": "lifespan.startup.complete"})
            await receive()
            return
        scope["state"]["shared"].append(1)  # a mutable object is shared ...
        scope["state"]["mine"] = scope.get("n", 0)  # ... a key set by one request is not seen by the next
        body = json.dumps({"shared": len(scope["state"]["shared"]), "keys": sorted(scope["state"])}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    handler = lambda_handler(app)
    first, second = (json.loads(handler(load_event(REST), None)["body"]) for _ in range(2))
    assert first == {"shared": 1, "keys": ["mine", "shared"]} and second == {"shared": 2, "keys": ["mine", "shared"]}


def test_a_failing_startup_is_a_clear_error_and_is_tried_again_on_the_next_invocation() -> None:
    attempts: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            attempts.append(1)
            if len(attempts) == 1:
                await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()
            return
        await replying(200, [], b"ok")(scope, receive, send)

    handler = lambda_handler(app)
    with pytest.raises(LifespanError, match="^the app's lifespan startup failed: database unreachable$"):
        handler(load_event(REST), None)
    assert handler(load_event(REST), None)["body"] == "ok"
    assert len(attempts) == 2


def test_lifespan_on_requires_it_auto_goes_without_and_off_never_runs_it() -> None:
    async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"unsupported scope {scope['type']}")
        await replying(200, [], b"ok")(scope, receive, send)

    with pytest.raises(LifespanError, match="does not support the lifespan protocol .*ValueError.*use lifespan='auto'"):
        lambda_handler(no_lifespan, lifespan="on")(load_event(REST), None)
    assert lambda_handler(no_lifespan)(load_event(REST), None)["body"] == "ok"
    events: list[str] = []
    off = FastAPI(lifespan=_recording_lifespan(events))
    assert lambda_handler(off, lifespan="off")(load_event(REST), None)["statusCode"] == 404
    assert events == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lifespan": "yes"}, r"^lifespan='yes' is not a lifespan mode; use 'auto', 'on' or 'off'$"),
        ({"base_path": "api"}, r"^base_path='api' must start with '/', e.g. '/api'$"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lambda_handler(echo_app, **options)


# root_path: from the stage on the API's own domain, from base_path on a custom domain.


def test_fastapi_docs_work_under_the_stage() -> None:
    app = FastAPI()
    handler = lambda_handler(app)
    docs = load_event(REST)
    docs["path"], docs["httpMethod"] = "/docs", "GET"
    page = handler(docs, None)
    assert page["statusCode"] == 200 and "'/testStage/openapi.json'" in page["body"]
    schema = load_event(HTTP_API)
    schema["rawPath"], schema["requestContext"]["http"]["method"] = "/Prod/openapi.json", "GET"
    assert json.loads(handler(schema, None)["body"])["openapi"].startswith("3.")


@pytest.mark.parametrize("name", [REST, HTTP_API, ALB])
def test_a_custom_domain_base_path_becomes_the_root_path(name: str) -> None:
    event = load_event(name)
    host = {"Host": "api.example.com"} if name == REST else {"host": "api.example.com"}
    event["headers"].update(host)
    event.pop("multiValueHeaders", None)
    if name == REST:
        event["path"] = "/v1/items"  # REST keeps the base path mapping in `path`
    elif name == HTTP_API:
        event["rawPath"] = "/Prod/items"  # HTTP APIs put the stage there instead
        event["requestContext"]["domainName"] = "api.example.com"
    else:
        event["path"] = "/v1/items"
    scope = echoed(lambda_handler(echo_app, base_path="/v1/")(event, None))
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("/v1", "/v1/items", "/v1/items")


# Escaped paths: `%2F` stays escaped in raw_path; path is decoded.


@pytest.mark.parametrize("name", [REST, FUNCTION_URL, ALB])
def test_an_escaped_slash_stays_in_raw_path(name: str) -> None:
    event = load_event(name)
    event["rawPath" if "rawPath" in event else "path"] = "/files/a%2Fb%20c"
    scope = echoed(lambda_handler(echo_app)(event, None))
    prefix = scope["root_path"]
    assert scope["path"] == prefix + "/files/a/b c"
    assert scope["raw_path"] == prefix + "/files/a%2Fb%20c"


def test_a_path_delivered_decoded_is_escaped_into_a_valid_raw_path() -> None:
    event = load_event(FUNCTION_URL)
    event["rawPath"] = "/é/100%/a?b#c"
    scope = echoed(lambda_handler(echo_app)(event, None))
    assert scope["path"] == "/é/100%/a?b#c"
    assert scope["raw_path"] == "/%C3%A9/100%25/a%3Fb%23c"


def test_a_stage_name_outside_ascii_is_escaped_like_the_path() -> None:
    # Found by test_lambda_fuzz: a stage of "\x80" gave an unencodable raw_path.
    event = load_event(HTTP_API)
    event["requestContext"]["stage"] = "é"
    event["rawPath"] = "/é/items"
    scope = echoed(lambda_handler(echo_app)(event, None))
    assert (scope["root_path"], scope["raw_path"]) == ("/%C3%A9", "/%C3%A9/items")
    assert scope["path"] == "/é/items"


# The client address: the one the platform vouches for.


@pytest.mark.parametrize(
    ("name", "forwarded"),
    [
        (ALB, "6.6.6.6, 203.0.113.9"),
        (ALB_MULTI, ["6.6.6.6, 10.0.0.1", "203.0.113.9"]),
    ],
)
def test_the_alb_client_is_the_address_the_load_balancer_appended(name: str, forwarded: Any) -> None:
    event = load_event(name)
    if "multiValueHeaders" in event:
        event["multiValueHeaders"]["x-forwarded-for"] = forwarded
    else:
        event["headers"]["x-forwarded-for"] = forwarded
    assert echoed(lambda_handler(echo_app)(event, None))["client"] == ["203.0.113.9", 0]


def test_api_gateway_clients_are_the_source_ip_whatever_x_forwarded_for_says() -> None:
    event = load_event(REST)
    event["multiValueHeaders"]["X-Forwarded-For"] = ["6.6.6.6"]
    assert echoed(lambda_handler(echo_app)(event, None))["client"] == ["192.168.196.186", 0]


# Lambda@Edge: the answer CloudFront accepts.


def test_the_lambda_edge_answer_has_the_shape_cloudfront_requires() -> None:
    headers = [
        ("Content-Type", "image/png"),
        ("Content-Length", "4"),
        ("Via", "1.1 app"),
        ("Connection", "keep-alive"),
        ("X-Cache", "Hit"),
        ("Transfer-Encoding", "chunked"),
        ("X-Amz-Cf-Id", "x"),
        ("Cache-Control", "max-age=60"),
    ]
    answer = lambda_handler(replying(201, headers, b"\x89PNG"))(load_event(EDGE), None)
    assert answer == {
        "status": "201",
        "statusDescription": "Created",
        "headers": {
            "content-type": [{"key": "Content-Type", "value": "image/png"}],
            "cache-control": [{"key": "Cache-Control", "value": "max-age=60"}],
        },
        "body": base64.b64encode(b"\x89PNG").decode(),
        "bodyEncoding": "base64",
    }


def test_a_lambda_edge_request_body_is_read_in_either_encoding() -> None:
    for encoding, data in (("text", "a=1"), ("base64", base64.b64encode(b"a=1").decode())):
        event = load_event(EDGE)
        event["Records"][0]["cf"]["request"]["body"] = {"inputTruncated": False, "action": "read-only",
                                                        "encoding": encoding, "data": data}  # fmt: skip
        assert base64.b64decode(echoed(lambda_handler(echo_app)(event, None))["body"]) == b"a=1"


# exclude_headers: honoured for every source.


@pytest.mark.parametrize("name", [REST, HTTP_API, FUNCTION_URL, ALB, ALB_MULTI, EDGE])
def test_excluded_headers_are_left_out_for_every_source(name: str) -> None:
    headers = [("Content-Type", "text/plain"), ("X-Internal", "secret"), ("Set-Cookie", "a=1")]
    handler = lambda_handler(replying(200, headers, b"ok"), exclude_headers=["x-internal", "SET-COOKIE"])
    answer = handler(load_event(name), None)
    text = json.dumps(answer).lower()
    assert "x-internal" not in text and "secret" not in text and "a=1" not in text and "cookies" not in answer
    assert "text/plain" in text


# Bodies: text or base64 by content type and encoding.


@pytest.mark.parametrize(
    ("headers", "body", "as_text"),
    [
        ([("content-type", "application/json")], b'{"a": "\xc3\xa9"}', True),
        ([("content-type", "text/html; charset=utf-8")], b"<p>hi</p>", True),
        ([("content-type", "application/vnd.api+json")], b"{}", True),
        ([("content-type", "image/png")], b"\x89PNG\r\n", False),
        ([("content-type", "application/json"), ("content-encoding", "gzip")], gzip.compress(b"{}", mtime=0), False),
        ([("content-type", "text/plain")], b"\xff\xfe not utf-8", False),
        ([], b"plain", True),
    ],
)
def test_bodies_are_text_or_base64_by_type_and_encoding(
    headers: list[tuple[str, str]], body: bytes, as_text: bool
) -> None:
    for name in (REST, HTTP_API, ALB):
        answer = lambda_handler(replying(200, headers, body))(load_event(name), None)
        assert answer["isBase64Encoded"] is not as_text
        assert (answer["body"].encode() if as_text else base64.b64decode(answer["body"])) == body


def test_extra_text_types_are_configurable() -> None:
    app = replying(200, [("content-type", "application/vnd.acme.report")], b"report")
    assert lambda_handler(app)(load_event(REST), None)["isBase64Encoded"] is True
    answer = lambda_handler(app, text_mime_types=["application/vnd.acme.report"])(load_event(REST), None)
    assert (answer["isBase64Encoded"], answer["body"]) == (False, "report")


def test_a_base64_request_body_is_decoded() -> None:
    event = load_event(HTTP_API)
    event["body"], event["isBase64Encoded"] = base64.b64encode(b"\x00\x01binary").decode(), True
    assert base64.b64decode(echoed(lambda_handler(echo_app)(event, None))["body"]) == b"\x00\x01binary"


# App errors: a 500, the error logged, the environment still serving.


def test_an_app_error_is_a_logged_500_and_the_next_request_is_served(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        calls.append(1)
        if len(calls) == 1:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise RuntimeError("boom")
        if len(calls) == 2:
            return  # no response at all
        await replying(200, [], b"fine")(scope, receive, send)

    handler = lambda_handler(app)
    with caplog.at_level(logging.ERROR, logger="asgiscale.error"):
        assert handler(load_event(HTTP_API), None)["statusCode"] == 500
        assert handler(load_event(HTTP_API), None)["statusCode"] == 500
    assert handler(load_event(HTTP_API), None)["body"] == "fine"
    assert "RuntimeError: boom" in caplog.text and "returned without completing a response" in caplog.text


# Events that are not HTTP requests, or broken ones: one clear error, never a KeyError.


def test_other_events_raise_a_clear_error_unless_a_handler_is_registered() -> None:
    sqs = {"Records": [{"eventSource": "aws:sqs", "body": "hi"}]}
    with pytest.raises(UnsupportedEvent, match=r"^an event from aws:sqs \(1 record\) is not an HTTP request"):
        lambda_handler(echo_app)(sqs, None)
    seen: list[Any] = []
    handler = lambda_handler(echo_app, on_event=lambda event, context: seen.append(event) or {"batchItemFailures": []})
    assert handler(sqs, None) == {"batchItemFailures": []} and seen == [sqs]
    schedule = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    with pytest.raises(UnsupportedEvent, match=r"^an EventBridge event from aws.events \(Scheduled Event\)"):
        lambda_handler(echo_app)(schedule, None)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (REST, lambda e: e.pop("path"), r"^API Gateway REST API event: 'path' is missing$"),
        (
            REST,
            lambda e: e.update(httpMethod=7),
            r"^API Gateway REST API event: 'httpMethod' should be a string, got int$",
        ),
        (
            REST,
            lambda e: e.update(headers={"a": 1}, multiValueHeaders=None),
            r"'headers.a' should be a string, got int$",
        ),
        (HTTP_API, lambda e: e["requestContext"]["http"].pop("method"), r"'requestContext.http.method' is missing$"),
        (HTTP_API, lambda e: e.update(body="%%%", isBase64Encoded=True), r"'body' is flagged base64 but is not valid"),
        (
            ALB,
            lambda e: e.update(body=["x"]),
            r"^Application Load Balancer event: 'body' should be a string, got list$",
        ),
        (EDGE, lambda e: e["Records"][0]["cf"]["request"].pop("method"), r"^Lambda@Edge event: 'method' is missing$"),
    ],
)
def test_broken_events_name_the_field(name: str, change: Any, message: str) -> None:
    event = load_event(name)
    change(event)
    with pytest.raises(MalformedEvent, match=message):
        lambda_handler(echo_app)(event, None)


def test_huge_headers_are_served() -> None:
    event = load_event(HTTP_API)
    event["headers"]["x-big"] = "v" * 1_000_000
    scope = echoed(lambda_handler(echo_app)(event, None))
    assert ["x-big", "v" * 1_000_000] in scope["headers"]


def test_the_handler_does_not_change_the_event() -> None:
    for name in (REST, HTTP_API, ALB_MULTI, EDGE):
        event = load_event(name)
        before = copy.deepcopy(event)
        lambda_handler(echo_app)(event, None)
        assert event == before
