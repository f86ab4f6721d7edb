"""The faults speak each service's wire format: the SDK reads them as the real service's answers.

Error replies are fed to real boto3 clients (a ``before-send`` hook answers
in the network's place), so the code, the HTTP status and the SDK's retry
decision are the SDK's own. Partial batch failures go through a moto server
behind `Traffic`, as in the pipeline: moto performs only the entries that
did not fail, and the SDK reads the failed ones from the answer.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from aws_emulator.traffic import AwsRequest, Forward, Reply, Traffic
from pipeline_harness.faults import (
    FailRequests,
    Fault,
    PublishBatchPartialFailure,
    PutEventsPartialFailure,
    UnparseableResponse,
    error_event_id,
    fail_with_5xx,
    fraction_of_entries,
    injected,
    secrets_unavailable,
    throttle,
)

REGION = "us-east-1"
# What each client's operation is called on the wire, for the hook to build the AwsRequest.
CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "sns": (
        "PublishBatch",
        lambda c: c.publish_batch(
            TopicArn="arn:aws:sns:us-east-1:1:t", PublishBatchRequestEntries=[{"Id": "a", "Message": "m"}]
        ),
    ),
    "s3": ("PutObject", lambda c: c.put_object(Bucket="b", Key="k", Body=b"x")),
    "dynamodb": ("PutItem", lambda c: c.put_item(TableName="t", Item={"sid": {"S": "x"}})),
    "events": (
        "PutEvents",
        lambda c: c.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}]),
    ),
    "secretsmanager": ("GetSecretValue", lambda c: c.get_secret_value(SecretId="s")),
}


def answering_client(service: str, fault: Fault, mode: str = "legacy") -> tuple[Any, list[int]]:
    """A boto3 client whose every request is answered by ``fault`` (no network); attempts counted."""
    client = boto3.client(
        service,  # type: ignore[call-overload]
        region_name=REGION,
        endpoint_url="http://faults.invalid",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries=cast(Any, {"mode": mode})),
    )
    attempts: list[int] = []
    operation = CALLS[service][0]

    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        raw_body: Any = request.body
        body = raw_body.read() if hasattr(raw_body, "read") else raw_body or b""
        body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        headers = {
            name.lower(): value.decode("utf-8") if isinstance(value, bytes) else str(value)
            for name, value in request.headers.items()
        }
        decision = fault(AwsRequest(service, operation, request.method, request.url, headers, body))
        attempts.append(1)
        assert isinstance(decision, Reply), decision
        raw = _Raw(decision.body)
        return AWSResponse(
            request.url,
            decision.status,
            HTTPHeaders.from_pairs([("Content-Type", decision.content_type), *decision.headers]),
            raw,
        )

    client.meta.events.register("before-send", answer)
    return client, attempts


class _Raw(io.BytesIO):
    def stream(self, amt: int = 1024, decode_content: bool = True) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SDK's retry decisions but skip its sleeps (botocore sleeps with time.sleep)."""
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _seconds: None)


@pytest.mark.parametrize(
    ("service", "make_fault", "code", "status"),
    [
        ("sns", lambda: throttle("sns", "PublishBatch"), "Throttling", 400),
        ("sns", lambda: fail_with_5xx("sns", "PublishBatch"), "InternalError", 500),
        ("s3", lambda: throttle("s3", "PutObject"), "SlowDown", 503),
        ("s3", lambda: fail_with_5xx("s3", "PutObject"), "InternalError", 500),
        ("dynamodb", lambda: throttle("dynamodb", "PutItem"), "ProvisionedThroughputExceededException", 400),
        ("dynamodb", lambda: fail_with_5xx("dynamodb", "PutItem"), "InternalServerError", 500),
        ("events", lambda: throttle("events", "PutEvents"), "ThrottlingException", 400),
        ("secretsmanager", secrets_unavailable, "ServiceUnavailable", 503),
    ],
)
def test_error_replies_are_read_as_the_services_own_retryable_errors(
    no_backoff: None, service: str, make_fault: Callable[[], FailRequests], code: str, status: int
) -> None:
    # Given a client whose calls all get the injected error
    fault = make_fault()
    client, attempts = answering_client(service, fault, mode="standard")

    # When it calls
    with pytest.raises(ClientError) as raised:
        CALLS[service][1](client)

    # Then the SDK sees the service's code and status, and retried it as a transient error
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert len(attempts) == fault.injected == 3  # standard mode: three attempts


def test_times_and_probability_decide_which_requests_are_faulted() -> None:
    # Given a fault for two of the requests, at most, and one that never fires
    twice = throttle("sns", "PublishBatch", times=2)
    never = fail_with_5xx("sns", "PublishBatch", probability=0.0)
    request = AwsRequest("sns", "PublishBatch", "POST", "/", {}, b"")
    other = AwsRequest("sns", "Publish", "POST", "/", {}, b"")

    decisions = [twice(request) for _ in range(4)] + [never(request), twice(other)]

    assert [isinstance(decision, Reply) for decision in decisions] == [True, True, False, False, False, False]
    assert (twice.matched, twice.injected, never.matched, never.injected) == (4, 2, 1, 0)


