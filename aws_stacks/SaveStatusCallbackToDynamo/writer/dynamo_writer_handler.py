"""Writer Lambda: callback records from the status queue into the DynamoDB status store.

Each record becomes its history item; per SID, only the batch's furthest-along
record tries to move the current-status view (the others could only lose).
A message that holds no record, or whose write is throttled or fails, is
reported as a batch item failure: SQS retries it and then dead-letters it.
A stale current-status write (a late callback) is a normal success.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.adapters import dynamodb
from status_callbacks.domain import status_items
from status_callbacks.domain.delivery import UndeliverableRecordError, record_from_body
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# Throttling and 5xx are retried in-process first (cheaper than an SQS redelivery).
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})


@dataclass(frozen=True)
class Settings:
    """The writer's configuration, from the function's environment."""

    table_name: str
    ttl_days: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(table_name=env["STATUS_TABLE_NAME"], ttl_days=int(env.get("STATUS_TTL_DAYS") or 0))


@dataclass(frozen=True)
class Dependencies:
    """What the handler talks to; tests pass their own."""

    settings: Settings
    dynamodb: DynamoDBClient


@functools.cache
def default_dependencies() -> Dependencies:
    """Settings and client built once per container, on the first invocation."""
    return Dependencies(Settings.from_env(os.environ), boto3.client("dynamodb", config=CLIENT_CONFIG))


processor = BatchProcessor(event_type=EventType.SQS)


def read_batch(event: Mapping[str, Any]) -> dict[str, CallbackRecord | UndeliverableRecordError]:
    """Each message's record (or why it holds none), by message id, in batch order."""
    batch: dict[str, CallbackRecord | UndeliverableRecordError] = {}
    for message in event.get("Records", []):
        try:
            batch[message["messageId"]] = record_from_body(message.get("body") or "")
        except UndeliverableRecordError as error:
            batch[message["messageId"]] = error
    return batch


def store_record(
    record: SQSRecord,
    batch: Mapping[str, CallbackRecord | UndeliverableRecordError],
    current_writers: frozenset[str],
    deps: Dependencies,
    outcomes: Counter[str],
) -> None:
    """Store one message's callback record; raise to report the message as failed.

    ``record`` is the SQS message (Powertools passes it by that name); ``outcomes``
    counts what happened, emitted once per batch as metrics.
    """
    callback = batch[record.message_id]
    if isinstance(callback, UndeliverableRecordError):
        outcomes["UndeliverableRecords"] += 1
        logger.warning("Message holds no callback record", extra={"message_id": record.message_id})
        raise callback
    table, ttl_days = deps.settings.table_name, deps.settings.ttl_days
    try:
        dynamodb.put_event(deps.dynamodb, table, callback, ttl_days)
        if record.message_id in current_writers:
            advanced = dynamodb.advance_current(deps.dynamodb, table, callback, ttl_days)
            outcomes["CurrentStatusAdvanced" if advanced else "CurrentStatusStale"] += 1
    except (ClientError, BotoCoreError):
        outcomes["WriteFailures"] += 1
        logger.warning("Status store write failed", extra={"message_id": record.message_id}, exc_info=True)
        raise
    outcomes["EventsStored"] += 1
    if callback.error_code:
        outcomes["ErrorEventsStored"] += 1


def handle(event: dict[str, Any], context: LambdaContext | None, deps: Dependencies) -> dict[str, Any]:
    """Store a batch; return the SQS partial-batch response."""
    batch = read_batch(event)
    records = {key: record for key, record in batch.items() if isinstance(record, CallbackRecord)}
    outcomes: Counter[str] = Counter()
    store = functools.partial(
        store_record,
        batch=batch,
        current_writers=status_items.current_view_writers(records),
        deps=deps,
        outcomes=outcomes,
    )
    try:
        response = process_partial_response(
            event=event, record_handler=store, processor=processor, context=context
        )
    finally:
        for name, count in outcomes.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    logger.info("Batch stored", extra={"messages": len(batch), **outcomes})
    return dict(response)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (SQS event source with ReportBatchItemFailures)."""
    return handle(event, context, default_dependencies())
