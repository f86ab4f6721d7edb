"""Validator Lambda: a batch of queued HTTP requests in, signed callback records out to SNS.

For each SQS message API Gateway queued, `status_callbacks.validation` decides:
a record (published to the topic) or a rejection (counted, logged without PII,
dropped: retrying cannot make a forged request valid). A callback that could
not be published, or a batch whose auth tokens could not be read, is reported
back to SQS as a batch item failure so it is retried and finally dead-lettered.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.observability import logger, metrics, tracer
from status_callbacks.publishing import PublishEntry, merge_duplicates, plan_publish_calls
from status_callbacks.record import CallbackRecord
from status_callbacks.tokens import DEFAULT_CACHE_SECONDS, AuthTokens, load_auth_tokens
from status_callbacks.validation import Destination, Rejection, RejectionReason, validate_callback

# Metric names (namespace and service come from POWERTOOLS_*); the template's alarms use them.
PUBLISHED_METRIC = "CallbacksPublished"
REJECTED_METRIC = "CallbacksRejected"
PUBLISH_FAILURES_METRIC = "PublishFailures"
TOKENS_UNAVAILABLE_METRIC = "AuthTokensUnavailable"
VALIDATION_ERRORS_METRIC = "ValidationErrors"


def rejection_metric(reason: RejectionReason) -> str:
    """Per-reason rejection count, e.g. CallbacksRejectedInvalidSignature."""
    return f"{REJECTED_METRIC}{reason.value}"


class CallbackNotPublishedError(RuntimeError):
    """The callback in this SQS message was not published; SQS must deliver it again."""


@dataclass(frozen=True)
class Settings:
    """The validator's non-secret configuration, from its environment."""

    topic_arn: str
    auth_token_secret_name: str
    public_base_url: str | None = None
    token_cache_seconds: int = DEFAULT_CACHE_SECONDS
    # The API's own domain and declared routes: a request forwarded for anything else is refused.
    destination: Destination = field(default_factory=Destination)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            topic_arn=env["TOPIC_ARN"],
            auth_token_secret_name=env["AUTH_TOKEN_SECRET_NAME"],
            public_base_url=env.get("PUBLIC_BASE_URL") or None,
            token_cache_seconds=int(env.get("AUTH_TOKEN_CACHE_SECONDS") or DEFAULT_CACHE_SECONDS),
            destination=Destination.of(env.get("API_DOMAIN", ""), env.get("CALLBACK_PATHS", "")),
        )


@dataclass(frozen=True)
class Dependencies:
    """What the handler talks to; tests build their own around moto-backed clients."""

    settings: Settings
    sns: Any
    secrets: SecretsProvider


@functools.cache
def default_dependencies() -> Dependencies:
    """Settings and AWS clients, created once per container on first use."""
    return Dependencies(
        settings=Settings.from_env(os.environ),
        sns=boto3.client("sns"),
        secrets=SecretsProvider(boto3_client=boto3.client("secretsmanager")),
    )


@dataclass
class BatchOutcome:
    """What happened to one SQS batch, for metrics, the summary log line and the response."""

    received: int = 0
    published: int = 0
    duplicates: int = 0
    rejections: Counter[RejectionReason] = field(default_factory=Counter)
    failed_message_ids: frozenset[str] = frozenset()
    publish_failures: int = 0
    validation_errors: int = 0

    @property
    def rejected(self) -> int:
        return self.rejections.total()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (SQS event source with ReportBatchItemFailures)."""
    return handle(event, context, default_dependencies())


def handle(event: dict[str, Any], context: LambdaContext | None, deps: Dependencies) -> dict[str, Any]:
    """Validate and publish one batch; return the failed message ids in Powertools' response shape."""
    messages = [SQSRecord(raw) for raw in event.get("Records", [])]
    outcome = ingest_batch(messages, deps)
    _record_metrics(outcome)
    logger.info(
        "callback batch ingested",
        extra={
            "received": outcome.received,
            "published": outcome.published,
            "duplicates": outcome.duplicates,
            "rejected": outcome.rejected,
            "failed": len(outcome.failed_message_ids),
        },
    )

    # Powertools calls this with the keyword `record`.
    def report(record: SQSRecord) -> None:
        if record.message_id in outcome.failed_message_ids:
            raise CallbackNotPublishedError(record.message_id)

    # The whole batch failing is an answer too (e.g. no auth tokens): report it, don't raise.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=report, processor=processor, context=context)
    )