def test_an_unparseable_answer_raises_what_handlers_do_not_catch() -> None:
    # The validator catches BotoCoreError and ClientError around PublishBatch; this is neither
    client, _ = answering_client("sns", UnparseableResponse("sns", "PublishBatch", take_effect=False))

    with pytest.raises(ResponseParserError):
        CALLS["sns"][1](client)


# --- partial failures through moto ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[tuple[str, Traffic]]:
    """A moto server behind `Traffic`, as the local runner runs it."""
    traffic = Traffic()
    server = make_server(
        "127.0.0.1", 0, traffic.wrap(DomainDispatcherApplication(create_backend_app)), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", traffic
    server.shutdown()
    thread.join(timeout=5)


def _client(endpoint: str, service: str) -> Any:
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_publish_batch_partial_failure_publishes_the_rest_and_reports_the_failed(
    moto_endpoint: tuple[str, Traffic],
) -> None:
    endpoint, traffic = moto_endpoint
    sns, sqs = _client(endpoint, "sns"), _client(endpoint, "sqs")
    topic = sns.create_topic(Name="partial")["TopicArn"]
    queue = sqs.create_queue(QueueName="partial-observer")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    entries = [{"Id": f"e{index}", "Message": f"message {index}"} for index in range(6)]
    fault = PublishBatchPartialFailure(
        fail_entry=lambda entry: entry["Id"] in {"e1", "e4"}, attempts_per_entry=1
    )

    with injected(traffic, fault):
        first = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
        retried = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries[1:2])

    assert sorted(item["Id"] for item in first["Successful"]) == ["e0", "e2", "e3", "e5"]
    assert [(item["Id"], item["SenderFault"]) for item in first["Failed"]] == [("e1", False), ("e4", False)]
    assert [item["Id"] for item in retried["Successful"]] == ["e1"]  # each entry fails once only
    delivered = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        delivered += [message["Body"] for message in messages]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in messages],
        )
    assert sorted(delivered) == [f"message {index}" for index in (0, 1, 2, 3, 5)]
    assert fault.failed_keys == {"e1": 1, "e4": 1}


def test_publish_batch_with_every_entry_failed_is_answered_without_moto(
    moto_endpoint: tuple[str, Traffic],
) -> None:
    endpoint, traffic = moto_endpoint
    sns = _client(endpoint, "sns")
    topic = sns.create_topic(Name="refused")["TopicArn"]
    with injected(traffic, PublishBatchPartialFailure()):
        response = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[{"Id": "a", "Message": "m"}])

    assert response["Successful"] == []
    assert [item["Id"] for item in response["Failed"]] == ["a"]


def _event(event_id: str) -> dict[str, Any]:
    return {
        "Source": "custom.test",
        "DetailType": "errormessage",
        "Detail": json.dumps({"record": {"event_id": event_id}}),
        "EventBusName": "default",
    }


def test_put_events_partial_failure_keeps_the_order_and_counts_the_failed(
    moto_endpoint: tuple[str, Traffic],
) -> None:
    endpoint, traffic = moto_endpoint
    events = _client(endpoint, "events")
    entries = [_event(f"id{index}") for index in range(5)]
    fault = PutEventsPartialFailure(fail_entry=lambda entry: error_event_id(entry) in {"id0", "id3"})

    with injected(traffic, fault):
        response = events.put_events(Entries=entries)

    assert response["FailedEntryCount"] == 2
    results = response["Entries"]
    assert [("ErrorCode" in result, "EventId" in result) for result in results] == [
        (True, False),
        (False, True),
        (False, True),
        (True, False),
        (False, True),
    ]
    assert fault.failed_keys == {"id0": 1, "id3": 1}


def test_a_stable_fraction_of_entries_is_chosen_by_identity() -> None:
    choose = fraction_of_entries(0.5, key=error_event_id)
    entries = [_event(f"event-{index}") for index in range(400)]

    chosen = [choose({key: str(value) for key, value in entry.items()}) for entry in entries]

    assert 150 < sum(chosen) < 250
    # The same callback is chosen again however its copies differ (a retry received later)
    later = [{**entry, "Time": "2026-01-01T00:00:00Z"} for entry in entries]
    assert chosen == [choose({key: str(value) for key, value in entry.items()}) for entry in later]


def test_forward_is_used_for_partial_failures_only_when_an_entry_fails() -> None:
    fault = PublishBatchPartialFailure(fail_entry=lambda entry: False)
    request = AwsRequest(
        "sns",
        "PublishBatch",
        "POST",
        "/",
        {},
        b"Action=PublishBatch&PublishBatchRequestEntries.member.1.Id=a",
    )

    assert fault(request) is None
    assert fault.injected == 0
    assert isinstance(PublishBatchPartialFailure()(request), Reply)
    assert not isinstance(UnparseableResponse("sns", "PublishBatch")(request), Reply)
    assert isinstance(UnparseableResponse("sns", "PublishBatch")(request), Forward)
