"""Turning one SQS batch's valid callbacks into SNS PublishBatch requests.

A Twilio retry that lands in the same batch as the original is the same
callback (same ``event_id``), so it becomes one publish entry carrying every
SQS message id that delivered it: they succeed or are retried together.
Entries are grouped into requests SNS accepts: at most 10 entries and at most
256 KiB of messages and attributes per call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.record import CallbackRecord, message_attributes

MAX_ENTRIES_PER_CALL = 10
MAX_BYTES_PER_CALL = 256 * 1024


@dataclass(frozen=True)
class PublishEntry:
    """One callback to publish, and the SQS messages that carried it."""

    record: CallbackRecord
    message_ids: tuple[str, ...]

    @property
    def entry_id(self) -> str:
        """PublishBatch entry id: unique in a call once duplicates are merged."""
        return self.record.event_id

    def request_entry(self) -> dict[str, Any]:
        """The ``PublishBatchRequestEntries`` item for this callback."""
        return {
            "Id": self.entry_id,
            "Message": self.record.to_json(),
            "MessageAttributes": message_attributes(self.record),
        }

    @property
    def size(self) -> int:
        """Bytes SNS counts against a call's limit: the message plus attribute names, types, values."""
        return request_entry_size(self.request_entry())


def request_entry_size(entry: Mapping[str, Any]) -> int:
    """Size of one PublishBatch entry as SNS measures it."""
    size = len(str(entry["Message"]).encode("utf-8"))
    for name, attribute in (entry.get("MessageAttributes") or {}).items():
        size += len(name.encode("utf-8"))
        size += len(str(attribute.get("DataType", "")).encode("utf-8"))
        size += len(str(attribute.get("StringValue", "")).encode("utf-8"))
    return size


def merge_duplicates(valid: Iterable[tuple[str, CallbackRecord]]) -> list[PublishEntry]:
    """One entry per distinct callback, in first-seen order; the first delivery's record wins."""
    records: dict[str, CallbackRecord] = {}
    message_ids: dict[str, list[str]] = {}
    for message_id, record in valid:
        records.setdefault(record.event_id, record)
        message_ids.setdefault(record.event_id, []).append(message_id)
    return [PublishEntry(record, tuple(message_ids[event_id])) for event_id, record in records.items()]


def plan_publish_calls(
    entries: Sequence[PublishEntry],
    max_entries: int = MAX_ENTRIES_PER_CALL,
    max_bytes: int = MAX_BYTES_PER_CALL,
) -> list[list[PublishEntry]]:
    """Group entries, in order, into as few PublishBatch calls as the limits allow.

    Every entry fits a call on its own: validation rejects records above SNS's
    message size.
    """
    calls: list[list[PublishEntry]] = []
    current: list[PublishEntry] = []
    current_bytes = 0
    for entry in entries:
        size = entry.size
        if current and (len(current) >= max_entries or current_bytes + size > max_bytes):
            calls.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += size
    if current:
        calls.append(current)
    return calls


@dataclass
class PublishOutcome:
    """What SNS did with a set of entries: those it did not confirm, and why (error code → entries)."""

    failed: list[PublishEntry] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    calls: int = 0


def publish_entries(sns: Any, topic_arn: str, entries: Sequence[PublishEntry]) -> PublishOutcome:
    """PublishBatch every entry; an entry SNS did not list as Successful is failed, never assumed sent.

    Used by the validator and by ``rejected replay``, so a replayed callback is
    published exactly as it would have been.
    """
    outcome = PublishOutcome()
    for call in plan_publish_calls(entries):
        outcome.calls += 1
        try:
            response = sns.publish_batch(
                TopicArn=topic_arn, PublishBatchRequestEntries=[entry.request_entry() for entry in call]
            )
        except (BotoCoreError, ClientError) as error:
            outcome.failed.extend(call)
            outcome.errors[_error_code(error)] += len(call)
            continue
        confirmed = {item["Id"] for item in response.get("Successful", [])}
        for item in response.get("Failed", []):
            outcome.errors[str(item.get("Code", "Unknown"))] += 1
        unconfirmed = [entry for entry in call if entry.entry_id not in confirmed]
        outcome.failed.extend(unconfirmed)
        missing = len(unconfirmed) - len(response.get("Failed", []))
        if missing > 0:
            outcome.errors["NotConfirmed"] += missing
    return outcome


def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__
