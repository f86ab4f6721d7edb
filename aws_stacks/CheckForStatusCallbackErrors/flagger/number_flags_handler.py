"""Number flagger Lambda: error events whose actions include ``flag_number`` flag the number.

Invoked by the flag-number rule on the error bus. Records the recipient
(``twilio.To``) in the number-flags table, one item per number and error code;
a redelivered event is recognised and changes nothing. A failure raises, so
Lambda retries the event and then sends it to the flagger's dead-letter queue.
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
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from status_callbacks.adapters.dynamodb import FlagOutcome, record_number_flag
from status_callbacks.domain.flags import FlagSkipReason, number_flag_from_detail
from status_callbacks.observability import logger, metrics, tracer


@dataclass(frozen=True)
class Settings:
    """The flagger's configuration, from its environment."""

    number_flags_table: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(number_flags_table=env["NUMBER_FLAGS_TABLE_NAME"])


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Dependencies:
    """What the handler needs, built once per container (tests build their own)."""

    settings: Settings
    dynamodb: Any
    clock: Callable[[], int] = _now_ms


@cache
def default_dependencies() -> Dependencies:
    """The container's dependencies, created on first use (not at import)."""
    return Dependencies(settings=Settings.from_env(os.environ), dynamodb=boto3.client("dynamodb"))


_OUTCOME_METRICS = {
    FlagOutcome.RECORDED: "NumberFlagsRecorded",
    FlagOutcome.DUPLICATE: "DuplicateNumberFlags",
    FlagSkipReason.NOT_FLAGGED: "ErrorEventsNotFlagged",
    FlagSkipReason.NO_NUMBER: "ErrorEventsWithoutNumber",
}


def handle(event: dict[str, Any], context: LambdaContext, deps: Dependencies) -> dict[str, str]:
    """Flag the number of one error event; the outcome is returned and counted."""
    error_event = EventBridgeEvent(event)
    flag = number_flag_from_detail(error_event.detail)
    if isinstance(flag, FlagSkipReason):
        outcome: FlagOutcome | FlagSkipReason = flag
        event_id = str(error_event.detail.get("record", {}).get("event_id", ""))
    else:
        outcome = record_number_flag(deps.dynamodb, deps.settings.number_flags_table, flag, deps.clock())
        event_id = flag.event_id
    metrics.add_metric(name=_OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
    logger.info(
        "Error event handled by the number flagger",
        extra={
            "outcome": str(outcome),
            "event_id": event_id,
            "error_code": error_event.detail.get("ErrorCode"),
        },
    )
    return {"outcome": str(outcome)}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    return handle(event, context, default_dependencies())
