"""Archiver Lambda: one SQS batch of callback records becomes one S3 object per UTC day.

An adapter: read each message with the shared delivery reader, let
``status_callbacks.archive`` plan the objects, write them, and report exactly
the messages that could not be archived as batch item failures, so they are
retried and, failing again, end in the dead-letter queue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.adapters.s3 import put_new_object
from status_callbacks.domain.archive import (
    ARCHIVE_PREFIX,
    CONTENT_TYPE,
    ArchiveObject,
    ArchivePlan,
    plan_archive,
)
from status_callbacks.domain.delivery import UndeliverableRecordError, record_from_body
from status_callbacks.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class Settings:
    """Where the archive lives, from the function's environment."""

    bucket: str
    prefix: str = ARCHIVE_PREFIX

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        bucket = environ.get("ARCHIVE_BUCKET", "").strip()
        if not bucket:
            raise ValueError("ARCHIVE_BUCKET must name the archive bucket")
        prefix = environ.get("ARCHIVE_PREFIX", ARCHIVE_PREFIX)
        if not prefix.endswith("/") or prefix.startswith("/"):
            raise ValueError("ARCHIVE_PREFIX must be a relative key prefix ending in '/'")
        return cls(bucket=bucket, prefix=prefix)


@dataclass(frozen=True)
class Dependencies:
    """What the handler talks to; tests pass their own."""

    settings: Settings
    s3: S3Client


@cache
def default_dependencies() -> Dependencies:
    """Settings and client built once per container, on first invocation."""
    return Dependencies(settings=Settings.from_env(os.environ), s3=boto3.client("s3"))


class FailureReason(StrEnum):
    """Why a message is reported back to SQS; each is a metric."""

    UNDELIVERABLE = "UndeliverableMessages"
    UNARCHIVABLE = "UnarchivableRecords"
    WRITE_FAILED = "ArchiveWriteFailures"


class ArchiveFailure(Exception):
    """This message was not archived; SQS must deliver it again."""

    def __init__(self, reason: FailureReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@tracer.capture_method
def write_object(s3: S3Client, bucket: str, archive_object: ArchiveObject) -> bool:
    """Create the object unless a previous delivery already wrote it (False then).

    The key names exactly this set of events, so an existing object already holds them.
    """
    return put_new_object(s3, bucket, archive_object.key, archive_object.body(), CONTENT_TYPE)


@dataclass
class _Tally:
    written: int = 0
    present: int = 0
    records: int = 0


def _store(plan: ArchivePlan, deps: Dependencies, failures: dict[str, FailureReason]) -> _Tally:
    """Write the plan's objects; a failed object fails exactly the messages it holds."""
    tally = _Tally()
    for archive_object in plan.objects:
        try:
            if write_object(deps.s3, deps.settings.bucket, archive_object):
                tally.written += 1
            else:
                tally.present += 1
        except (BotoCoreError, ClientError) as error:
            code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
            logger.warning(
                "Archive object not written; its messages will be retried",
                extra={"key": archive_object.key, "records": len(archive_object.records), "error": code},
            )
            for delivery_id in archive_object.delivery_ids:
                failures[delivery_id] = FailureReason.WRITE_FAILED
            continue
        tally.records += len(archive_object.records)
        logger.debug(
            "Archive object stored", extra={"key": archive_object.key, "records": len(archive_object.records)}
        )
    return tally


def archive_batch(messages: list[SQSRecord], deps: Dependencies) -> dict[str, FailureReason]:
    """Archive every record in the batch; the failed messages' ids with the reason."""
    failures: dict[str, FailureReason] = {}
    deliveries = []
    for message in messages:
        try:
            deliveries.append((message.message_id, record_from_body(message.body)))
        except UndeliverableRecordError:
            logger.warning("Message holds no callback record", extra={"message_id": message.message_id})
            failures[message.message_id] = FailureReason.UNDELIVERABLE

    plan = plan_archive(deliveries, deps.settings.prefix)
    for delivery_id in plan.unarchivable:
        logger.warning("Record's received_at names no day", extra={"message_id": delivery_id})
        failures[delivery_id] = FailureReason.UNARCHIVABLE

    tally = _store(plan, deps, failures)

    metrics.add_metric(name="ArchivedRecords", unit=MetricUnit.Count, value=tally.records)
    metrics.add_metric(name="ArchiveObjectsWritten", unit=MetricUnit.Count, value=tally.written)
    metrics.add_metric(name="ArchiveObjectsAlreadyPresent", unit=MetricUnit.Count, value=tally.present)
    metrics.add_metric(name="DuplicateRecordsInBatch", unit=MetricUnit.Count, value=plan.duplicates)
    for reason in FailureReason:
        count = sum(1 for failed in failures.values() if failed is reason)
        metrics.add_metric(name=reason.value, unit=MetricUnit.Count, value=count)
    logger.info(
        "Archived batch",
        extra={
            "messages": len(messages),
            "objects": len(plan.objects),
            "objects_written": tally.written,
            "records": tally.records,
            "duplicates": plan.duplicates,
            "failed_messages": len(failures),
        },
    )
    return failures


def handle(event: dict[str, Any], context: LambdaContext, deps: Dependencies) -> PartialItemFailureResponse:
    """Archive the batch, then let Powertools report the failed messages to SQS."""
    failures = archive_batch([SQSRecord(raw) for raw in event["Records"]], deps)

    # Powertools passes the message as the keyword argument `record`.
    def settle(record: SQSRecord) -> None:
        reason = failures.get(record.message_id)
        if reason is not None:
            raise ArchiveFailure(reason)

    # Every message failing is still a partial response (all ids), not a crash:
    # the outcome for SQS is the same and the function's error metric stays meaningful.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=settle, processor=processor, context=context)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda entry point for the archive queue's event source mapping."""
    return handle(event, context, default_dependencies())
