"""The alert a person receives for one error event: a subject line and plain text.

EventBridge cannot set an SNS subject, and its input transformer delivers a
string template with its quotes, so the alerts rule targets a small function
that publishes this message instead. It names the code, what it means, what
happens next and where to look; never a phone number. Pure: no AWS calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.routes import Action, route_for

# SNS: "Subjects must be UTF-8 text with no line breaks or control characters, and less than 100
# characters long."
MAX_SUBJECT_CHARACTERS = 99
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
NEXT_STEPS: Mapping[Action, str] = {
    Action.FLAG_NUMBER: (
        "The recipient's number is flagged so senders can suppress it "
        "(twilio-callbacks query number <number>)."
    ),
    Action.CHECK_SENDER_REGISTRATION: (
        "Check the sender's registration (A2P 10DLC campaign or toll-free verification) "
        "in the Twilio console."
    ),
    Action.REVIEW_MESSAGE_CONTENT: "Review the message content and the sender's registration.",
    Action.CHECK_ACCOUNT: "Check the Twilio account's status in the Twilio console.",
}


@dataclass(frozen=True)
class AlertMessage:
    """What SNS delivers: the subject (email subject line) and the body."""

    subject: str
    text: str


def _single_line(value: object) -> str:
    return _CONTROL.sub(" ", str(value)).strip()


def alert_message(detail: Mapping[str, Any]) -> AlertMessage:
    """Subject and text for one error event's detail (``ErrorCode``, ``record`` and the enrichment)."""
    record = CallbackRecord.from_dict(detail["record"])
    code = _single_line(detail.get("ErrorCode") or record.error_code or "unknown")
    route = route_for(code)
    severity = _single_line(detail.get("Severity") or route.severity)
    reason = _single_line(detail.get("Reason") or route.reason)
    resource = f"{record.product} {record.sid or '(no SID)'}"
    probe = f"[probe {record.probe_run}] " if record.probe_run else ""
    subject = _single_line(f"{probe}[{severity}] Twilio error {code} on {resource}")[:MAX_SUBJECT_CHARACTERS]
    actions = [
        Action(action) for action in detail.get("Actions") or () if action in Action.__members__.values()
    ]
    received = datetime.fromtimestamp(record.received_at / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        *(
            [f"A probe sent by `twilio-callbacks verify` (run {record.probe_run}): no action needed.", ""]
            if record.probe_run
            else []
        ),
        f"Twilio error {code} on {resource} (status {record.status or 'unknown'})",
        "",
        reason.rstrip(".") + ".",
        "",
        f"Severity: {severity}",
        *(f"Next: {NEXT_STEPS[action]}" for action in actions),
        f"Account: {record.account_sid or 'unknown'}",
        f"Received: {received}",
        f"Event: {record.event_id}",
    ]
    if record.sid:
        lines.append(f"History: twilio-callbacks query message {record.sid}")
    return AlertMessage(subject=subject, text="\n".join(_single_line(line) for line in lines) + "\n")
