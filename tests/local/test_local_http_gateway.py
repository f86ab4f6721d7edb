"""The local HTTP gateway maps requests to SQS exactly as api.yaml tells API Gateway to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from status_callbacks.forwarded import parse_forwarded_request
from twilio_callbacks_cli.local.aws import Clients
from twilio_callbacks_cli.local.http_gateway import (
    MAX_PAYLOAD_BYTES,
    HttpGateway,
    HttpGatewayServer,
    HttpRequest,
    decode_query,
)
from twilio_callbacks_cli.local.provision import Deployment, Provisioner
from twilio_callbacks_cli.local.templates import load_stack

INGEST = Path(__file__).resolve().parents[2] / "aws_stacks" / "StatusCallbackHandler"
DOMAIN = "127.0.0.1:3000"


@pytest.fixture
def ingest(clients: Clients) -> Deployment:
    """The real ingest template provisioned into moto (queues, topic, the HTTP API's routes)."""
    provisioner = Provisioner(
        clients, region="us-east-1", account_id="123456789012", api_base_url=f"http://{DOMAIN}"
    )
    return provisioner.deploy([load_stack(INGEST, "us-east-1")])


@pytest.fixture
def gateway(ingest: Deployment, clients: Clients) -> HttpGateway:
    return HttpGateway(ingest.apis, lambda: clients.sqs, DOMAIN)


def queued(clients: Clients, ingest: Deployment) -> list[dict[str, Any]]:
    url = ingest.stack("StatusCallbackHandler").outputs["IngestQueueUrl"][0]
    response = clients.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    return list(response.get("Messages") or [])


def post(path: str, query: str = "", body: str = "A=1", headers: dict[str, str] | None = None) -> HttpRequest:
    return HttpRequest(
        method="POST",
        path=path,
        query=decode_query(query),
        headers={name.lower(): value for name, value in (headers or {}).items()},
        body=body,
        source_ip="54.172.60.1",
        domain=DOMAIN,
    )


def test_query_strings_are_percent_decoded_and_plus_is_kept() -> None:
    assert decode_query("id=a%20b&category=caf%C3%A9%2B%26%27&x=1+2&x=3&empty=") == {
        "id": "a b",
        "category": "café+&'",
        "x": "1+2,3",
        "empty": "",
    }


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
    request = post(path)
    response = gateway.handle(HttpRequest(method, request.path, {}, {}, "A=1", "1.2.3.4", DOMAIN))

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
