"""Fixtures for the error router stack: moto-backed AWS built from the stack's own template.

Tables are created from the template's definitions and the template's rules
(event patterns) are put on a moto bus with SQS queues as their targets,
because moto evaluates patterns for SQS targets. What the tests prove about
routing therefore holds for the template.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError
from moto import mock_aws

from aws_emulator.templates import load_template
from status_callbacks.domain.record import CallbackRecord, build_record

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "aws_stacks" / "CheckForStatusCallbackErrors" / "template.yaml"
EVENTS_DIR = ROOT / "events" / "CheckForStatusCallbackErrors"
REGION = "us-east-1"
ACCOUNT_SID = "AC00000000000000000000000000000001"

# A rule as users of the original project wrote them: it must keep matching.
ORIGINAL_STYLE_RULE = {
    "source": ["custom.twilioStatusCallbackErrors"],
    "detail-type": ["errormessage"],
    "detail": {"ErrorCode": ["30006"]},
}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def resolve(node: Any, template: dict[str, Any]) -> Any:
    """Replace ``Ref`` to parameters by their defaults (lists for CommaDelimitedList)."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in template["Parameters"]:
            parameter = template["Parameters"][node["Ref"]]
            if parameter["Type"] == "CommaDelimitedList":
                return [part.strip() for part in str(parameter["Default"]).split(",")]
            return parameter["Default"]
        return {key: resolve(value, template) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, template) for value in node]
    return node


def create_table(client: Any, template: dict[str, Any], logical_id: str) -> str:
    """Create a table exactly as the template defines it (keys, billing, TTL), named for the test."""
    properties = template["Resources"][logical_id]["Properties"]
    name = f"{logical_id}-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        BillingMode=properties["BillingMode"],
    )
    if "TimeToLiveSpecification" in properties:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification=properties["TimeToLiveSpecification"]
        )
    return name


class LambdaContext:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name = "error-tests"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:error-tests"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/error-tests"
    log_stream_name = "2026/01/01/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


def error_callback(
    code: str = "30006",
    *,
    sid: str = "SM00000000000000000000000000000001",
    status: str = "undelivered",
    to: str = "+14155550123",
    received_at: int = 1_767_225_600_000,
    **extra: str,
) -> CallbackRecord:
    """A message status callback record carrying an error code, as the validator publishes it."""
    twilio = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": "+14155550199",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": to,
        **extra,
    }
    if code:
        twilio["ErrorCode"] = code
    return build_record(twilio, {"id": "order-1", "category": "alerts"}, "/twilio-params", received_at)


@pytest.fixture
def sample_event() -> Any:
    """Loads a sample event of the stack from events/CheckForStatusCallbackErrors."""

    def load(name: str) -> dict[str, Any]:
        return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
def make_callback() -> Any:
    """Builds error callback records (see ``error_callback``)."""
    return error_callback


@pytest.fixture
def make_sqs_event() -> Any:
    """Builds SQS events (see ``sqs_event``)."""
    return sqs_event


