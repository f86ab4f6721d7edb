"""Error callbacks: what each Twilio error code means, the events that announce it, number flags.

The routing table is data: code → reason, actions, severity. The router puts it
on every error event (``Reason``, ``Actions``, ``Severity``, ``Alert``) next to
the contract fields (``ErrorCode`` and the record), so EventBridge rules match on
``detail.Actions`` and the code list lives here only.

Also here: PutEvents entries and their batching, the publish ledger that makes
a duplicated callback one event (Powertools idempotency records), and the
number flags the flagger keeps for numbers that cannot receive messages.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.delivery import UndeliverableRecordError, record_from_body
from status_callbacks.observability import logger
from status_callbacks.record import CallbackRecord

T = TypeVar("T")

# The original project's event contract: existing rules match on these.
DEFAULT_EVENT_SOURCE = "custom.twilioStatusCallbackErrors"
DEFAULT_DETAIL_TYPE = "errormessage"

# PutEvents limits: entries per call and total entry size per call.
MAX_ENTRIES_PER_PUT = 10
MAX_PUT_EVENTS_BYTES = 256 * 1024
# What AWS adds to an entry's size when Time is set.
_TIME_FIELD_BYTES = 14


class Severity(StrEnum):
    """How urgently a person should look at an error."""

    INFO = "info"  # handled automatically (the number is flagged)
    WARNING = "warning"  # worth a look if it repeats
    CRITICAL = "critical"  # every message from the sender fails until someone acts


class Action(StrEnum):
    """What should happen because of an error; rules match on these."""

    FLAG_NUMBER = "flag_number"
    CHECK_SENDER_REGISTRATION = "check_sender_registration"
    REVIEW_MESSAGE_CONTENT = "review_message_content"
    CHECK_ACCOUNT = "check_account"


@dataclass(frozen=True)
class ErrorRoute:
    """What one Twilio error code means and what to do about it."""

    reason: str
    actions: tuple[Action, ...] = ()
    severity: Severity = Severity.WARNING


# Twilio error codes seen in status callbacks (https://www.twilio.com/docs/api/errors).
# Numbers that cannot receive messages get FLAG_NUMBER so senders can suppress them.
ROUTES: Mapping[str, ErrorRoute] = MappingProxyType(
    {
        "21610": ErrorRoute(
            "Recipient opted out (replied STOP); do not message this number until it opts back in",
            (Action.FLAG_NUMBER,),
            Severity.INFO,
        ),
        "30001": ErrorRoute(
            "Queue overflow: messages were queued faster than the sender's rate allows and expired",
        ),
        "30002": ErrorRoute(
            "Account suspended: every message from this account fails until Twilio reinstates it",
            (Action.CHECK_ACCOUNT,),
            Severity.CRITICAL,
        ),
        "30003": ErrorRoute(
            "Unreachable destination handset: the phone is off, out of coverage or cannot receive SMS",
            (Action.FLAG_NUMBER,),
            Severity.INFO,
        ),
        "30004": ErrorRoute(
            "Message blocked: the recipient or the carrier blocked delivery to this number",
        ),
        "30005": ErrorRoute(
            "Unknown destination handset: the number does not exist or is no longer in service",
            (Action.FLAG_NUMBER,),
            Severity.INFO,
        ),
        "30006": ErrorRoute(
            "Landline or unreachable carrier: the number cannot receive SMS",
            (Action.FLAG_NUMBER,),
            Severity.INFO,
        ),
        "30007": ErrorRoute(
            "Carrier filtering: the carrier filtered this message as spam or a policy violation; "
            "review the content and the sender's registration",
            (Action.REVIEW_MESSAGE_CONTENT,),
            Severity.WARNING,
        ),
        "30008": ErrorRoute(
            "Unknown error reported by the carrier; contact Twilio support if it keeps happening",
        ),
        "30010": ErrorRoute(
            "Message price exceeds the MaxPrice set when it was sent",
        ),
        "30022": ErrorRoute(
            "US A2P 10DLC rate limit exceeded: the campaign's throughput limit was reached",
            (Action.CHECK_SENDER_REGISTRATION,),
        ),
        "30023": ErrorRoute(
            "US A2P 10DLC daily message cap reached for this brand",
            (Action.CHECK_SENDER_REGISTRATION,),
        ),
        "30032": ErrorRoute(
            "Toll-free number not verified: carriers block messages from unverified toll-free "
            "senders; complete toll-free verification",
            (Action.CHECK_SENDER_REGISTRATION,),
            Severity.CRITICAL,
        ),
        "30034": ErrorRoute(
            "Unregistered 10DLC number: the US long code is not registered to an approved A2P 10DLC "
            "campaign; register it or carriers keep blocking its messages",
            (Action.CHECK_SENDER_REGISTRATION,),
            Severity.CRITICAL,
        ),
    }
)


def route_for(error_code: str) -> ErrorRoute:
    """The routing table's entry for a code; a code not in the table gets a generic reason."""
    route = ROUTES.get(error_code)
    if route is not None:
        return route
    return ErrorRoute(
        f"Twilio error {error_code} is not in the routing table; "
        f"see https://www.twilio.com/docs/api/errors/{error_code}",
    )


