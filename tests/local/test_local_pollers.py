"""The Lambda service's part: SQS batches in, partial failures honoured, async retries and destinations."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aws_emulator.aws import Clients
from aws_emulator.functions import FunctionHost
from aws_emulator.pollers import (
    AsyncSourcePoller,
    EventSourcePoller,
    failed_message_ids,
    render_input_template,
    sns_lambda_record,
    transform_input,
)
from aws_emulator.provision import (
    AsyncSourceSpec,
    EventSourceSpec,
    FunctionSpec,
    InvokeConfigSpec,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"

PROBE_HANDLER = """
import json
import os

IMPORTED_WITH = os.environ.get("PROBE_SETTING")


def handler(event, context):
    with open(os.environ["PROBE_FILE"], "a", encoding="utf-8") as probe:
        probe.write(json.dumps({
            "event": event,
            "function": context.function_name,
            "setting": os.environ.get("PROBE_SETTING"),
            "imported_with": IMPORTED_WITH,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }) + "\\n")
    failures = []
    for record in event.get("Records", []):
        body = record.get("body", "")
        if body == "raise" or event.get("raise"):
            raise RuntimeError("handler failed")
        if body.startswith("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
        if body == "bogus":
            failures.append({"itemIdentifier": "not-in-this-batch"})
    if event.get("raise"):
        raise RuntimeError("handler failed")
    return {"batchItemFailures": failures}
"""


@pytest.fixture
def code_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "batch_probe_handler.py").write_text(textwrap.dedent(PROBE_HANDLER), encoding="utf-8")
    return folder


def function_spec(folder: Path, probe_file: Path, name: str = "Probe", setting: str = "on") -> FunctionSpec:
    return FunctionSpec(
        stack="Test",
        logical_id=name,
        name=f"Test-{name}",
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Test-{name}",
        code_folder=folder,
        handler="batch_probe_handler.handler",
        runtime="python3.13",
        timeout=30,
        memory_size=128,
        environment={"PROBE_FILE": str(probe_file), "PROBE_SETTING": setting},
    )


@pytest.fixture
def probe_file(tmp_path: Path) -> Path:
    return tmp_path / "invocations.jsonl"


@pytest.fixture
def host(code_folder: Path, probe_file: Path) -> Iterator[FunctionHost]:
    function_host = FunctionHost([function_spec(code_folder, probe_file)], {})
    function_host.load()
    yield function_host
    function_host.close()


def invocations(probe_file: Path) -> list[dict[str, Any]]:
    if not probe_file.exists():
        return []
    return [json.loads(line) for line in probe_file.read_text(encoding="utf-8").splitlines()]


def make_queue(clients: Clients, name: str, max_receive_count: int | None = None) -> tuple[str, str]:
    attributes = {"VisibilityTimeout": "1"}
    if max_receive_count:
        _, dlq_arn = make_queue(clients, f"{name}-dlq")
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
        )
    url = clients.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def poller(
    clients: Clients,
    host: FunctionHost,
    queue_arn: str,
    batch_size: int = 3,
    report: bool = True,
    **extra: Any,
) -> EventSourcePoller:
    spec = EventSourceSpec("Test", "ProbeMapping", "Test-Probe", queue_arn, batch_size, 0.2, report, **extra)
    function = next(iter(host.functions.values()))
    return EventSourcePoller(
        spec, function, host=host, sqs=clients.sqs, region=REGION, stop=threading.Event()
    )


def send_bodies(clients: Clients, url: str, *bodies: str) -> None:
    for body in bodies:
        clients.sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"Product": {"DataType": "String", "StringValue": "message"}},
        )


def visible_bodies(clients: Clients, url: str) -> list[str]:
    response = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return sorted(message["Body"] for message in response.get("Messages") or [])


def wait_for(condition: Callable[[], Any], seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_batches_honour_batch_size_and_carry_the_lambda_sqs_shape(
    clients: Clients, host: FunctionHost, probe_file: Path
) -> None:
    # Given seven messages and a mapping with BatchSize 3
    url, arn = make_queue(clients, "batching")
    send_bodies(clients, url, *(f"ok-{index}" for index in range(7)))

    # When the poller takes one batch
    handled = poller(clients, host, arn).poll_once()

    # Then the function saw three records in Lambda's SQS event shape, with its environment
    assert handled == 3
    (invocation,) = invocations(probe_file)
    records = invocation["event"]["Records"]
    assert len(records) == 3
    record = records[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == REGION
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["attributes"]["SentTimestamp"].isdigit()
    assert record["messageAttributes"]["Product"] == {
        "stringValue": "message",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["md5OfBody"] and record["receiptHandle"] and record["messageId"]
    assert invocation["setting"] == "on"
    assert invocation["function"] == "Test-Probe"
    assert 0 < invocation["remaining_ms"] <= 30_000
    # And the successes were deleted, the rest wait
    assert len(visible_bodies(clients, url)) == 4


def test_only_reported_failures_stay_on_the_queue(clients: Clients, host: FunctionHost) -> None:
    url, arn = make_queue(clients, "partial")
    send_bodies(clients, url, "ok-1", "fail-2", "ok-3")

    poller(clients, host, arn, batch_size=10).poll_once()

    time.sleep(1.1)  # the visibility timeout of the failed message
    assert visible_bodies(clients, url) == ["fail-2"]


def test_an_exception_keeps_the_whole_batch(clients: Clients, host: FunctionHost) -> None:
    url, arn = make_queue(clients, "raising")
    send_bodies(clients, url, "ok-1", "raise", "ok-3")

    poller(clients, host, arn, batch_size=10).poll_once()

    time.sleep(1.1)
    assert visible_bodies(clients, url) == ["ok-1", "ok-3", "raise"]


def test_an_unknown_item_identifier_fails_the_whole_batch(clients: Clients, host: FunctionHost) -> None:
    url, arn = make_queue(clients, "bogus")
    send_bodies(clients, url, "ok-1", "bogus")

    poller(clients, host, arn, batch_size=10).poll_once()

    time.sleep(1.1)
    assert visible_bodies(clients, url) == ["bogus", "ok-1"]


def test_without_report_batch_item_failures_a_returned_list_is_ignored(
    clients: Clients, host: FunctionHost
) -> None:
    url, arn = make_queue(clients, "no-report")
    send_bodies(clients, url, "ok-1", "fail-2")

    poller(clients, host, arn, batch_size=10, report=False).poll_once()

    time.sleep(1.1)
    assert visible_bodies(clients, url) == []


def test_a_poison_message_ends_in_the_dead_letter_queue(clients: Clients, host: FunctionHost) -> None:
    # Given a queue whose RedrivePolicy allows two receives
    url, arn = make_queue(clients, "poison", max_receive_count=2)
    dlq_url = clients.sqs.get_queue_url(QueueName="poison-dlq")["QueueUrl"]
    send_bodies(clients, url, "fail-always", "ok-1")
    subject = poller(clients, host, arn, batch_size=10)

    # When the poller keeps polling
    def moved() -> list[str]:
        subject.poll_once()
        return visible_bodies(clients, dlq_url)

    # Then moto's redrive moves the failing message, and only it, to the DLQ
    assert wait_for(moved) == ["fail-always"]
    assert visible_bodies(clients, url) == []


def test_filter_criteria_drop_messages_without_invoking(
    clients: Clients, host: FunctionHost, probe_file: Path
) -> None:
    url, arn = make_queue(clients, "filtered")
    send_bodies(clients, url, json.dumps({"kind": "keep"}), json.dumps({"kind": "drop"}), "not json")

    poller(clients, host, arn, batch_size=10, filter_patterns=('{"body": {"kind": ["keep"]}}',)).poll_once()

    (invocation,) = invocations(probe_file)
    assert [record["body"] for record in invocation["event"]["Records"]] == ['{"kind": "keep"}']
    time.sleep(1.1)
    assert visible_bodies(clients, url) == []


def test_failed_message_ids_follow_lambda_rules() -> None:
    ids = ["a", "b", "c"]

    assert failed_message_ids(None, ids) == set()
    assert failed_message_ids({"batchItemFailures": []}, ids) == set()
    assert failed_message_ids({"batchItemFailures": None}, ids) == set()
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == {"b"}
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, ids) == set(ids)
    assert failed_message_ids({"batchItemFailures": [{"id": "b"}]}, ids) == set(ids)


def test_each_function_gets_its_own_container(code_folder: Path, probe_file: Path) -> None:
    # Given two functions built from the same code with different environments
    first, second = (
        function_spec(code_folder, probe_file, "First", "one"),
        function_spec(code_folder, probe_file, "Second", "two"),
    )
    host = FunctionHost([first, second], {})
    host.load()
    try:
        # When both are invoked
        host.invoke(first, {"Records": []})
        host.invoke(second, {"Records": []})
    finally:
        host.close()

    # Then module-level state was initialised with each function's own environment
    assert [(item["function"], item["imported_with"]) for item in invocations(probe_file)] == [
        ("Test-First", "one"),
        ("Test-Second", "two"),
    ]
    # And the pipeline leaves nothing behind in the process
    assert "batch_probe_handler" not in sys.modules
    assert str(code_folder) not in sys.path


def test_async_failures_are_retried_then_sent_to_the_on_failure_destination(
    clients: Clients, host: FunctionHost, probe_file: Path
) -> None:
    # Given an internal queue standing in for a rule target, and a function that always fails
    source_url, _ = make_queue(clients, "rule-target")
    destination_url, destination_arn = make_queue(clients, "on-failure")
    function = next(iter(host.functions.values()))
    spec = AsyncSourceSpec(
        stack="Test",
        logical_id="Rule",
        kind="eventbridge",
        source_arn=f"arn:aws:events:{REGION}:{ACCOUNT}:rule/bus/Rule",
        target_arn=function.arn,
        target_id="Probe",
        queue_url=source_url,
    )
    subject = AsyncSourcePoller(
        spec,
        host,
        clients=clients,
        region=REGION,
        stop=threading.Event(),
        function=function,
        invoke_config=InvokeConfigSpec(function.name, 1, 3600, destination_arn),
    )
    event = {
        "id": "1",
        "detail-type": "errormessage",
        "source": "custom",
        "detail": {"ErrorCode": "30003"},
        "raise": True,
    }
    clients.sqs.send_message(QueueUrl=source_url, MessageBody=json.dumps(event))

    # When the poller keeps delivering
    def destination() -> list[dict[str, Any]]:
        subject.poll_once()
        response = clients.sqs.receive_message(QueueUrl=destination_url, WaitTimeSeconds=0)
        return list(response.get("Messages") or [])

    (message,) = wait_for(destination)

    # Then it tried 1 + MaximumRetryAttempts times and the destination got Lambda's invocation record
    assert len(invocations(probe_file)) == 2
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["functionArn"] == f"{function.arn}:$LATEST"
    assert record["requestPayload"] == event
    assert record["responsePayload"]["errorMessage"] == "handler failed"
    assert visible_bodies(clients, source_url) == []


def test_input_transformer_renders_text_as_eventbridge_does() -> None:
    event = {"detail": {"Alert": 'Error 30003 on "SM1"', "ErrorCode": "30003", "Actions": ["flag_number"]}}

    assert (
        render_input_template('"<alert>"', {"alert": "$.detail.Alert"}, event) == '"Error 30003 on \\"SM1\\""'
    )
    assert (
        render_input_template(
            '{"code": "<code>", "actions": <actions>}',
            {"code": "$.detail.ErrorCode", "actions": "$.detail.Actions"},
            event,
        )
        == '{"code": "30003", "actions": ["flag_number"]}'
    )
    assert transform_input(event, input_path="$.detail.ErrorCode") == "30003"
    assert transform_input(event, constant='{"fixed": true}') == '{"fixed": true}'
    assert transform_input(event) is event


def test_sns_notifications_become_lambda_sns_records() -> None:
    notification = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "Message": "{}",
        "Timestamp": "2024-01-01T00:00:00.000Z",
        "SigningCertURL": "https://cert",
        "UnsubscribeURL": "https://unsubscribe",
        "MessageAttributes": {"ErrorCode": {"Type": "String", "Value": "30003"}},
    }

    record = sns_lambda_record(notification, "arn:aws:sns:us-east-1:123456789012:t:sub")

    assert record["EventSource"] == "aws:sns"
    assert record["EventSubscriptionArn"] == "arn:aws:sns:us-east-1:123456789012:t:sub"
    assert record["Sns"]["SigningCertUrl"] == "https://cert"
    assert record["Sns"]["UnsubscribeUrl"] == "https://unsubscribe"
    assert record["Sns"]["MessageAttributes"] == {"ErrorCode": {"Type": "String", "Value": "30003"}}
