"""The DynamoDB status store's items: keys, item layout and the lifecycle guard on the current status.

One table, three kinds of item (see the SaveStatusCallbackToDynamo template):

- an **event** item per (resource SID, status): key ``sid`` = the SID,
  ``sk`` = ``EVENT#<status>``. A repeated callback overwrites it. Conference
  callbacks are an event stream rather than a state (many ``participant-join``
  per conference), so their key also carries the event id; so does a
  callback with a SID but no status. A record with no SID (unknown product)
  is kept under ``sid`` = ``EVENT#<event_id>``, so nothing is lost.
- a **current** item per SID (``sk`` = ``CURRENT``) written only when its
  lifecycle position grows, so a late ``sent`` never replaces ``delivered``.
- a sparse **error index**: only event items with an error code carry
  ``error_shard`` = ``<code>#<shard>``, so healthy callbacks cost no index
  write. The shard (a hash of the event id over ``ERROR_SHARDS``) spreads one
  busy code over several partitions; readers fan out over all shards.

Pure: `status_callbacks.adapters.dynamodb` writes and reads them.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

from status_callbacks.domain.lifecycle import lifecycle_position
from status_callbacks.domain.record import CallbackRecord

PARTITION_KEY = "sid"
SORT_KEY = "sk"
ERROR_INDEX_NAME = "ErrorsByCode"
ERROR_INDEX_PARTITION_KEY = "error_shard"
ERROR_INDEX_SORT_KEY = "received_at"
TTL_ATTRIBUTE = "expires_at"
POSITION_ATTRIBUTE = "position"
EVENT_PREFIX = "EVENT#"
CURRENT_SORT_KEY = "CURRENT"

# Raising this later is safe (readers fan out over the larger range and old items
# sit in its low shards); lowering it would hide items in the dropped shards.
ERROR_SHARDS = 8

# Products whose "status" names an event that repeats, not a state it moves through.
EVENT_STREAM_PRODUCTS = frozenset({"conference"})
SECONDS_PER_DAY = 86_400
Key = TypeVar("Key", bound=Hashable)


def partition_key_of(record: CallbackRecord) -> str:
    """The record's SID, or ``EVENT#<event_id>`` for a record with none."""
    return record.sid or f"{EVENT_PREFIX}{record.event_id}"


def event_sort_key_of(record: CallbackRecord) -> str:
    """``EVENT#<status>``: one item per (SID, status), so repeats overwrite.

    Event-stream products and callbacks without a status get the event id too,
    because there the status alone does not tell different callbacks apart.
    """
    if record.status and record.product not in EVENT_STREAM_PRODUCTS:
        return f"{EVENT_PREFIX}{record.status}"
    return f"{EVENT_PREFIX}{record.status or ''}#{record.event_id}"


def error_shard_of(error_code: str, event_id: str) -> str:
    """``<code>#<shard>``: where an error item sits in the error index."""
    shard = zlib.crc32(event_id.encode("utf-8")) % ERROR_SHARDS
    return f"{error_code}#{shard}"


def expires_at_of(received_at_ms: int, ttl_days: int) -> int | None:
    """Epoch seconds at which DynamoDB's TTL may delete the item; None keeps it forever."""
    if ttl_days <= 0:
        return None
    return received_at_ms // 1000 + ttl_days * SECONDS_PER_DAY


def _envelope(record: CallbackRecord, ttl_days: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        PARTITION_KEY: partition_key_of(record),
        "event_id": record.event_id,
        "product": record.product,
        "received_at": record.received_at,
        POSITION_ATTRIBUTE: lifecycle_position(record.product, record.status, record.twilio),
    }
    optional = {
        "status": record.status,
        "account_sid": record.account_sid,
        "error_code": record.error_code,
        TTL_ATTRIBUTE: expires_at_of(record.received_at, ttl_days),
    }
    item.update({name: value for name, value in optional.items() if value is not None})
    return item


def event_item(record: CallbackRecord, ttl_days: int = 0) -> dict[str, Any]:
    """The history item for one callback: envelope, route, every Twilio parameter, custom params.

    Only items with an error code carry the error index key, which keeps the index sparse.
    """
    item = _envelope(record, ttl_days)
    item[SORT_KEY] = event_sort_key_of(record)
    item["schema_version"] = record.schema_version
    item["route"] = record.route
    item["twilio"] = dict(record.twilio)
    if record.custom:
        item["custom"] = dict(record.custom)
    if record.error_code:
        item[ERROR_INDEX_PARTITION_KEY] = error_shard_of(record.error_code, record.event_id)
    return item


def current_item(record: CallbackRecord, ttl_days: int = 0) -> dict[str, Any]:
    """The current-status view of the record's SID: the envelope only, kept small (one write unit)."""
    if not record.sid:
        raise ValueError("a record without a SID has no current status")
    item = _envelope(record, ttl_days)
    item[SORT_KEY] = CURRENT_SORT_KEY
    return item


def advance_condition(record: CallbackRecord) -> dict[str, Any]:
    """Condition for writing the current view: only when the lifecycle position grows.

    Equal positions do not replace each other (terminal outcomes share a rank;
    whichever arrived first stays current), and a repeat of the current
    callback is a no-op.
    """
    position = lifecycle_position(record.product, record.status, record.twilio)
    return {
        "ConditionExpression": "attribute_not_exists(#position) OR #position < :position",
        "ExpressionAttributeNames": {"#position": POSITION_ATTRIBUTE},
        "ExpressionAttributeValues": {":position": {"N": str(position)}},
    }


def current_view_writers(records: Mapping[Key, CallbackRecord]) -> frozenset[Key]:
    """Which records of one batch should write their SID's current view.

    Several callbacks of one SID in a batch collapse into one conditional write
    by the furthest along (ties: the earliest received, then batch order) —
    the others could only lose to it, so writing them would cost units for nothing.
    """
    winners: dict[str, tuple[int, int, int, Key]] = {}
    for order, (key, record) in enumerate(records.items()):
        if not record.sid:
            continue
        position = lifecycle_position(record.product, record.status, record.twilio)
        # Larger is better on all three: furthest position, then earliest received, then first in batch.
        rank = (position, -record.received_at, -order, key)
        best = winners.get(record.sid)
        if best is None or rank[:3] > best[:3]:
            winners[record.sid] = rank
    return frozenset(rank[3] for rank in winners.values())
