"""Alerter Lambda: one error event from the alerts rule becomes one alert on the alerts topic.

EventBridge invokes it asynchronously. The message is plain text with a
subject (`status_callbacks.alerts`); a failed publish raises, so Lambda retries
and then sends the event to the on-failure destination (the targets' DLQ).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from status_callbacks.domain.alerts import alert_message
from status_callbacks.observability import logger, metrics, tracer


@dataclass(frozen=True)
class Settings:
    """Where alerts go, from the function's environment."""

    topic_arn: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(topic_arn=env["ALERTS_TOPIC_ARN"])


@dataclass(frozen=True)
class Dependencies:
    """What the handler talks to; tests pass their own."""

    settings: Settings
    sns: Any


@functools.cache
def default_dependencies() -> Dependencies:
    """Settings and client built once per container, on first invocation."""
    return Dependencies(settings=Settings.from_env(os.environ), sns=boto3.client("sns"))


def handle(event: Mapping[str, Any], deps: Dependencies) -> dict[str, str]:
    """Publish the alert for one error event; errors propagate so Lambda retries."""
    message = alert_message(event["detail"])
    response = deps.sns.publish(
        TopicArn=deps.settings.topic_arn, Subject=message.subject, Message=message.text
    )
    metrics.add_metric(name="AlertsSent", unit=MetricUnit.Count, value=1)
    logger.info(
        "Alert sent",
        extra={
            "event_id": event["detail"]["record"].get("event_id"),
            "error_code": event["detail"].get("ErrorCode"),
        },
    )
    return {"MessageId": str(response["MessageId"])}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    """Lambda entry point for the alerts rule."""
    return handle(event, default_dependencies())
