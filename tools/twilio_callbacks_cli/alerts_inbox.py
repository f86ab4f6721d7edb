"""The alerts inbox: a queue subscribed to the alerts topic (error stack parameter AlertsInbox=Enabled).

The subscription keeps SNS's envelope, so each message carries the alert's
``Subject`` and ``Message`` as an email subscriber receives them. Reading is
non-destructive: messages are received with a visibility timeout that covers
the read, then made visible again (or deleted, when asked to clear them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Long enough to read a full inbox; a message not released by then reappears by itself.
VISIBILITY_SECONDS = 60
# An inbox keeps 4 days of alerts; reading stops here and says so.
MAX_ALERTS = 1000
_BATCH = 10
# A long poll asks every SQS server, so one empty answer means everything visible was read.
_WAIT_SECONDS = 1


@dataclass(frozen=True)
class Alert:
    """One alert as a person receives it."""

    message_id: str
    receipt_handle: str
    sent_at: int
    subject: str | None
    text: str

    def as_received(self) -> str:
        """Subject line, blank line, text."""
        return f"{self.subject or '(no subject)'}\n\n{self.text.rstrip()}"


def read_alert(message: Mapping[str, Any]) -> Alert:
    """An inbox message: the SNS envelope's Subject and Message (a raw body is the text itself)."""
    body = str(message.get("Body", ""))
    try:
        envelope = json.loads(body)
    except ValueError:
        envelope = None
    if isinstance(envelope, Mapping) and "Message" in envelope:
        subject, text = envelope.get("Subject"), str(envelope["Message"])
    else:
        subject, text = None, body
    return Alert(
        message_id=str(message["MessageId"]),
        receipt_handle=str(message["ReceiptHandle"]),
        sent_at=int(message.get("Attributes", {}).get("SentTimestamp", 0)),
        subject=str(subject) if subject else None,
        text=text,
    )


@dataclass
class AlertsInbox:
    """One inbox queue, read without taking anything out of it unless asked."""

    sqs: Any
    queue_url: str

    def receive(self, limit: int = MAX_ALERTS) -> tuple[list[Alert], bool]:
        """Every alert waiting (oldest first), now invisible to others; and whether ``limit`` stopped it.

        Release or delete them afterwards.
        """
        alerts: dict[str, Alert] = {}
        while len(alerts) < limit:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(_BATCH, limit - len(alerts)),
                VisibilityTimeout=VISIBILITY_SECONDS,
                WaitTimeSeconds=_WAIT_SECONDS,
                AttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                alert = read_alert(message)
                alerts[alert.message_id] = alert
        ordered = sorted(alerts.values(), key=lambda alert: (alert.sent_at, alert.message_id))
        return ordered, len(alerts) >= limit

    def find(self, needle: str) -> Alert | None:
        """The oldest alert whose subject or text mentions ``needle``; nothing is taken out."""
        alerts, _ = self.receive()
        try:
            return next((alert for alert in alerts if needle in f"{alert.subject or ''}\n{alert.text}"), None)
        finally:
            self.release(alerts)

    def release(self, alerts: Sequence[Alert]) -> None:
        """Make these alerts visible again at once.

        An entry SQS does not release becomes visible anyway when its timeout ends.
        """
        for batch in _batches(alerts):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": alert.receipt_handle, "VisibilityTimeout": 0}
                    for index, alert in enumerate(batch)
                ],
            )

    def delete(self, alerts: Sequence[Alert]) -> int:
        """Take these alerts out of the inbox; how many SQS confirmed."""
        deleted = 0
        for batch in _batches(alerts):
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": alert.receipt_handle}
                    for index, alert in enumerate(batch)
                ],
            )
            deleted += len(response.get("Successful", []))
        return deleted


def _batches(alerts: Sequence[Alert]) -> Iterator[Sequence[Alert]]:
    for start in range(0, len(alerts), _BATCH):
        yield alerts[start : start + _BATCH]
