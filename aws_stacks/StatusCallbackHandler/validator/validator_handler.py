"""Validator Lambda: a batch of queued HTTP requests in, signed callback records out to SNS.

For each SQS message API Gateway queued, `status_callbacks.validation` decides:
a record (published to the topic) or a rejection (counted and kept in the
rejected-request store, where ``twilio-callbacks rejected replay`` can publish
it once the cause is fixed; retrying cannot make it valid). A callback that
could not be published or kept, or a batch whose auth tokens could not be read,
is reported back to SQS as a batch item failure so it is retried and finally
dead-lettered.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.adapters.s3 import put_new_object
from status_callbacks.adapters.secrets import AuthTokenSource
from status_callbacks.adapters.sns import publish_entries
from status_callbacks.domain.publishing import merge_duplicates
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.rejected import (
    CONTENT_TYPE,
    REJECTED_PREFIX,
    RejectedRequest,
    plan_rejected_objects,
    string_attributes,
)
from status_callbacks.domain.signature import TokenRole
from status_callbacks.domain.tokens import DEFAULT_CACHE_SECONDS, AuthTokens
from status_callbacks.domain.validation import (
    Accepted,
    Destination,
    Rejection,
    RejectionReason,
    validate_callback,
)
from status_callbacks.observability import logger, metrics, tracer

# Metric names (namespace and service come from POWERTOOLS_*); the template's alarms use them.
PUBLISHED_METRIC = "CallbacksPublished"
REJECTED_METRIC = "CallbacksRejected"
KEPT_METRIC = "RejectedRequestsKept"
NOT_KEPT_METRIC = "RejectedRequestsNotKept"
PUBLISH_FAILURES_METRIC = "PublishFailures"
TOKENS_UNAVAILABLE_METRIC = "AuthTokensUnavailable"
TOKENS_REFRESHED_METRIC = "AuthTokensRefreshedAfterFailure"
VALIDATION_ERRORS_METRIC = "ValidationErrors"
SECONDARY_TOKEN_METRIC = "CallbacksAcceptedWithSecondaryToken"  # noqa: S105 - a metric name
BASE64_BODIES_METRIC = "BodiesDecodedFromBase64"
RAW_QUERY_METRIC = "QueryValuesForwardedRaw"
# Rejections a refreshed token can turn into callbacks.
_SIGNATURE_REASONS = frozenset({RejectionReason.INVALID_SIGNATURE, RejectionReason.PUBLIC_BASE_URL_MISMATCH})


def rejection_metric(reason: RejectionReason) -> str:
    """Per-reason rejection count, e.g. CallbacksRejectedInvalidSignature."""
    return f"{REJECTED_METRIC}{reason.value}"


class CallbackNotPublishedError(RuntimeError):
    """The callback in this SQS message was not published or kept; SQS must deliver it again."""


@dataclass(frozen=True)
class Settings:
    """The validator's non-secret configuration, from its environment."""

    topic_arn: str
    auth_token_secret_name: str
    rejected_bucket: str
    public_base_url: str | None = None
    token_cache_seconds: int = DEFAULT_CACHE_SECONDS
    # The API's own domain and declared routes: a request forwarded for anything else is refused.
    destination: Destination = field(default_factory=Destination)
    rejected_prefix: str = REJECTED_PREFIX

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            topic_arn=env["TOPIC_ARN"],
            auth_token_secret_name=env["AUTH_TOKEN_SECRET_NAME"],
            rejected_bucket=env["REJECTED_BUCKET"],
            public_base_url=env.get("PUBLIC_BASE_URL") or None,
            token_cache_seconds=int(env.get("AUTH_TOKEN_CACHE_SECONDS") or DEFAULT_CACHE_SECONDS),
            destination=Destination.of(env.get("API_DOMAIN", ""), env.get("CALLBACK_ROUTES", "")),
        )


@dataclass(frozen=True)
class Dependencies:
    """What the handler talks to; tests build their own around moto-backed clients."""

    settings: Settings
    sns: Any
    s3: Any
    tokens: AuthTokenSource


@functools.cache
def default_dependencies() -> Dependencies:
    """Settings and AWS clients, created once per container on first use."""
    settings = Settings.from_env(os.environ)
    return Dependencies(
        settings=settings,
        sns=boto3.client("sns"),
        s3=boto3.client("s3"),
        tokens=AuthTokenSource(
            settings.auth_token_secret_name,
            SecretsProvider(boto3_client=boto3.client("secretsmanager")),
            max_age=settings.token_cache_seconds,
        ),
    )


