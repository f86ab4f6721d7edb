"""``redrive``: dead-lettered messages go back to their source queue intact, or are replayed."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from tests.cli.builders import FakeStack, register_stack
from twilio_callbacks_cli import aws as aws_module
from twilio_callbacks_cli.main import main

# What API Gateway forwards with a callback (see status_callbacks.forwarded): the validator needs all of it.
FORWARDED_ATTRIBUTES = {
    "Signature": {"DataType": "String", "StringValue": "=Ae/grVGFORpR6P4DqR+uzGnHzeQ="},
    "Domain": {"DataType": "String", "StringValue": "=a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"},
    "Path": {"DataType": "String", "StringValue": "=/twilio-params"},
    "Query.1.id": {"DataType": "String", "StringValue": "=order 42"},
    "Query.2.category": {"DataType": "String", "StringValue": "=Tom & Jerry's café"},
    "Trace": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
}


def run(capsys, *arguments):
    code = main(["redrive", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def receive_all(sqs, url):
    messages = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=600
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def depth(sqs, url):
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def dead_letter(pipeline, key, bodies, attributes=None):
    for body in bodies:
        extra = {"MessageAttributes": attributes} if attributes else {}
        pipeline.sqs.send_message(QueueUrl=pipeline.output(key), MessageBody=body, **extra)


def test_redrive_moves_messages_back_with_body_and_attributes(pipeline, capsys):
    # Given callbacks in the ingest DLQ, with the attributes API Gateway forwarded
    bodies = [f"MessageSid=SM{index:032x}&MessageStatus=sent" for index in range(13)]
    dead_letter(pipeline, "IngestDeadLetterQueueUrl", bodies, FORWARDED_ATTRIBUTES)
    # When the ingest DLQ is redriven
    code, out, _ = run(capsys, "--queue", "Ingest", "--json")
    # Then every message is back on the ingest queue, body and attributes intact, and the DLQ is empty
    assert code == 0
    [result] = json.loads(out)
    assert result["queue"] == "IngestDeadLetter"
    assert result["source_url"] == pipeline.output("IngestQueueUrl")
    assert result["source_found_by"] == "sqs redrive policy"
    # moto has no StartMessageMoveTask, so the move is done message by message
    assert result["method"] == "receive-send-delete"
    assert (result["moved"], result["failed"]) == (13, 0)
    moved = receive_all(pipeline.sqs, pipeline.output("IngestQueueUrl"))
    assert sorted(message["Body"] for message in moved) == sorted(bodies)
    for message in moved:
        assert message["MessageAttributes"] == FORWARDED_ATTRIBUTES
    assert depth(pipeline.sqs, pipeline.output("IngestDeadLetterQueueUrl")) == 0


def test_dry_run_moves_nothing(pipeline, capsys):
    dead_letter(pipeline, "StatusDeadLetterQueueUrl", ["a", "b"])
    code, out, _ = run(capsys, "--all", "--dry-run")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("StatusDeadLetter "))
    assert row.split()[:5] == [
        "StatusDeadLetter",
        "2",
        "SaveStatusCallbackToDynamo-StatusQueue",
        "receive-send-delete",
        "0",
    ]
    assert depth(pipeline.sqs, pipeline.output("StatusDeadLetterQueueUrl")) == 2
    assert depth(pipeline.sqs, pipeline.output("StatusQueueUrl")) == 0


def test_without_a_choice_it_lists_dead_letter_queues(pipeline, capsys):
    dead_letter(pipeline, "ArchiveDeadLetterQueueUrl", ["x"])
    code, out, _ = run(capsys)
    assert code == 2
    assert "choose what to redrive" in out
    assert {"IngestDeadLetter", "ArchiveDeadLetter", "StatusDeadLetter"} <= {
        line.split()[0] for line in out.splitlines()[2:] if line.strip()
    }
    assert depth(pipeline.sqs, pipeline.output("ArchiveDeadLetterQueueUrl")) == 1


def test_stack_selection_and_a_message_limit(pipeline, capsys):
    # Given messages in two stacks' DLQs
    dead_letter(pipeline, "StatusDeadLetterQueueUrl", [f"s{i}" for i in range(5)])
    dead_letter(pipeline, "ArchiveDeadLetterQueueUrl", ["a"])
    # When only the Dynamo stack's DLQs are redriven, at most 2 messages
    code, out, _ = run(capsys, "--stack", "dynamo", "--max-messages", "2", "--json")
    # Then 2 moved from the status DLQ, the rest and the archive DLQ are untouched
    assert code == 0
    assert [(r["queue"], r["moved"]) for r in json.loads(out)] == [("StatusDeadLetter", 2)]
    assert depth(pipeline.sqs, pipeline.output("StatusDeadLetterQueueUrl")) == 3
    assert depth(pipeline.sqs, pipeline.output("StatusQueueUrl")) == 2
    assert depth(pipeline.sqs, pipeline.output("ArchiveDeadLetterQueueUrl")) == 1


def test_unknown_queue_is_a_usage_error(pipeline, capsys):
    code, _, err = run(capsys, "--queue", "Nope")
    assert code == 2
    assert "no dead-letter queue matches" in err and "Ingest" in err


def test_source_found_by_the_outputs_naming_convention(pipeline, capsys):
    # Given a stack that outputs a queue and its DLQ, without SQS redrive configuration between them
    sqs = pipeline.sqs
    stack = FakeStack("ExtraConsumer")
    stack.outputs["ReplayQueueUrl"] = sqs.create_queue(QueueName="extra-replay")["QueueUrl"]
    stack.outputs["ReplayDeadLetterQueueUrl"] = sqs.create_queue(QueueName="extra-replay-dlq")["QueueUrl"]
    register_stack(pipeline.clients["cloudformation"], stack)
    sqs.send_message(QueueUrl=stack.outputs["ReplayDeadLetterQueueUrl"], MessageBody="record")
    # When that stack's DLQ is redriven (named by stack name)
    code, out, _ = run(capsys, "--ingest-stack", "ExtraConsumer", "--stack", "ExtraConsumer", "--json")
    # Then the source is the paired queue from the outputs
    assert code == 0
    [result] = json.loads(out)
    assert result["source_found_by"] == "stack outputs"
    assert [m["Body"] for m in receive_all(sqs, stack.outputs["ReplayQueueUrl"])] == ["record"]


@pytest.fixture
def invocations(monkeypatch):
    """Lambda Invoke calls the command makes (observed on its real clients; moto still answers them)."""
    calls: list[dict] = []
    original = aws_module.AwsTarget.client

    def client(self, service):
        created = original(self, service)
        if service == "lambda":
            created.meta.events.register(
                "before-call.lambda.Invoke",
                lambda params, **_: calls.append(params["body"]),
                unique_id="record",
            )
        return created

    monkeypatch.setattr(aws_module.AwsTarget, "client", client)
    return calls


def create_function(pipeline, name):
    iam = __import__("boto3").client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("handler.py", "def handler(event, context):\n    return event\n")
    lambda_client = __import__("boto3").client("lambda", region_name="us-east-1")
    return lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": archive.getvalue()},
    )["FunctionArn"]


def error_event(pipeline):
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "errormessage",
        "source": "custom.twilioStatusCallbackErrors",
        "account": "123456789012",
        "time": "2026-11-22T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"ErrorCode": "30003", "Actions": ["flag_number"], "record": {"event_id": "e" * 32}},
    }


def test_lambda_on_failure_records_are_replayed_to_the_function(pipeline, capsys, invocations):
    # Given the flagger's on-failure destination holds a record of an event it failed on
    function_arn = create_function(pipeline, "flagger")
    event = error_event(pipeline)
    record = {
        "version": "1.0",
        "timestamp": "2026-11-22T12:00:05.000Z",
        "requestContext": {
            "requestId": "c9b7d5a4",
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "throttled"},
    }
    dead_letter(pipeline, "FlaggerDeadLetterQueueUrl", [json.dumps(record)])
    # When that DLQ is redriven
    code, out, _ = run(capsys, "--queue", "Flagger", "--json")
    # Then the function is invoked asynchronously with the original event, and the record leaves the DLQ
    assert code == 0
    [result] = json.loads(out)
    assert result["method"] == "replay" and result["source_url"] is None
    assert (result["moved"], result["failed"]) == (1, 0)
    assert [json.loads(body) for body in invocations] == [event]
    assert depth(pipeline.sqs, pipeline.output("FlaggerDeadLetterQueueUrl")) == 0


def test_undelivered_events_go_back_to_their_bus(pipeline, capsys):
    # Given an error event EventBridge could not deliver to the alerts topic, and a rule watching the bus
    sqs, events = pipeline.sqs, pipeline.clients["events"]
    bus = pipeline.output("ErrorEventBusName")
    watcher = sqs.create_queue(QueueName="bus-watcher")["QueueUrl"]
    watcher_arn = sqs.get_queue_attributes(QueueUrl=watcher, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="watch",
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["custom.twilioStatusCallbackErrors"]}),
    )
    events.put_targets(Rule="watch", EventBusName=bus, Targets=[{"Id": "q", "Arn": watcher_arn}])
    event = error_event(pipeline)
    attributes = {
        "RULE_ARN": {
            "DataType": "String",
            "StringValue": f"arn:aws:events:us-east-1:123456789012:rule/{bus}/AlertsRule",
        },
        "TARGET_ARN": {"DataType": "String", "StringValue": pipeline.output("AlertsTopicArn")},
        "ERROR_CODE": {"DataType": "String", "StringValue": "SDK_CLIENT_ERROR"},
    }
    dead_letter(pipeline, "ErrorTargetsDeadLetterQueueUrl", [json.dumps(event)], attributes)
    # When it is redriven
    code, out, _ = run(capsys, "--queue", "ErrorTargets", "--json")
    # Then the event is back on its bus (rules see it again) and gone from the DLQ
    assert code == 0
    assert json.loads(out)[0]["moved"] == 1
    [delivered] = receive_all(sqs, watcher)
    replayed = json.loads(delivered["Body"])
    assert replayed["detail"] == event["detail"]
    assert replayed["detail-type"] == "errormessage"
    assert depth(sqs, pipeline.output("ErrorTargetsDeadLetterQueueUrl")) == 0


def test_unreplayable_messages_stay_and_fail_the_command(pipeline, capsys):
    dead_letter(pipeline, "FlaggerDeadLetterQueueUrl", ["not json", '{"neither": "a record nor an event"}'])
    code, out, _ = run(capsys, "--queue", "Flagger", "--json")
    assert code == 1
    [result] = json.loads(out)
    assert (result["moved"], result["failed"]) == (0, 2)
    assert result["note"].startswith("left in the DLQ: ")
    assert depth(pipeline.sqs, pipeline.output("FlaggerDeadLetterQueueUrl")) == 2