def sqs_event(*bodies: str) -> dict[str, Any]:
    """An SQS event as Lambda delivers it, one record per body, each with a fresh message id."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"handle-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000"},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:error-queue",
                "awsRegion": REGION,
            }
            for index, body in enumerate(bodies)
        ]
    }


@dataclass
class PutEventsFaults:
    """Makes chosen PutEvents entries fail, through botocore's event hooks on the moto-backed client.

    A failed entry is taken out of the request before moto sees it (so it is
    really not delivered) and put back into the response as EventBridge
    reports it: an entry with ``ErrorCode`` and a higher ``FailedEntryCount``.
    """

    failures_left: dict[str, int] = field(default_factory=dict)
    calls_to_raise: int = 0
    calls: list[list[dict[str, Any]]] = field(default_factory=list)

    def attach(self, client: Any) -> PutEventsFaults:
        client.meta.events.register("provide-client-params.eventbridge.PutEvents", self._take_out)
        client.meta.events.register("before-call.eventbridge.PutEvents", self._answer_for_moto)
        client.meta.events.register("after-call.eventbridge.PutEvents", self._put_back)
        return self

    def fail(self, record: CallbackRecord, times: int) -> None:
        self.failures_left[record.event_id] = times

    def sent_event_ids(self) -> list[str]:
        return [json.loads(entry["Detail"])["record"]["event_id"] for call in self.calls for entry in call]

    def _take_out(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> dict[str, Any] | None:
        entries = params["Entries"]
        self.calls.append(list(entries))
        failing = []
        for position, entry in enumerate(entries):
            event_id = json.loads(entry["Detail"])["record"]["event_id"]
            if self.failures_left.get(event_id, 0) > 0:
                self.failures_left[event_id] -= 1
                failing.append(position)
        context["failing_positions"] = failing
        if failing and len(failing) < len(entries):
            return {**params, "Entries": [e for i, e in enumerate(entries) if i not in failing]}
        return None

    def _answer_for_moto(self, params: Any, context: dict[str, Any], **_: Any) -> Any:
        if self.calls_to_raise > 0:
            self.calls_to_raise -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "PutEvents")
        failing = context.get("failing_positions", [])
        if failing and len(failing) == len(self.calls[-1]):
            context["answered_without_moto"] = True
            response = AWSResponse(
                url="https://events.example", status_code=200, headers=HTTPHeaders(), raw=None
            )
            return response, {"FailedEntryCount": len(failing), "Entries": [_FAILED_ENTRY] * len(failing)}
        return None

    def _put_back(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        failing = context.get("failing_positions", [])
        if not failing or context.get("answered_without_moto"):
            return
        for position in failing:
            parsed["Entries"].insert(position, dict(_FAILED_ENTRY))
        parsed["FailedEntryCount"] = parsed.get("FailedEntryCount", 0) + len(failing)


_FAILED_ENTRY = {"ErrorCode": "InternalFailure", "ErrorMessage": "injected failure"}


@dataclass
class ErrorStack:
    """The stack's AWS resources in moto, with a capture queue behind each of the template's rules."""

    events: Any
    dynamodb: Any
    sqs: Any
    bus_name: str
    idempotency_table: str
    number_flags_table: str
    flag_queue_url: str
    alerts_queue_url: str
    original_rule_queue_url: str
    faults: PutEventsFaults
    sleeps: list[float]

    def drain(self, queue_url: str) -> list[Any]:
        """Every message on a capture queue, JSON-decoded."""
        bodies: list[Any] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return bodies
            for message in batch:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _capture(stack_sqs: Any, events: Any, bus: str, name: str, pattern: Any, target: dict[str, Any]) -> str:
    queue_url = stack_sqs.create_queue(QueueName=f"capture-{name}")["QueueUrl"]
    queue_arn = stack_sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{**target, "Id": name, "Arn": queue_arn}])
    return queue_url


@pytest.fixture
def error_stack(template: dict[str, Any]) -> Iterator[ErrorStack]:
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        bus_name = "errors-under-test"
        events.create_event_bus(Name=bus_name)
        resources = template["Resources"]
        flag_rule = resolve(resources["FlagNumberRule"]["Properties"], template)
        alerts_rule = resolve(resources["AlertsRule"]["Properties"], template)
        # The alerts rule hands the whole event to the alerter (no input transformer).
        alerts_target: dict[str, Any] = {}
        sleeps: list[float] = []
        yield ErrorStack(
            events=events,
            dynamodb=dynamodb,
            sqs=sqs,
            bus_name=bus_name,
            idempotency_table=create_table(dynamodb, template, "IdempotencyTable"),
            number_flags_table=create_table(dynamodb, template, "NumberFlagsTable"),
            flag_queue_url=_capture(sqs, events, bus_name, "flag-number", flag_rule["EventPattern"], {}),
            alerts_queue_url=_capture(
                sqs, events, bus_name, "alerts", alerts_rule["EventPattern"], alerts_target
            ),
            original_rule_queue_url=_capture(
                sqs, events, bus_name, "original-30006", ORIGINAL_STYLE_RULE, {}
            ),
            faults=PutEventsFaults().attach(events),
            sleeps=sleeps,
        )