# Quotes, backslashes and control characters would break EventBridge's input
# transformer (it does not escape what it substitutes) and are noise in an alert.
_UNSAFE_ALERT_CHARACTERS = re.compile(r'["\\\x00-\x1f\x7f]+')


def _alert_safe(value: object) -> str:
    return _UNSAFE_ALERT_CHARACTERS.sub(" ", str(value)).strip()


def alert_text(record: CallbackRecord, route: ErrorRoute) -> str:
    """One line a person can act on: code, reason, product, SID and status; never the phone numbers."""
    parts = [
        f"[{route.severity}] Twilio error {record.error_code}",
        f"on {record.product} {record.sid or '(no SID)'}",
        f"(status {record.status or 'unknown'}):",
        route.reason + ".",
        f"Account {record.account_sid or 'unknown'}, event {record.event_id}.",
    ]
    return _alert_safe(" ".join(parts))


class NotAnErrorCallbackError(ValueError):
    """The record carries no error code, so there is no error event to publish."""


def error_detail(record: CallbackRecord) -> dict[str, Any]:
    """The event detail: the contract (``ErrorCode``, ``record``) plus the routing table's enrichment."""
    if not record.error_code:
        raise NotAnErrorCallbackError("record has no error code")
    route = route_for(record.error_code)
    return {
        "ErrorCode": record.error_code,
        "Reason": route.reason,
        "Severity": str(route.severity),
        "Actions": [str(action) for action in route.actions],
        "Alert": alert_text(record, route),
        "record": record.to_dict(),
    }


@dataclass(frozen=True)
class EventTarget:
    """Where error events go and how they are labelled."""

    bus_name: str
    source: str = DEFAULT_EVENT_SOURCE
    detail_type: str = DEFAULT_DETAIL_TYPE


def error_event_entry(record: CallbackRecord, target: EventTarget) -> dict[str, Any]:
    """A PutEvents entry for one error callback; its event time is when the callback arrived."""
    return {
        "EventBusName": target.bus_name,
        "Source": target.source,
        "DetailType": target.detail_type,
        "Time": datetime.fromtimestamp(record.received_at / 1000, tz=UTC),
        "Detail": json.dumps(error_detail(record), ensure_ascii=False, separators=(",", ":")),
    }


def entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge counts it against the 256 KB PutEvents limit."""
    size = _TIME_FIELD_BYTES if entry.get("Time") is not None else 0
    size += len(str(entry.get("Source", "")).encode("utf-8"))
    size += len(str(entry.get("DetailType", "")).encode("utf-8"))
    size += len(str(entry.get("Detail", "")).encode("utf-8"))
    size += sum(len(str(resource).encode("utf-8")) for resource in entry.get("Resources", ()))
    return size


class EntryTooLargeError(ValueError):
    """One entry alone exceeds what a PutEvents call accepts."""


def chunk_entries(
    items: Sequence[T],
    size_of: Callable[[T], int],
    max_count: int = MAX_ENTRIES_PER_PUT,
    max_bytes: int = MAX_PUT_EVENTS_BYTES,
) -> Iterator[list[T]]:
    """Split items, in order, into PutEvents-sized calls: at most ``max_count`` and ``max_bytes`` each."""
    chunk: list[T] = []
    chunk_bytes = 0
    for item in items:
        size = size_of(item)
        if size > max_bytes:
            raise EntryTooLargeError(f"entry of {size} bytes exceeds {max_bytes}")
        if chunk and (len(chunk) == max_count or chunk_bytes + size > max_bytes):
            yield chunk
            chunk, chunk_bytes = [], 0
        chunk.append(item)
        chunk_bytes += size
    if chunk:
        yield chunk


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


# ---------------------------------------------------------------- number flags

# E.164: a plus, then up to 15 digits, the first not zero.
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Enough to recognise EventBridge's redeliveries, small enough to keep the item under 1 KB-ish.
MAX_REMEMBERED_EVENT_IDS = 20


@dataclass(frozen=True)
class NumberFlag:
    """One error event saying a number cannot receive messages."""

    phone_number: str
    error_code: str
    reason: str
    severity: str
    event_id: str
    seen_at: int
    sid: str | None
    status: str | None
    product: str


class FlagSkipReason(StrEnum):
    """Why an error event did not become a number flag."""

    NOT_FLAGGED = "NotFlagged"  # the event's actions do not include flag_number
    NO_NUMBER = "NoNumber"  # no E.164 ``To`` (e.g. a WhatsApp or client address)


def number_flag_from_detail(detail: Mapping[str, Any]) -> NumberFlag | FlagSkipReason:
    """Read the flag an error event's detail asks for, or why there is none."""
    if Action.FLAG_NUMBER not in (detail.get("Actions") or ()):
        return FlagSkipReason.NOT_FLAGGED
    record = CallbackRecord.from_dict(detail["record"])
    number = (record.twilio.get("To") or "").strip()
    if not _E164.match(number):
        return FlagSkipReason.NO_NUMBER
    code = str(detail.get("ErrorCode") or record.error_code)
    return NumberFlag(
        phone_number=number,
        error_code=code,
        reason=str(detail.get("Reason") or route_for(code).reason),
        severity=str(detail.get("Severity") or route_for(code).severity),
        event_id=record.event_id,
        seen_at=record.received_at,
        sid=record.sid,
        status=record.status,
        product=record.product,
    )


