"""Builders for the archive tests: real callback records and the Lambda SQS events that carry them.

Records are built with the shared ``build_record`` (so event ids are the real
content hashes) and events carry them as the raw-delivered SQS bodies the
archive queue receives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from status_callbacks.domain.record import CallbackRecord, build_record

ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = ROOT / "aws_stacks" / "SaveStatusCallbackToS3"
TEMPLATE_PATH = STACK_DIR / "template.yaml"
EVENTS_DIR = ROOT / "events" / "SaveStatusCallbackToS3"
BUCKET = "archive-test-bucket"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:SaveStatusCallbackToS3-ArchiveQueue-1A2B3C4D5E6F"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SERVICE_SID = "MG" + "00112233445566778899aabbccddeeff"
# Phone numbers that must never appear in logs.
TO_NUMBER = "+15558675310"
FROM_NUMBER = "+15005550006"


def epoch_ms(iso: str) -> int:
    """Epoch milliseconds of an ISO-8601 UTC time such as ``2026-01-31T23:59:59.999Z``."""
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def message_record(
    sid: str,
    status: str,
    received_at: int,
    error_code: str | None = None,
    category: str | None = None,
    route: str = "/twilio-params",
) -> CallbackRecord:
    """A real record of an outbound SMS status callback."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": FROM_NUMBER,
        "MessageSid": sid,
        "MessageStatus": status,
        "MessagingServiceSid": SERVICE_SID,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": TO_NUMBER,
    }
    if error_code:
        params["ErrorCode"] = error_code
    custom = {"id": f"order-{sid[-4:]}", "category": category} if category else {}
    return build_record(params, custom, route if category else "/twilio", received_at)


def sqs_message(body: str, message_id: str, sent_timestamp: int = 1_769_904_000_000) -> dict[str, Any]:
    """One record of the Lambda SQS event, as the archive queue's event source mapping builds it."""
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB-{message_id}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent_timestamp),
            "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
            "ApproximateFirstReceiveTimestamp": str(sent_timestamp + 40),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode("utf-8")).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def sqs_event(bodies: Sequence[str], id_prefix: str = "msg") -> dict[str, Any]:
    """A Lambda SQS event with one message per body; message ids are ``<prefix>-<n>``."""
    return {"Records": [sqs_message(body, f"{id_prefix}-{n}") for n, body in enumerate(bodies)]}


def failed_ids(response: Mapping[str, Any]) -> set[str]:
    """Message ids a partial batch response hands back to SQS."""
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


@dataclass(frozen=True)
class InvocationContext:
    """The attributes of the Lambda context object that Powertools reads."""

    function_name: str = "SaveStatusCallbackToS3-ArchiverFunction-1A2B3C"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:SaveStatusCallbackToS3-ArchiverFunction-1A2B3C"
    )
    aws_request_id: str = "6f1c0a52-7d0e-4d55-9d5b-2f1f9c1e8a11"
    log_group_name: str = "/aws/lambda/SaveStatusCallbackToS3-ArchiverFunction-1A2B3C"
    log_stream_name: str = "2026/02/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass(frozen=True)
class HttpStatus:
    """The status line botocore reads from a response a hook returned in place of the call."""

    status_code: int


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/SaveStatusCallbackToS3/."""
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
