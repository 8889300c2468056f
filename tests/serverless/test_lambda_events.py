"""Every real AWS request event in events/ through the Lambda handler and an app echoing its
scope: what the app sees, and the answer each source requires."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from asgiscale.serverless import UnsupportedEvent, lambda_handler
from tests.serverless.conftest import EVENTS, echo_app, echoed, load_event, request_events

GO, RUST, SAM, PT = "aws-lambda-go/", "aws-lambda-rust-runtime/", "aws-sam-cli/", "powertools-lambda-python/"
QUERY = "parameter1=value1&parameter1=value2&parameter2=value"
APIGW_US_EAST_1 = ("id.execute-api.us-east-1.amazonaws.com", 443)

# file -> (source, method, path, raw_path, root_path, query_string, client address, server)
EXPECTED: dict[str, tuple[str, str, str, str, str, str, str | None, tuple[str, int] | None]] = {
    GO + "alb-lambda-target-request-headers-only.json": (
        "alb", "GET", "/", "/", "", "key=hello", "25.12.198.67",
        ("lambda-test-alb-1334523864.us-east-1.elb.amazonaws.com", 80),
    ),
    GO + "alb-lambda-target-request-multivalue-headers.json": (
        "alb-multi", "GET", "/", "/", "", "key=hello", "72.21.198.67",
        ("lambda-test-alb-1234567.us-east-1.elb.amazonaws.com", 80),
    ),
    # The API's own domain: the stage is the first segment of the client's URL.
    GO + "apigw-request.json": (
        "rest", "POST", "/testStage/hello/world", "/testStage/hello/world", "/testStage", "name=me",
        "192.168.196.186", ("gy415nuibc.execute-api.us-east-1.amazonaws.com", 443),
    ),
    GO + "apigw-v2-request-no-authorizer.json": (
        "http", "GET", "/", "/", "", "", "1.2.3.4", ("aaaaaaaaaa.execute-api.us-west-2.amazonaws.com", 443),
    ),
    GO + "lambda-urls-request.json": (
        "http", "POST", "/my/path", "/my/path", "", QUERY, "123.123.123.123",
        ("<url-id>.lambda-url.us-west-2.on.aws", 443),
    ),
    # The load balancer passes the query still escaped: it must not be escaped twice.
    RUST + "alb_multi_value_request_encoded_query_parameters.json": (
        "alb-multi", "GET", "/", "/", "", "myKey=%3FshowAll%3Dtrue&myKey=%3FshowAll%3Dfalse", "72.21.198.66",
        ("lambda-846800462-us-east-2.elb.amazonaws.com", 443),
    ),
    RUST + "alb_request_encoded_query_parameters.json": (
        "alb", "GET", "/", "/", "", "myKey=%3FshowAll%3Dtrue", "72.21.198.66",
        ("lambda-846800462-us-east-2.elb.amazonaws.com", 443),
    ),
    RUST + "apigw_no_host.json": ("rest", "GET", "/hello", "/hello", "", "name=me", "192.168.100.1", None),
    # An HTTP API delivers the path decoded: the raw path is escaped again, never left invalid.
    RUST + "apigw_request_path_with_space.json": (
        "http", "POST", "/my/path-with space", "/my/path-with%20space", "", QUERY, "IP", APIGW_US_EAST_1,
    ),
    RUST + "apigw_v2_proxy_request_with_stage_in_path.json": (
        "http", "POST", "/Prod/my/path", "/Prod/my/path", "/Prod", QUERY, "IP", APIGW_US_EAST_1,
    ),
    RUST + "lambda_function_url_request.json": (
        "http", "GET", "/my/path", "/my/path", "", QUERY, "65.78.31.245", ("id.lambda-url.eu-west-2.on.aws", 443),
    ),
    # No `querystring` key at all.
    SAM + "CloudFrontABTest.json": (
        "edge", "GET", "/test", "/test", "", "", "2001:cdba::3257:9652", ("d123.cf.net", 443),
    ),
    SAM + "CloudFrontModifyQueryString.json": (
        "edge", "GET", "/test", "/test", "", "auth=test&foo=bar", "2001:cdba::3257:9652", ("d123.cf.net", 443),
    ),
    PT + "albEvent.json": (
        "alb", "GET", "/lambda", "/lambda", "", "query=1234ABCD", "72.12.164.125",
        ("lambda-alb-123578498.us-east-2.elb.amazonaws.com", 80),
    ),
    PT + "albMultiValueHeadersEvent.json": (
        "alb-multi", "GET", "/todos", "/todos", "", "", "123.123.123.123",
        ("alb-c-LoadB-14POFKYCLBNSF-1815800096.eu-central-1.elb.amazonaws.com", 80),
    ),
    PT + "albMultiValueQueryStringEvent.json": (
        "alb-multi", "GET", "/todos", "/todos", "", QUERY, "123.123.123.123",
        ("alb-c-LoadB-14POFKYCLBNSF-1815800096.eu-central-1.elb.amazonaws.com", 80),
    ),
    # An HTTP API's payload 1.0 on its `$default` stage: no stage in the URL.
    PT + "apiGatewayProxyEvent.json": (
        "rest", "GET", "/my/path", "/my/path", "", QUERY, "192.168.0.1/32", APIGW_US_EAST_1,
    ),
    PT + "apiGatewayProxyV2Event.json": (
        "http", "POST", "/my/path", "/my/path", "", QUERY, "192.168.0.1/32", APIGW_US_EAST_1,
    ),
    PT + "apiGatewayProxyV2Event_GET.json": (
        "http", "GET", "/my/path", "/my/path", "", QUERY, "192.168.0.1/32", APIGW_US_EAST_1,
    ),
    PT + "lambdaFunctionUrlEvent.json": (
        "http", "GET", "/", "/", "", "", "123.123.123.123", ("<url-id>.lambda-url.us-east-1.on.aws", 443),
    ),
    # `rawQueryString` is empty but `queryStringParameters` is not: the parameters are kept.
    PT + "lambdaFunctionUrlEventWithHeaders.json": (
        "http", "GET", "/", "/", "", "parameter1=value1%2Cvalue2&parameter2=value", "123.123.123.123",
        ("<url-id>.lambda-url.us-east-1.on.aws", 443),
    ),
    PT + "lambdaFunctionUrlIAMEvent.json": (
        "http", "POST", "/my/path", "/my/path", "", QUERY, "123.123.123.123",
        ("<url-id>.lambda-url.us-west-2.on.aws", 443),
    ),
}  # fmt: skip

NOT_HTTP = {
    SAM + "CloudFrontModifyResponseHeader.json": "a Lambda@Edge response event",
    PT + "vpcLatticeV2Event.json": "a VPC Lattice event",
}


def test_every_request_event_file_is_covered() -> None:
    assert sorted([*EXPECTED, *NOT_HTTP]) == request_events()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_app_sees_what_the_event_says(name: str) -> None:
    source, method, path, raw_path, root_path, query, client, server = EXPECTED[name]
    event = load_event(name)
    response = lambda_handler(echo_app)(event, None)
    scope = echoed(response)
    assert scope["type"] == "http" and scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert (scope["method"], scope["path"], scope["raw_path"], scope["root_path"]) == (
        method,
        path,
        raw_path,
        root_path,
    )
    assert scope["query_string"] == query
    assert scope["client"] == ([client, 0] if client else None)
    assert scope["server"] == (list(server) if server else None)
    assert scope["scheme"] == ("http" if server and server[1] == 80 else "https")
    assert scope["state"] == ["startups"] and scope["has_event"]
    headers = scope["headers"]
    assert all(name == name.lower() for name, _ in headers)
    assert _expected_headers(event, source) <= {(n, v) for n, v in headers}
    assert base64.b64decode(scope["body"]) == _expected_body(event, source)
    _assert_response_shape(source, response)


def _expected_headers(event: dict[str, Any], source: str) -> set[tuple[str, str]]:
    if source == "edge":
        entries = event["Records"][0]["cf"]["request"]["headers"].values()
        return {(e["key"].lower(), e["value"]) for items in entries for e in items}
    if event.get("multiValueHeaders"):
        return {(n.lower(), v) for n, values in event["multiValueHeaders"].items() for v in values}
    pairs = {(n.lower(), v) for n, v in (event.get("headers") or {}).items() if n.lower() != "cookie"}
    if event.get("cookies"):
        pairs.add(("cookie", "; ".join(event["cookies"])))
    return pairs


def _expected_body(event: dict[str, Any], source: str) -> bytes:
    if source == "edge":
        return b""
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def _assert_response_shape(source: str, response: dict[str, Any]) -> None:
    cookies = ["a=1; Path=/", "b=2"]
    if source == "rest":
        assert set(response) == {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
        assert response["headers"] == {"content-type": "application/json"}
        assert response["multiValueHeaders"] == {"set-cookie": cookies}
    elif source == "http":
        assert set(response) == {"statusCode", "headers", "cookies", "body", "isBase64Encoded"}
        assert response["headers"] == {"content-type": "application/json"} and response["cookies"] == cookies
    elif source == "alb":
        assert set(response) == {"statusCode", "statusDescription", "headers", "body", "isBase64Encoded"}
        # One value per name: the second cookie goes under another spelling of the name.
        assert response["headers"] == {
            "content-type": "application/json",
            "set-cookie": cookies[0],
            "SET-COOKIE": "b=2",
        }
    elif source == "alb-multi":
        assert set(response) == {"statusCode", "statusDescription", "multiValueHeaders", "body", "isBase64Encoded"}
        assert response["multiValueHeaders"] == {"content-type": ["application/json"], "set-cookie": cookies}
    else:
        assert set(response) == {"status", "statusDescription", "headers", "body", "bodyEncoding"}
        assert (response["status"], response["statusDescription"], response["bodyEncoding"]) == ("200", "OK", "text")
        assert response["headers"] == {
            "content-type": [{"key": "content-type", "value": "application/json"}],
            "set-cookie": [{"key": "set-cookie", "value": v} for v in cookies],
        }
    if "statusCode" in response:
        assert response["statusCode"] == 200 and response["isBase64Encoded"] is False
    if "statusDescription" in response and source != "edge":
        assert response["statusDescription"] == "200 OK"


@pytest.mark.parametrize("name", sorted(NOT_HTTP))
def test_events_that_are_not_http_requests_are_refused_by_name(name: str) -> None:
    with pytest.raises(UnsupportedEvent, match=f"^{NOT_HTTP[name]}"):
        lambda_handler(echo_app)(load_event(name), None)


def _replying(status: int, headers: list[tuple[str, str]], body: bytes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        encoded = [(n.encode(), v.encode()) for n, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": encoded})
        await send({"type": "http.response.body", "body": body})

    return app


def test_a_function_url_answer_matches_the_aws_example_document() -> None:
    golden = json.loads(load_event_text("aws-lambda-go/lambda-urls-response.json"))
    headers = [*golden["headers"].items(), *(("Set-Cookie", c) for c in golden["cookies"])]
    app = _replying(golden["statusCode"], headers, golden["body"].encode())
    handler = lambda_handler(app, lifespan="off")
    assert handler(load_event(GO + "lambda-urls-request.json"), None) == golden


def test_an_alb_answer_matches_the_aws_example_document() -> None:
    golden = json.loads(load_event_text("aws-lambda-go/alb-lambda-target-response.json"))
    headers = [(name, value) for name, values in golden["multiValueHeaders"].items() for value in values]
    app = _replying(golden["statusCode"], headers, golden["body"].encode())
    answer = lambda_handler(app, lifespan="off")(
        load_event(GO + "alb-lambda-target-request-multivalue-headers.json"), None
    )
    assert answer == {key: value for key, value in golden.items() if key != "headers"}


def test_a_rest_answer_carries_the_aws_example_documents_headers() -> None:
    golden = json.loads(load_event_text("aws-lambda-go/apigw-response.json"))
    headers = [(name, value) for name, values in golden["multiValueHeaders"].items() for value in values]
    app = _replying(golden["statusCode"], headers, golden["body"].encode())
    answer = lambda_handler(app, lifespan="off")(load_event(GO + "apigw-request.json"), None)
    assert (answer["statusCode"], answer["body"], answer["isBase64Encoded"]) == (200, "Hello World", False)
    assert answer["headers"] == golden["headers"] and answer["multiValueHeaders"] == {}


def load_event_text(name: str) -> str:
    return (EVENTS / name).read_text()
