"""Error callbacks: what each Twilio error code means, and the events that announce it.

The routing table is data: code → reason, actions, severity. The router puts it
on every error event (``Reason``, ``Actions``, ``Severity``, ``Alert``) next to
the contract fields (``ErrorCode`` and the record), so EventBridge rules match on
``detail.Actions`` and the code list lives here only. Also the PutEvents entry for
an error callback and how entries are sized and grouped into calls. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from status_callbacks.domain.record import CallbackRecord

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
