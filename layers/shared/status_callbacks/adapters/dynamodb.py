"""DynamoDB: one marshaller, the status store's writes and lookups, and the number flags.

Items are plain Python here (whole numbers as ``int``, other numbers as ``float``,
``None`` attributes left out) and DynamoDB's typed attribute values on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from status_callbacks.domain.flags import NumberFlag, merge_number_flag
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.status_items import (
    CURRENT_SORT_KEY,
    ERROR_INDEX_NAME,
    ERROR_INDEX_PARTITION_KEY,
    ERROR_INDEX_SORT_KEY,
    ERROR_SHARDS,
    EVENT_PREFIX,
    PARTITION_KEY,
    POSITION_ATTRIBUTE,
    SORT_KEY,
    advance_condition,
    current_item,
    event_item,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB's typed attribute values; ``None`` attributes are left out."""
    return {name: _serializer.serialize(value) for name, value in item.items() if value is not None}


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
