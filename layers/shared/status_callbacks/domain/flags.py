"""Number flags: an error event saying a number cannot receive messages, merged into its item.

Pure: the flagger reads the item, merges and writes it back conditionally
(`status_callbacks.adapters.dynamodb`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.routes import Action, route_for

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
