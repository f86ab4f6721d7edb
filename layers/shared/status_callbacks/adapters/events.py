"""EventBridge: putting error events on the bus in batches, and remembering which were put."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS
from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.domain.delivery import UndeliverableRecordError, record_from_body
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.routes import (
    MAX_PUT_EVENTS_BYTES,
    EventTarget,
    chunk_entries,
    entry_size,
    error_event_entry,
)
from status_callbacks.observability import logger


@dataclass(frozen=True)
class EntryFailure:
    """Why EventBridge did not take an entry (after every attempt)."""

    code: str
    message: str


@dataclass(frozen=True)
class PublishPolicy:
    """Bounded in-process retry of entries EventBridge reported as failed."""

    attempts: int = 3
    base_delay_seconds: float = 0.1
    max_delay_seconds: float = 1.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter (half to all of the ceiling) before retry ``attempt`` (1-based)."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


def put_entries(
    client: Any,
    entries: Mapping[str, Mapping[str, Any]],
    policy: PublishPolicy = PublishPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, str], dict[str, EntryFailure]]:
    """Publish keyed entries in batched PutEvents calls, retrying the ones that failed.

    Returns the EventBridge event id of each published key and the failure of
    each key that still failed after ``policy.attempts`` (checked through each
    result entry, as ``FailedEntryCount`` says, not just the call's success).
    """
    published: dict[str, str] = {}
    oversized = {
        key: EntryFailure("EntryTooLarge", "entry exceeds the PutEvents size limit")
        for key, entry in entries.items()
        if entry_size(entry) > MAX_PUT_EVENTS_BYTES
    }
    pending = [key for key in entries if key not in oversized]
    failures: dict[str, EntryFailure] = {}
    for attempt in range(1, policy.attempts + 1):
        if not pending:
            break
        if attempt > 1:
            sleep(policy.delay(attempt - 1))
        failures = {}
        for chunk in chunk_entries(pending, lambda key: entry_size(entries[key])):
            _put_chunk(client, chunk, entries, published, failures)
        pending = list(failures)
    return published, {**oversized, **failures}


def _put_chunk(
    client: Any,
    chunk: list[str],
    entries: Mapping[str, Mapping[str, Any]],
    published: dict[str, str],
    failures: dict[str, EntryFailure],
) -> None:
    try:
        response = client.put_events(Entries=[dict(entries[key]) for key in chunk])
    except (ClientError, BotoCoreError) as error:
        code = error.response["Error"].get("Code") if isinstance(error, ClientError) else None
        for key in chunk:
            failures[key] = EntryFailure(str(code or type(error).__name__), str(error))
        return
    results = response.get("Entries", [])
    for index, key in enumerate(chunk):
        result = results[index] if index < len(results) else {"ErrorCode": "MissingResult"}
        if result.get("EventId") and not result.get("ErrorCode"):
            published[key] = str(result["EventId"])
        else:
            failures[key] = EntryFailure(
                str(result.get("ErrorCode", "Unknown")), str(result.get("ErrorMessage", ""))
            )


class Claim(StrEnum):
    """What the publish ledger says about one error callback."""

    CLAIMED = "claimed"  # this delivery publishes it
    PUBLISHED = "published"  # an earlier delivery already did
    IN_FLIGHT = "in_flight"  # another invocation is publishing it now; try again later


LEDGER_KEY_PREFIX = "error-events"


class PublishLedger:
    """Which error callbacks were already published, kept as Powertools idempotency records.

    The ``idempotent_function`` decorator wraps one call per key, which cannot
    batch PutEvents; this drives the same persistence layer the decorator uses:
    claim (in progress, expiring with the invocation), confirm (completed, kept
    for the dedupe window) or release (deleted, so a retry publishes).
    """

    def __init__(self, persistence: BasePersistenceLayer, dedupe_window_seconds: int) -> None:
        persistence.configure(
            IdempotencyConfig(
                event_key_jmespath="event_id",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=dedupe_window_seconds,
            ),
            key_prefix=LEDGER_KEY_PREFIX,
        )
        self._persistence = persistence

    def claim(self, event_id: str, remaining_time_in_millis: int) -> Claim:
        """Take an error callback for publishing unless it is published or being published."""
        data = {"event_id": event_id}
        try:
            self._persistence.save_inprogress(data, remaining_time_in_millis)
        except IdempotencyItemAlreadyExistsError as existing:
            try:
                record = existing.old_data_record or self._persistence.get_record(data)
            except IdempotencyItemNotFoundError:
                return Claim.IN_FLIGHT
            if record is not None and record.status == STATUS_CONSTANTS["COMPLETED"]:
                return Claim.PUBLISHED
            return Claim.IN_FLIGHT
        return Claim.CLAIMED

    def confirm(self, event_id: str, published_event_id: str) -> None:
        """Remember the callback as published for the dedupe window."""
        self._persistence.save_success({"event_id": event_id}, {"event_bus_event_id": published_event_id})

    def release(self, event_id: str, error: Exception) -> None:
        """Forget a claim whose publish failed, so the message's retry publishes it."""
        self._persistence.delete_record({"event_id": event_id}, error)


class ErrorEventNotPublishedError(RuntimeError):
    """EventBridge did not take the error event; the message retries and ends in the DLQ."""


class ErrorEventInFlightError(RuntimeError):
    """Another invocation holds the claim on this callback; the message retries later."""


@dataclass
class RoutingReport:
    """Outcome of one SQS batch, per message id, for the batch processor to settle."""

    failures: dict[str, Exception] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, amount: int = 1) -> None:
        if amount:
            self.counts[name] = self.counts.get(name, 0) + amount

    def settle(self, message_id: str) -> None:
        """Raise the message's failure, if it had one (so it is reported as a batch item failure)."""
        error = self.failures.get(message_id)
        if error is not None:
            raise error