@dataclass
class BatchOutcome:
    """What happened to one SQS batch, for metrics, the summary log line and the response."""

    received: int = 0
    published: int = 0
    duplicates: int = 0
    rejections: Counter[RejectionReason] = field(default_factory=Counter)
    kept: int = 0
    rejected_keys: list[str] = field(default_factory=list)
    failed_message_ids: frozenset[str] = frozenset()
    publish_failures: int = 0
    not_kept: int = 0
    validation_errors: int = 0
    tokens_refreshed: bool = False
    # How accepted callbacks were recognised: which AWS behaviour and which token.
    secondary_token: int = 0
    base64_bodies: int = 0
    raw_query: int = 0

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
    """Validate, publish and keep one batch; return the failed message ids in Powertools' response shape."""
    messages = [SQSRecord(raw) for raw in event.get("Records", [])]
    outcome = ingest_batch(messages, deps)
    _record_metrics(outcome)
    _log_outcome(outcome)

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
    """Validate every message, publish the valid callbacks once each, keep the rejected ones."""
    outcome = BatchOutcome(received=len(messages))
    tokens = _auth_tokens(deps)
    if tokens is None:
        outcome.failed_message_ids = frozenset(message.message_id for message in messages)
        return outcome
    results, unexpected = _validate_all(messages, tokens, deps)
    if any(isinstance(r, Rejection) and r.reason in _SIGNATURE_REASONS for r in results.values()):
        refreshed = _refreshed_tokens(deps)
        if refreshed is not None:
            outcome.tokens_refreshed = True
            retry = [m for m in messages if _signature_rejected(results.get(m.message_id))]
            again, errors = _validate_all(retry, refreshed, deps)
            results.update(again)
            unexpected |= errors

    accepted: list[tuple[str, CallbackRecord]] = []
    rejected: list[RejectedRequest] = []
    by_id = {message.message_id: message for message in messages}
    for message_id, result in results.items():
        if isinstance(result, Accepted):
            accepted.append((message_id, result.record))
            outcome.secondary_token += result.token is TokenRole.SECONDARY
            outcome.base64_bodies += result.body_was_base64
            outcome.raw_query += result.query_was_raw
        else:
            outcome.rejections[result.reason] += 1
            rejected.append(_rejected_request(by_id[message_id], result))

    entries = merge_duplicates(accepted)
    published = publish_entries(deps.sns, deps.settings.topic_arn, entries)
    if published.failed:
        logger.error(
            "SNS did not publish some callbacks; they will be retried",
            extra={"entries": len(entries), "failed": len(published.failed), "codes": dict(published.errors)},
        )
    not_kept = _keep(rejected, deps, outcome)
    outcome.published = len(entries) - len(published.failed)
    outcome.duplicates = len(accepted) - len(entries)
    outcome.publish_failures = len(published.failed)
    outcome.validation_errors = len(unexpected)
    outcome.failed_message_ids = frozenset(
        unexpected | not_kept | {mid for entry in published.failed for mid in entry.message_ids}
    )
    return outcome