def ingest_batch(messages: list[SQSRecord], deps: Dependencies) -> BatchOutcome:
    """Validate every message, publish the valid callbacks once each, collect what must be retried."""
    all_ids = frozenset(message.message_id for message in messages)
    tokens = _auth_tokens(deps)
    if tokens is None:
        return BatchOutcome(received=len(messages), failed_message_ids=all_ids)
    valid: list[tuple[str, CallbackRecord]] = []
    rejections: Counter[RejectionReason] = Counter()
    unexpected: set[str] = set()
    for message in messages:
        try:
            result = validate_callback(
                message.body,
                message.raw_event.get("messageAttributes") or {},
                tokens,
                received_at=_received_at(message),
                public_base_url=deps.settings.public_base_url,
                destination=deps.settings.destination,
            )
        except Exception as error:
            # A bug, not bad input (that is a Rejection): retry this message, keep the others moving.
            logger.error(
                "callback could not be validated; it will be retried",
                extra={"message_id": message.message_id, "error": type(error).__name__},
            )
            unexpected.add(message.message_id)
            continue
        if isinstance(result, Rejection):
            rejections[result.reason] += 1
            logger.warning(
                "callback rejected",
                extra={
                    "message_id": message.message_id,
                    "reason": result.reason.value,
                    "source_ip": result.source_ip,
                },
            )
        else:
            valid.append((message.message_id, result))
    entries = merge_duplicates(valid)
    failed_entries = publish(entries, deps)
    failed_ids = frozenset(unexpected | {mid for entry in failed_entries for mid in entry.message_ids})
    return BatchOutcome(
        received=len(messages),
        published=len(entries) - len(failed_entries),
        duplicates=len(valid) - len(entries),
        rejections=rejections,
        failed_message_ids=failed_ids,
        publish_failures=len(failed_entries),
        validation_errors=len(unexpected),
    )


def publish(entries: list[PublishEntry], deps: Dependencies) -> list[PublishEntry]:
    """PublishBatch every entry; return those SNS did not confirm."""
    failed: list[PublishEntry] = []
    for call in plan_publish_calls(entries):
        try:
            response = deps.sns.publish_batch(
                TopicArn=deps.settings.topic_arn,
                PublishBatchRequestEntries=[entry.request_entry() for entry in call],
            )
        except (BotoCoreError, ClientError) as error:
            logger.error(
                "PublishBatch call failed; its callbacks will be retried",
                extra={"entries": len(call), "error": _error_code(error)},
            )
            failed.extend(call)
            continue
        confirmed = {item["Id"] for item in response.get("Successful", [])}
        rejected = _failed_entry_codes(response.get("Failed", []))
        for entry in call:
            if entry.entry_id not in confirmed:
                failed.append(entry)
        if rejected or len(confirmed) < len(call):
            logger.error(
                "SNS did not publish some callbacks; they will be retried",
                extra={"entries": len(call), "failed": len(call) - len(confirmed), "codes": rejected},
            )
    return failed


def _auth_tokens(deps: Dependencies) -> AuthTokens | None:
    try:
        return load_auth_tokens(
            deps.settings.auth_token_secret_name,
            deps.secrets,
            max_age=deps.settings.token_cache_seconds,
        )
    except Exception as error:
        # Whatever went wrong reading the tokens means "retry later", never "reject as forged".
        # Only the error's type: messages from a secret transform could quote the secret.
        logger.error(
            "auth token secret unavailable; every callback in the batch will be retried",
            extra={"error": type(error).__name__, "secret_name": deps.settings.auth_token_secret_name},
        )
        metrics.add_metric(name=TOKENS_UNAVAILABLE_METRIC, unit=MetricUnit.Count, value=1)
        return None


def _received_at(message: SQSRecord) -> int:
    """When SQS accepted the request (epoch ms): the time the callback was received."""
    sent = message.attributes.sent_timestamp
    return int(sent) if sent else int(time.time() * 1000)


def _record_metrics(outcome: BatchOutcome) -> None:
    metrics.add_metric(name=PUBLISHED_METRIC, unit=MetricUnit.Count, value=outcome.published)
    metrics.add_metric(name=REJECTED_METRIC, unit=MetricUnit.Count, value=outcome.rejected)
    metrics.add_metric(name=PUBLISH_FAILURES_METRIC, unit=MetricUnit.Count, value=outcome.publish_failures)
    if outcome.validation_errors:
        metrics.add_metric(
            name=VALIDATION_ERRORS_METRIC, unit=MetricUnit.Count, value=outcome.validation_errors
        )
    for reason, count in sorted(outcome.rejections.items()):
        metrics.add_metric(name=rejection_metric(reason), unit=MetricUnit.Count, value=count)


def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def _failed_entry_codes(failed: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(item.get("Code", "Unknown")) for item in failed))
