"""Error router Lambda: error callbacks off the error queue become events on the error bus.

Thin adapter: reads the SQS batch, hands it to ``ErrorRouter`` (dedupe through
the publish ledger, batched PutEvents with retries) and settles each message
through Powertools' batch processor, so a callback that was not published is
a batch item failure that retries and ends in the error dead-letter queue.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from status_callbacks.adapters.events import ErrorRouter, PublishLedger, PublishPolicy, QueuedCallback
from status_callbacks.domain.routes import DEFAULT_DETAIL_TYPE, DEFAULT_EVENT_SOURCE, EventTarget
from status_callbacks.observability import logger, metrics, tracer

# Partial failures are reported, never raised: a batch that fails entirely is
# still answered item by item, the same way as one that fails in part.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@dataclass(frozen=True)
class Settings:
    """The router's configuration, from its environment."""

    event_bus_name: str
    idempotency_table: str
    event_source: str = DEFAULT_EVENT_SOURCE
    detail_type: str = DEFAULT_DETAIL_TYPE
    dedupe_window_seconds: int = 24 * 60 * 60
    publish_attempts: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            event_bus_name=env["EVENT_BUS_NAME"],
            idempotency_table=env["IDEMPOTENCY_TABLE_NAME"],
            event_source=env.get("EVENT_SOURCE") or DEFAULT_EVENT_SOURCE,
            detail_type=env.get("EVENT_DETAIL_TYPE") or DEFAULT_DETAIL_TYPE,
            dedupe_window_seconds=int(env.get("DEDUPE_WINDOW_SECONDS") or cls.dedupe_window_seconds),
            publish_attempts=int(env.get("PUBLISH_ATTEMPTS") or cls.publish_attempts),
        )


@dataclass(frozen=True)
class Dependencies:
    """What the handler needs, built once per container (tests build their own)."""

    router: ErrorRouter


def build_dependencies(
    settings: Settings,
    events_client: Any,
    dynamodb_client: Any,
    sleep: Callable[[float], None] = time.sleep,
) -> Dependencies:
    """Wire the router from settings and clients."""
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, boto3_client=dynamodb_client
    )
    router = ErrorRouter(
        events_client,
        PublishLedger(persistence, settings.dedupe_window_seconds),
        EventTarget(settings.event_bus_name, settings.event_source, settings.detail_type),
        policy=PublishPolicy(attempts=settings.publish_attempts),
        sleep=sleep,
    )
    return Dependencies(router=router)


@cache
def default_dependencies() -> Dependencies:
    """The container's dependencies, created on first use (not at import)."""
    return build_dependencies(Settings.from_env(os.environ), boto3.client("events"), boto3.client("dynamodb"))


def handle(event: dict[str, Any], context: LambdaContext, deps: Dependencies) -> PartialItemFailureResponse:
    """Route one SQS batch and answer with the messages to retry."""
    callbacks = [
        QueuedCallback.read(message.message_id, message.body)
        for message in (SQSRecord(raw) for raw in event["Records"])
    ]
    report = deps.router.route(callbacks, context.get_remaining_time_in_millis())
    for name, count in report.counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    logger.info("Error callbacks routed", extra={"messages": len(callbacks), **report.counts})
    for message_id, error in report.failures.items():
        logger.warning(
            "Error callback not routed; SQS retries it, then moves it to the dead-letter queue",
            extra={"message_id": message_id, "error": type(error).__name__, "detail": str(error)},
        )

    def settle(record: SQSRecord) -> None:
        report.settle(record.message_id)

    return process_partial_response(event=event, record_handler=settle, processor=processor, context=context)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return handle(event, context, default_dependencies())
