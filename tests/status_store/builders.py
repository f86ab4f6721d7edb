"""Real callback records and SQS events for the status store tests (built with the record contract)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from status_callbacks.domain.record import CallbackRecord, build_record

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "aws_stacks" / "SaveStatusCallbackToDynamo" / "template.yaml"
EVENTS_DIR = ROOT / "events" / "SaveStatusCallbackToDynamo"

ACCOUNT_SID = "AC" + "fedcba9876543210" * 2
SERVICE_SID = "MG" + "00112233445566778899aabbccddeeff"
T0 = 1_718_000_000_000


def message_sid(n: int) -> str:
    return f"SM{n:032x}"


def call_sid(n: int) -> str:
    return f"CA{n:032x}"


def message_params(sid: str, status: str, error_code: str | None = None, **extra: str) -> dict[str, str]:
    """Twilio's form parameters for an outbound SMS status callback."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": sid,
        "MessageStatus": status,
        "MessagingServiceSid": SERVICE_SID,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": "+15005550001",
        **extra,
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params


def call_params(sid: str, status: str, sequence: int, **extra: str) -> dict[str, str]:
    """Twilio's form parameters for a voice call status callback."""
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": status,
        "Called": "+15005550001",
        "Caller": "+15005550006",
        "Direction": "outbound-api",
        "From": "+15005550006",
        "To": "+15005550001",
        "SequenceNumber": str(sequence),
        "CallbackSource": "call-progress-events",
        **extra,
    }


def message_record(
    sid: str, status: str, received_at: int = T0, error_code: str | None = None, **extra: str
) -> CallbackRecord:
    return build_record(message_params(sid, status, error_code, **extra), {}, "/twilio", received_at)


def call_record(sid: str, status: str, sequence: int, received_at: int = T0, **extra: str) -> CallbackRecord:
    return build_record(call_params(sid, status, sequence, **extra), {}, "/twilio", received_at)


def sqs_message(body: str, message_id: str | None = None) -> dict[str, Any]:
    """One SQS record as Lambda's event source mapping delivers it."""
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEBreceipt",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(T0),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(T0),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:status-queue",
        "awsRegion": "us-east-1",
    }


def sqs_event(*bodies: CallbackRecord | str) -> dict[str, Any]:
    """An SQS event whose bodies are raw-delivered records, or any given strings."""
    return {
        "Records": [
            sqs_message(body.to_json() if isinstance(body, CallbackRecord) else body) for body in bodies
        ]
    }


def sample_event(name: str) -> dict[str, Any]:
    """A sample Lambda event from events/SaveStatusCallbackToDynamo/."""
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