def merge_number_flag(
    existing: Mapping[str, Any] | None, flag: NumberFlag, now_ms: int
) -> dict[str, Any] | None:
    """The number-flag item after ``flag``, or None when the item already counts this event.

    Order-independent: first/last seen are the min/max of the callbacks' receive
    times and ``last_sid``/``last_status`` follow the latest callback, so a late
    older event never overwrites a newer one.
    """
    if existing is None:
        return {
            "phone_number": flag.phone_number,
            "error_code": flag.error_code,
            "reason": flag.reason,
            "severity": flag.severity,
            "product": flag.product,
            "first_seen_at": flag.seen_at,
            "last_seen_at": flag.seen_at,
            "last_sid": flag.sid,
            "last_status": flag.status,
            "callback_count": 1,
            "recent_event_ids": [flag.event_id],
            "updated_at": now_ms,
            "version": 1,
        }
    recent = list(existing.get("recent_event_ids") or [])
    if flag.event_id in recent:
        return None
    item = dict(existing)
    is_latest = flag.seen_at >= int(existing["last_seen_at"])
    item.update(
        reason=flag.reason,
        severity=flag.severity,
        first_seen_at=min(int(existing["first_seen_at"]), flag.seen_at),
        last_seen_at=max(int(existing["last_seen_at"]), flag.seen_at),
        last_sid=flag.sid if is_latest else existing.get("last_sid"),
        last_status=flag.status if is_latest else existing.get("last_status"),
        product=flag.product if is_latest else existing.get("product", flag.product),
        callback_count=int(existing["callback_count"]) + 1,
        recent_event_ids=[*recent, flag.event_id][-MAX_REMEMBERED_EVENT_IDS:],
        updated_at=now_ms,
        version=int(existing["version"]) + 1,
    )
    return item


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB attribute values (None attributes left out)."""
    return {name: _serializer.serialize(value) for name, value in item.items() if value is not None}


def from_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python (whole numbers as int)."""
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(element) for element in value]
    if isinstance(value, dict):
        return {key: _plain(element) for key, element in value.items()}
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def number_flag_key(phone_number: str, error_code: str) -> dict[str, Any]:
    """The flag table's key: one item per number and error code."""
    return {"phone_number": {"S": phone_number}, "error_code": {"S": error_code}}


def number_flag_put(table: str, item: Mapping[str, Any], previous_version: int | None) -> dict[str, Any]:
    """PutItem arguments that only succeed if nobody changed the item since it was read."""
    if previous_version is None:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(phone_number)"}
    else:
        condition = {
            "ConditionExpression": "#version = :read_version",
            "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": {":read_version": {"N": str(previous_version)}},
        }
    return {"TableName": table, "Item": to_attribute_values(item), **condition}


class FlagOutcome(StrEnum):
    """What recording a number flag did."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"


class FlagWriteConflictError(RuntimeError):
    """The flag kept changing under us; the invocation fails and Lambda retries it."""


def record_number_flag(
    client: Any, table: str, flag: NumberFlag, now_ms: int, attempts: int = 5
) -> FlagOutcome:
    """Merge one flag into its item: read, merge, conditional write, again on a concurrent change."""
    for _ in range(attempts):
        response = client.get_item(
            TableName=table, Key=number_flag_key(flag.phone_number, flag.error_code), ConsistentRead=True
        )
        existing = from_attribute_values(response["Item"]) if "Item" in response else None
        item = merge_number_flag(existing, flag, now_ms)
        if item is None:
            return FlagOutcome.DUPLICATE
        previous_version = int(existing["version"]) if existing else None
        try:
            client.put_item(**number_flag_put(table, item, previous_version))
        except ClientError as error:
            if error.response["Error"].get("Code") != "ConditionalCheckFailedException":
                raise
            continue
        return FlagOutcome.RECORDED
    raise FlagWriteConflictError(f"number flag for event {flag.event_id} changed {attempts} times")


def flags_for_number(client: Any, table: str, number: str) -> list[dict[str, Any]]:
    """Every error flag kept for a phone number (one per error code), as plain dicts."""
    flags: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "phone_number = :number",
        "ExpressionAttributeValues": {":number": {"S": number}},
        "ConsistentRead": True,
    }
    while True:
        page = client.query(**arguments)
        flags.extend(from_attribute_values(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return flags
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
