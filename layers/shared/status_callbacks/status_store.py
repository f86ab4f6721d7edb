"""The DynamoDB status store: item layout, lifecycle-guarded writes and the lookups on it.

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

The item builders are pure. The few functions that take a DynamoDB client
(writes for the writer Lambda, lookups for the CLI) are the only AWS calls.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from status_callbacks.lifecycle import lifecycle_position
from status_callbacks.record import CallbackRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

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

# An item up to this size costs one write unit; every further KB costs another.
WRITE_UNIT_BYTES = 1024

SECONDS_PER_DAY = 86_400

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Key = TypeVar("Key", bound=Hashable)


# --- keys -------------------------------------------------------------------


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


# --- items ------------------------------------------------------------------


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
        "ExpressionAttributeValues": {":position": _serializer.serialize(position)},
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


# --- DynamoDB wire format and sizes -------------------------------------------


def to_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB's typed attribute values."""
    return {name: _serializer.serialize(value) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {name: _plain(inner) for name, inner in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_plain(inner) for inner in value]
    return value


def from_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed attribute values as a plain item (numbers as int)."""
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _number_size(value: int | float | Decimal) -> int:
    digits = str(abs(Decimal(value)).normalize()).replace(".", "").lstrip("0")
    if "E" in digits:
        digits = digits.split("E", 1)[0]
    return math.ceil(len(digits.rstrip("0") or "0") / 2) + 1


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, Decimal)):
        return _number_size(value)
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, Mapping):
        # Each map element costs its name, its value and one byte.
        return 3 + sum(
            len(str(name).encode("utf-8")) + _value_size(inner) + 1 for name, inner in value.items()
        )
    if isinstance(value, (list, tuple)):
        return 3 + sum(_value_size(inner) + 1 for inner in value)
    raise TypeError(f"no DynamoDB size rule for {type(value).__name__}")


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes DynamoDB bills an item as, by its documented rules (names + values + map overhead)."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def write_units(item: Mapping[str, Any]) -> int:
    """Write request units one write of this item costs (1 per started KB)."""
    return max(1, math.ceil(item_size(item) / WRITE_UNIT_BYTES))


def error_index_entry(item: Mapping[str, Any], projected: Iterable[str]) -> dict[str, Any] | None:
    """What the sparse error index stores for a base item, or None when it stores nothing."""
    if ERROR_INDEX_PARTITION_KEY not in item or ERROR_INDEX_SORT_KEY not in item:
        return None
    names = {PARTITION_KEY, SORT_KEY, ERROR_INDEX_PARTITION_KEY, ERROR_INDEX_SORT_KEY, *projected}
    return {name: value for name, value in item.items() if name in names}


# --- writes (the writer Lambda) ---------------------------------------------------


def put_event(client: DynamoDBClient, table: str, record: CallbackRecord, ttl_days: int = 0) -> None:
    """Store the callback's history item; a repeat overwrites it. Throttling and 5xx raise."""
    client.put_item(TableName=table, Item=to_attribute_values(event_item(record, ttl_days)))


def advance_current(client: DynamoDBClient, table: str, record: CallbackRecord, ttl_days: int = 0) -> bool:
    """Move the SID's current view to this record if it is further along; False when it is stale.

    A failed condition is the normal outcome for a late or repeated callback,
    not an error. Any other failure raises so the message is retried.
    """
    try:
        client.put_item(
            TableName=table,
            Item=to_attribute_values(current_item(record, ttl_days)),
            **advance_condition(record),
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


# --- lookups (the CLI) -------------------------------------------------------------


def _pages(call: Callable[..., Any], **request: Any) -> Iterator[dict[str, Any]]:
    while True:
        page = call(**request)
        yield from (from_attribute_values(item) for item in page.get("Items", []))
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return
        request["ExclusiveStartKey"] = last_key


def events_of(client: DynamoDBClient, table: str, sid: str) -> list[dict[str, Any]]:
    """Every stored callback of a SID, in lifecycle order (then time received)."""
    items = _pages(
        client.query,
        TableName=table,
        KeyConditionExpression="#sid = :sid AND begins_with(#sk, :events)",
        ExpressionAttributeNames={"#sid": PARTITION_KEY, "#sk": SORT_KEY},
        ExpressionAttributeValues={":sid": {"S": sid}, ":events": {"S": EVENT_PREFIX}},
        ConsistentRead=True,
    )
    return sorted(items, key=lambda item: (item.get(POSITION_ATTRIBUTE, 0), item.get("received_at", 0)))


def current_of(client: DynamoDBClient, table: str, sid: str) -> dict[str, Any] | None:
    """The SID's current status view, or None when no callback for it was stored."""
    response = client.get_item(
        TableName=table,
        Key={PARTITION_KEY: {"S": sid}, SORT_KEY: {"S": CURRENT_SORT_KEY}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    return from_attribute_values(item) if item else None


def errors_by_code(
    client: DynamoDBClient, table: str, code: str, since_ms: int, until_ms: int
) -> list[dict[str, Any]]:
    """Error callbacks with this code received in ``[since_ms, until_ms]``, oldest first.

    Returns what the error index projects (keys, status, product, account, code);
    fetch a full item with its ``sid`` and ``sk`` when needed.
    """
    found: list[dict[str, Any]] = []
    for shard in range(ERROR_SHARDS):
        found.extend(
            _pages(
                client.query,
                TableName=table,
                IndexName=ERROR_INDEX_NAME,
                KeyConditionExpression="#shard = :shard AND #received BETWEEN :since AND :until",
                ExpressionAttributeNames={
                    "#shard": ERROR_INDEX_PARTITION_KEY,
                    "#received": ERROR_INDEX_SORT_KEY,
                },
                ExpressionAttributeValues={
                    ":shard": {"S": f"{code}#{shard}"},
                    ":since": {"N": str(since_ms)},
                    ":until": {"N": str(until_ms)},
                },
            )
        )
    return sorted(found, key=lambda item: (item[ERROR_INDEX_SORT_KEY], item[PARTITION_KEY], item[SORT_KEY]))
