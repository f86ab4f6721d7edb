"""The local HTTP gateway maps requests to SQS exactly as api.yaml tells API Gateway to.

Where AWS's documentation is silent (body encoding, query decoding, a missing
value), each emulated answer is exercised; the access log line is rendered
from the stage's format.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from aws_emulator.aws import Clients
from aws_emulator.http_gateway import (
    MAX_PAYLOAD_BYTES,
    GatewayEmulation,
    HttpGateway,
    HttpGatewayServer,
    HttpRequest,
    normalised_base_path,
    query_parameters,
    render_access_log,
)
from aws_emulator.logs import LogEvent
from aws_emulator.provision import Deployment, Provisioner
from aws_emulator.templates import load_stack
from status_callbacks.domain.forwarded import parse_forwarded_request

INGEST = Path(__file__).resolve().parents[2] / "aws_stacks" / "StatusCallbackHandler"
DOMAIN = "127.0.0.1:3000"


@pytest.fixture
def ingest(clients: Clients) -> Deployment:
    """The real ingest template provisioned into moto (queues, topic, the HTTP API's routes)."""
    provisioner = Provisioner(
        clients, region="us-east-1", account_id="123456789012", api_base_url=f"http://{DOMAIN}"
    )
    return provisioner.deploy([load_stack(INGEST, "us-east-1")])


class RecordedLogs:
    """Stands in for the log shipper: keeps what the gateway puts."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, str, list[LogEvent], bool]] = []

    def put(self, group: str, stream: str, events: Sequence[LogEvent], *, mergeable: bool = False) -> None:
        self.puts.append((group, stream, list(events), mergeable))

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(event.message) for _, _, events, _ in self.puts for event in events]


@pytest.fixture
def logs() -> RecordedLogs:
    return RecordedLogs()


def gateway_for(
    ingest: Deployment,
    clients: Clients,
    logs: RecordedLogs | None = None,
    base_path: str = "",
    **emulation: str,
) -> HttpGateway:
    return HttpGateway(
        ingest.apis,
        lambda: clients.sqs,
        DOMAIN,
        emulation=GatewayEmulation(**emulation),
        base_path=base_path,
        logs=logs,  # type: ignore[arg-type]
    )


@pytest.fixture
def gateway(ingest: Deployment, clients: Clients, logs: RecordedLogs) -> HttpGateway:
    return gateway_for(ingest, clients, logs)


def queued(clients: Clients, ingest: Deployment) -> list[dict[str, Any]]:
    url = ingest.stack("StatusCallbackHandler").outputs["IngestQueueUrl"][0]
    response = clients.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    return list(response.get("Messages") or [])


FORM = "application/x-www-form-urlencoded"


def post(
    path: str,
    query: str = "",
    body: str = "A=1",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> HttpRequest:
    return HttpRequest(
        method=method,
        path=path,
        raw_query=query,
        headers={name.lower(): value for name, value in (headers or {}).items()},
        body=body.encode("utf-8"),
        source_ip="54.172.60.1",
        domain=DOMAIN,
    )


def test_query_strings_are_percent_decoded_and_plus_is_kept() -> None:
    assert query_parameters("id=a%20b&category=caf%C3%A9%2B%26%27&x=1+2&x=3&empty=") == {
        "id": "a b",
        "category": "café+&'",
        "x": "1+2,3",
        "empty": "",
    }


def test_raw_query_values_are_exactly_as_in_the_url() -> None:
    assert query_parameters("id=a%20b&category=caf%C3%A9%2B&x=1+2&x=3", decoded=False) == {
        "id": "a%20b",
        "category": "caf%C3%A9%2B",
        "x": "1+2,3",
    }


def test_emulation_choices_are_parsed_from_name_value_pairs() -> None:
    assert GatewayEmulation.parse("") == GatewayEmulation("text", "decoded", "empty")
    assert GatewayEmulation.parse(" missing=fail , body=base64") == GatewayEmulation(
        "base64", "decoded", "fail"
    )
    assert str(GatewayEmulation.parse("query=raw")) == "body=text,query=raw,missing=empty"
    with pytest.raises(ValueError, match="body=gzip: choose text or base64"):
        GatewayEmulation.parse("body=gzip")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        GatewayEmulation.parse("headers=raw")


@pytest.mark.parametrize(
    ("given", "expected"), [("hooks", "/hooks"), ("/v1/hooks/", "/v1/hooks"), ("", ""), ("/", "")]
)
def test_base_paths_are_normalised(given: str, expected: str) -> None:
    assert normalised_base_path(given) == expected


def test_a_base_path_with_a_query_is_refused() -> None:
    with pytest.raises(ValueError, match="path segments"):
        normalised_base_path("hooks?x=1")


def test_declared_routes_come_from_api_yaml(gateway: HttpGateway) -> None:
    routes = {(route.method, route.path, route.declared_query) for _, route in gateway.routes()}

    assert routes == {("POST", "/twilio", ()), ("POST", "/twilio-params", ("id", "category"))}


def test_a_callback_is_forwarded_with_the_mapped_attributes(
    gateway: HttpGateway, clients: Clients, ingest: Deployment
) -> None:
    # Given a callback to the custom-params route with awkward query values
    request = post(
        "/twilio-params",
        "id=a%20b&category=caf%C3%A9%2B%26%27",
        body="MessageSid=SM1&MessageStatus=sent",
        headers={"X-Twilio-Signature": "c2lnbmF0dXJl"},
    )

    # When the gateway handles it
    response = gateway.handle(request)

    # Then SQS holds the raw body, and the attributes read back as the validator reads them
    assert response.status == 200
    assert response.body["SendMessageResponse"]["SendMessageResult"]["MessageId"]
    (message,) = queued(clients, ingest)
    assert message["Body"] == "MessageSid=SM1&MessageStatus=sent"
    forwarded = parse_forwarded_request(message["Body"], message["MessageAttributes"])
    assert forwarded.domain == DOMAIN
    assert forwarded.path == "/twilio-params"
    assert forwarded.signature == "c2lnbmF0dXJl"
    assert forwarded.source_ip == "54.172.60.1"
    assert forwarded.query == (("id", "a b"), ("category", "café+&'"))


def test_a_missing_header_is_forwarded_as_empty(
    gateway: HttpGateway, clients: Clients, ingest: Deployment
) -> None:
    response = gateway.handle(post("/twilio"))

    assert response.status == 200
    (message,) = queued(clients, ingest)
    assert message["MessageAttributes"]["Signature"]["StringValue"] == "="
    assert parse_forwarded_request(message["Body"], message["MessageAttributes"]).signature is None


@pytest.mark.parametrize(("method", "path"), [("GET", "/twilio"), ("POST", "/nope"), ("POST", "/twilio/")])
def test_unknown_routes_are_404(
    gateway: HttpGateway, clients: Clients, ingest: Deployment, method: str, path: str
) -> None:
    response = gateway.handle(post(path, method=method))

    assert (response.status, dict(response.body)) == (404, {"message": "Not Found"})
    assert queued(clients, ingest) == []


def test_a_quote_in_a_query_value_breaks_the_mapping_json(
    gateway: HttpGateway, clients: Clients, ingest: Deployment
) -> None:
    # API Gateway substitutes values unescaped, so the MessageAttributes JSON becomes invalid
    response = gateway.handle(post("/twilio-params", "id=%22quoted%22"))

    assert (response.status, dict(response.body)) == (500, {"message": "Internal Server Error"})
    assert queued(clients, ingest) == []


def test_a_body_sqs_refuses_is_an_integration_failure(
    gateway: HttpGateway, clients: Clients, ingest: Deployment
) -> None:
    # Given a body over SQS's message size limit (but under HTTP APIs' 10 MB)
    response = gateway.handle(post("/twilio", body="A=" + "x" * (1024 * 1024 + 1)))

    # Then API Gateway's answer for a failed integration, and nothing queued
    assert (response.status, dict(response.body)) == (500, {"message": "Internal Server Error"})
    assert queued(clients, ingest) == []


def test_a_body_over_the_payload_limit_is_413(gateway: HttpGateway) -> None:
    response = gateway.handle(post("/twilio", body="x" * (MAX_PAYLOAD_BYTES + 1)))

    assert (response.status, dict(response.body)) == (413, {"message": "Request Entity Too Large"})


def test_base64_bodies_are_encoded_for_form_posts_only(ingest: Deployment, clients: Clients) -> None:
    # Given the gateway answering "base64" to the undocumented body question
    gateway = gateway_for(ingest, clients, body="base64")
    form = "MessageSid=SM1&Body=caf%C3%A9"

    # When a form post and a JSON post arrive
    form_response = gateway.handle(post("/twilio", body=form, headers={"Content-Type": FORM}))
    json_response = gateway.handle(
        post("/twilio", body='{"a":1}', headers={"Content-Type": "application/json; charset=utf-8"})
    )

    # Then the form body is queued base64-encoded and the JSON body as text, as HTTP APIs do for Lambda
    assert (form_response.status, json_response.status) == (200, 200)
    bodies = sorted(message["Body"] for message in queued(clients, ingest))
    assert bodies == sorted([base64.b64encode(form.encode()).decode("ascii"), '{"a":1}'])


def test_text_bodies_are_queued_as_sent(gateway: HttpGateway, clients: Clients, ingest: Deployment) -> None:
    gateway.handle(post("/twilio", body="MessageSid=SM1", headers={"Content-Type": FORM}))

    (message,) = queued(clients, ingest)
    assert message["Body"] == "MessageSid=SM1"


def test_raw_query_values_are_forwarded_as_in_the_url(ingest: Deployment, clients: Clients) -> None:
    gateway = gateway_for(ingest, clients, query="raw")

    response = gateway.handle(post("/twilio-params", "id=a%20b+c&category=caf%C3%A9"))

    assert response.status == 200
    (message,) = queued(clients, ingest)
    forwarded = parse_forwarded_request(message["Body"], message["MessageAttributes"])
    assert forwarded.query == (("id", "a%20b+c"), ("category", "caf%C3%A9"))


def test_a_missing_query_parameter_fails_the_integration_when_emulated(
    ingest: Deployment, clients: Clients, logs: RecordedLogs
) -> None:
    # Given the gateway answering "fail" to the undocumented missing-value question
    gateway = gateway_for(ingest, clients, logs, missing="fail")
    signed = {"X-Twilio-Signature": "abc"}

    # When one request lacks the declared category and another carries it empty
    lacking = gateway.handle(post("/twilio-params", "id=42", headers=signed))
    empty = gateway.handle(post("/twilio-params", "id=42&category=", headers=signed))

    # Then the first fails as API Gateway fails an unresolvable mapping, and only the second is queued
    assert (lacking.status, dict(lacking.body)) == (500, {"message": "Internal Server Error"})
    assert lacking.integration_error == (
        "Unable to resolve property MessageAttributes from source $request.querystring.category"
    )
    assert empty.status == 200
    (message,) = queued(clients, ingest)
    assert parse_forwarded_request(message["Body"], message["MessageAttributes"]).query == (
        ("id", "42"),
        ("category", ""),
    )
    # and the access log says why the first one failed
    failed, accepted = logs.lines()
    assert (failed["status"], failed["integrationError"]) == ("500", lacking.integration_error)
    assert (accepted["status"], accepted["integrationError"]) == ("200", "-")


def test_a_missing_signature_header_fails_the_integration_when_emulated(
    ingest: Deployment, clients: Clients
) -> None:
    gateway = gateway_for(ingest, clients, missing="fail")

    response = gateway.handle(post("/twilio"))

    assert response.status == 500
    assert response.integration_error == (
        "Unable to resolve property MessageAttributes from source $request.header.x-twilio-signature"
    )
    assert queued(clients, ingest) == []


def test_routes_are_served_under_the_base_path(
    ingest: Deployment, clients: Clients, logs: RecordedLogs
) -> None:
    # Given an API mapping with the base path "hooks"
    gateway = gateway_for(ingest, clients, logs, base_path="hooks")

    # When a callback arrives below it, and one at the bare route
    mapped = gateway.handle(post("/hooks/twilio", headers={"X-Twilio-Signature": "abc"}))
    bare = gateway.handle(post("/twilio"))

    # Then only the mapped path is a route; the path keeps the base path, the route key does not
    assert (mapped.status, bare.status) == (200, 404)
    (message,) = queued(clients, ingest)
    forwarded = parse_forwarded_request(message["Body"], message["MessageAttributes"])
    assert (forwarded.path, forwarded.route) == ("/hooks/twilio", "POST /twilio")
    assert [line["route"] for line in logs.lines()] == ["POST /twilio", "-"]


def test_every_request_gets_an_access_log_line_in_the_stage_format(
    gateway: HttpGateway, ingest: Deployment, logs: RecordedLogs
) -> None:
    # When a good request and an unknown route arrive
    accepted = post("/twilio", headers={"X-Twilio-Signature": "abc"})
    gateway.handle(accepted)
    gateway.handle(post("/nope"))

    # Then each has one line in the access log group, in the template's format
    api = ingest.apis[0]
    assert api.access_log is not None
    groups = {(group, stream, mergeable) for group, stream, _, mergeable in logs.puts}
    assert groups == {(api.access_log.log_group, f"{api.api_id}_$default", True)}
    assert logs.lines() == [
        {
            "requestId": accepted.request_id,
            "ip": "54.172.60.1",
            "route": "POST /twilio",
            "status": "200",
            "integrationError": "-",
        },
        {
            "requestId": logs.lines()[1]["requestId"],
            "ip": "54.172.60.1",
            "route": "-",
            "status": "404",
            "integrationError": "-",
        },
    ]


def test_access_log_variables_without_a_value_render_as_a_dash() -> None:
    line = render_access_log(
        '{"a":"$context.status","b":"$context.error.message",\n"c":"$context.nope"}',
        {
            "status": "500",
            "error.message": "",
        },
    )

    assert json.loads(line) == {"a": "500", "b": "-", "c": "-"}


@pytest.fixture
def server(gateway: HttpGateway) -> Iterator[str]:
    http = HttpGatewayServer("127.0.0.1", 0)
    http.serve(gateway)
    yield f"http://127.0.0.1:{http.port}"
    http.close()


def test_the_server_answers_over_http_and_keeps_going(
    server: str, clients: Clients, ingest: Deployment
) -> None:
    # Given a request API Gateway refuses, then a good one
    refused = requests.post(f"{server}/twilio-params?id=%22", data="A=1", timeout=10)
    accepted = requests.post(
        f"{server}/twilio?ignored=1",
        data="MessageSid=SM1",
        headers={"X-Twilio-Signature": "abc", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    missing = requests.get(f"{server}/twilio", timeout=10)

    # Then each gets API Gateway's answer and the good one is queued
    assert refused.status_code == 500
    assert accepted.status_code == 200
    assert accepted.headers["Content-Type"] == "application/json"
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    (message,) = queued(clients, ingest)
    assert message["MessageAttributes"]["SourceIp"]["StringValue"] == "=127.0.0.1"
    assert message["MessageAttributes"]["Signature"]["StringValue"] == "=abc"