@dataclass(frozen=True)
class QueuedCallback:
    """One message of the error queue: its id and the record it held (or why it held none)."""

    message_id: str
    record: CallbackRecord | None = None
    error: Exception | None = None

    @classmethod
    def read(cls, message_id: str, body: str) -> QueuedCallback:
        """Read a queued message; a body that is not a record is kept as its error, not raised."""
        try:
            return cls(message_id, record=record_from_body(body))
        except UndeliverableRecordError as error:
            return cls(message_id, error=error)


class ErrorRouter:
    """Turns a batch of error callbacks into error events: dedupe, batch publish, report."""

    def __init__(
        self,
        events_client: Any,
        ledger: PublishLedger,
        target: EventTarget,
        *,
        policy: PublishPolicy = PublishPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._events = events_client
        self._ledger = ledger
        self._target = target
        self._policy = policy
        self._sleep = sleep

    def route(self, callbacks: Iterable[QueuedCallback], remaining_time_in_millis: int) -> RoutingReport:
        """Publish one event per distinct error callback of the batch; duplicates publish nothing."""
        report = RoutingReport()
        records: dict[str, CallbackRecord] = {}
        messages: dict[str, list[str]] = {}
        for callback in callbacks:
            if callback.record is None:
                report.failures[callback.message_id] = callback.error or ValueError("no record")
                report.count("UndeliverableRecords")
            elif not callback.record.error_code:
                report.count("NonErrorRecords")
            else:
                messages.setdefault(callback.record.event_id, []).append(callback.message_id)
                records[callback.record.event_id] = callback.record
        report.count("DuplicateErrorCallbacks", sum(len(ids) - 1 for ids in messages.values()))
        entries = self._claim(records, messages, remaining_time_in_millis, report)
        self._publish(entries, messages, report)
        return report

    def _claim(
        self,
        records: Mapping[str, CallbackRecord],
        messages: Mapping[str, list[str]],
        remaining_time_in_millis: int,
        report: RoutingReport,
    ) -> dict[str, dict[str, Any]]:
        """The entries this invocation must publish: callbacks it could claim in the ledger."""
        entries: dict[str, dict[str, Any]] = {}
        for event_id, record in records.items():
            try:
                claim = self._ledger.claim(event_id, remaining_time_in_millis)
            except (ClientError, BotoCoreError) as ledger_error:
                report.count("PublishLedgerErrors", len(messages[event_id]))
                failure = ErrorEventNotPublishedError(f"{event_id}: ledger unavailable: {ledger_error}")
                self._fail(report, messages[event_id], failure)
                continue
            if claim is Claim.PUBLISHED:
                report.count("DuplicateErrorCallbacks", len(messages[event_id]))
            elif claim is Claim.IN_FLIGHT:
                report.count("ErrorCallbacksInFlight", len(messages[event_id]))
                self._fail(report, messages[event_id], ErrorEventInFlightError(event_id))
            else:
                entries[event_id] = error_event_entry(record, self._target)
        return entries

    def _publish(
        self, entries: Mapping[str, dict[str, Any]], messages: Mapping[str, list[str]], report: RoutingReport
    ) -> None:
        """Put the claimed entries on the bus; confirm what was published, release what was not."""
        published, failures = put_entries(self._events, entries, self._policy, self._sleep)
        for event_id, bus_event_id in published.items():
            self._confirm(event_id, bus_event_id)
        report.count("ErrorEventsPublished", len(published))
        for event_id, entry_failure in failures.items():
            failure = ErrorEventNotPublishedError(f"{event_id}: {entry_failure.code} {entry_failure.message}")
            self._release(event_id, failure)
            self._fail(report, messages[event_id], failure)
        report.count("ErrorEventsNotPublished", len(failures))

    @staticmethod
    def _fail(report: RoutingReport, message_ids: list[str], error: Exception) -> None:
        for message_id in message_ids:
            report.failures[message_id] = error

    def _confirm(self, event_id: str, bus_event_id: str) -> None:
        # The event is on the bus: failing the message now would publish it twice.
        # An unconfirmed claim expires with the invocation, so at worst a later
        # duplicate publishes again (at least once, never lost).
        try:
            self._ledger.confirm(event_id, bus_event_id)
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "Published error event not confirmed in the ledger", extra=_failure(event_id, error)
            )

    def _release(self, event_id: str, error: Exception) -> None:
        # If the release fails too, the claim still expires with this invocation,
        # before the message becomes visible again (visibility > timeout).
        try:
            self._ledger.release(event_id, error)
        except (ClientError, BotoCoreError) as release_error:
            logger.warning("Claim on error callback not released", extra=_failure(event_id, release_error))


def _failure(event_id: str, error: Exception) -> dict[str, str]:
    return {"event_id": event_id, "error": type(error).__name__, "detail": str(error)}
