"""Turning one SQS batch's valid callbacks into SNS PublishBatch requests.

A Twilio retry that lands in the same batch as the original is the same
callback (same ``event_id``), so it becomes one publish entry carrying every
SQS message id that delivered it: they succeed or are retried together.
Entries are grouped into requests SNS accepts: at most 10 entries and at most
256 KiB of messages and attributes per call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from status_callbacks.domain.record import CallbackRecord, message_attributes

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