def _validate_all(
    messages: list[SQSRecord], tokens: AuthTokens, deps: Dependencies
) -> tuple[dict[str, Accepted | Rejection], set[str]]:
    results: dict[str, Accepted | Rejection] = {}
    unexpected: set[str] = set()
    for message in messages:
        try:
            results[message.message_id] = validate_callback(
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
    return results, unexpected


def _signature_rejected(result: Accepted | Rejection | None) -> bool:
    return isinstance(result, Rejection) and result.reason in _SIGNATURE_REASONS


def _rejected_request(message: SQSRecord, rejection: Rejection) -> RejectedRequest:
    return RejectedRequest(
        message_id=message.message_id,
        received_at=_received_at(message),
        reason=rejection.reason,
        body=message.body or "",
        attributes=string_attributes(message.raw_event.get("messageAttributes") or {}),
        detail=rejection.detail,
        source_ip=rejection.source_ip,
    )


def _keep(rejected: list[RejectedRequest], deps: Dependencies, outcome: BatchOutcome) -> set[str]:
    """Write the rejected requests to the store; the message ids of those that could not be kept."""
    not_kept: set[str] = set()
    for rejected_object in plan_rejected_objects(rejected, deps.settings.rejected_prefix):
        try:
            put_new_object(
                deps.s3,
                deps.settings.rejected_bucket,
                rejected_object.key,
                rejected_object.body(),
                CONTENT_TYPE,
            )
        except (BotoCoreError, ClientError) as error:
            logger.error(
                "rejected requests could not be kept; they will be retried",
                extra={
                    "key": rejected_object.key,
                    "requests": len(rejected_object.requests),
                    "error": _code(error),
                },
            )
            not_kept.update(rejected_object.message_ids)
            continue
        outcome.kept += len(rejected_object.requests)
        outcome.rejected_keys.append(rejected_object.key)
    outcome.not_kept = len(not_kept)
    return not_kept


def _auth_tokens(deps: Dependencies) -> AuthTokens | None:
    try:
        return deps.tokens.current()
    except Exception as error:
        # Whatever went wrong reading the tokens means "retry later", never "reject as forged".
        # Only the error's type: messages from a secret transform could quote the secret.
        logger.error(
            "auth token secret unavailable; every callback in the batch will be retried",
            extra={"error": type(error).__name__, "secret_name": deps.tokens.secret_name},
        )
        metrics.add_metric(name=TOKENS_UNAVAILABLE_METRIC, unit=MetricUnit.Count, value=1)
        return None


def _refreshed_tokens(deps: Dependencies) -> AuthTokens | None:
    """Tokens re-read after signature failures, when the cached copy is old enough and changed."""
    try:
        return deps.tokens.refreshed_after_failure()
    except Exception as error:
        # The rejections stand (and are kept): a replay picks them up once the secret reads again.
        logger.warning("auth token secret could not be re-read", extra={"error": type(error).__name__})
        return None


def _received_at(message: SQSRecord) -> int:
    """When SQS accepted the request (epoch ms): the time the callback was received."""
    sent = message.attributes.sent_timestamp
    return int(sent) if sent else int(time.time() * 1000)


# One line per container the first time a body needs decoding: it answers an AWS question once.
_noted_base64 = False


def _log_outcome(outcome: BatchOutcome) -> None:
    global _noted_base64  # noqa: PLW0603 - per-container "logged once" flag
    logger.info(
        "callback batch ingested",
        extra={
            "received": outcome.received,
            "published": outcome.published,
            "duplicates": outcome.duplicates,
            "rejected": outcome.rejected,
            "kept": outcome.kept,
            "failed": len(outcome.failed_message_ids),
            "secondary_token": outcome.secondary_token,
            "base64_bodies": outcome.base64_bodies,
            "raw_query": outcome.raw_query,
        },
    )
    if outcome.rejections:
        logger.warning(
            "callbacks rejected and kept for replay",
            extra={
                "by_reason": {reason.value: count for reason, count in sorted(outcome.rejections.items())},
                "keys": outcome.rejected_keys,
                "tokens_refreshed": outcome.tokens_refreshed,
            },
        )
    if outcome.base64_bodies and not _noted_base64:
        _noted_base64 = True
        logger.warning(
            "API Gateway queued form bodies base64-encoded; they are decoded before validation",
            extra={"bodies": outcome.base64_bodies},
        )


def _record_metrics(outcome: BatchOutcome) -> None:
    counts = {
        PUBLISHED_METRIC: outcome.published,
        REJECTED_METRIC: outcome.rejected,
        PUBLISH_FAILURES_METRIC: outcome.publish_failures,
    }
    optional = {
        KEPT_METRIC: outcome.kept,
        NOT_KEPT_METRIC: outcome.not_kept,
        VALIDATION_ERRORS_METRIC: outcome.validation_errors,
        TOKENS_REFRESHED_METRIC: int(outcome.tokens_refreshed),
        SECONDARY_TOKEN_METRIC: outcome.secondary_token,
        BASE64_BODIES_METRIC: outcome.base64_bodies,
        RAW_QUERY_METRIC: outcome.raw_query,
    }
    counts.update({name: value for name, value in optional.items() if value})
    counts.update({rejection_metric(reason): count for reason, count in outcome.rejections.items()})
    for name, value in sorted(counts.items()):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__
