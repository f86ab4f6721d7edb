"""The Lambda service's part, played locally: pollers that turn queue messages into invocations.

- ``EventSourcePoller`` is an SQS event source mapping: it receives batches
  (``BatchSize``, ``MaximumBatchingWindowInSeconds`` capped so local runs stay
  quick), invokes the function with the SQS event Lambda builds, and deletes
  what succeeded. With ``ReportBatchItemFailures`` only the reported failures
  stay; an exception keeps the whole batch. The queue's visibility timeout
  and ``RedrivePolicy`` (enforced by moto) then retry them and move poison
  messages to the dead-letter queue, as on AWS.
- ``AsyncSourcePoller`` drains an internal queue standing in for a target
  moto cannot deliver to: an EventBridge rule target (a function, a topic,
  or a queue with ``Input``/``InputPath``) or an SNS subscription of a
  function. Functions are invoked the way EventBridge and SNS invoke them
  (asynchronously: retried ``MaximumRetryAttempts`` times, default 2, then
  sent to the ``OnFailure`` destination or the function's dead-letter queue).
  Retry delays are seconds here, not minutes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.events.models import EventPattern

from aws_emulator.functions import FunctionHost, Invocation
from aws_emulator.provision import (
    AsyncSourceSpec,
    EventSourceSpec,
    FunctionSpec,
    InvokeConfigSpec,
)

LOG = logging.getLogger("aws_emulator")

# Local stand-ins for AWS timings, so a callback is everywhere within seconds.
MAX_BATCHING_WINDOW_SECONDS = 1.0
RETRY_DELAY_SECONDS = 1
# EventBridge retries a target up to 185 times over 24 h; locally a few quick tries show the outcome.
MAX_LOCAL_TARGET_RETRIES = 2
_POLL_WAIT_SECONDS = 1
_IDLE_SLEEP_SECONDS = 0.05
_SQS_RECEIVE_MAX = 10
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


def queue_url_of(sqs: Any, queue_arn: str) -> str:
    """The URL of a queue given its ARN (same account and region as the emulator)."""
    return str(sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"])


def lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """SQS API message attributes in the lower-camel shape of Lambda's SQS event."""
    converted: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        converted[name] = item
    return converted


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the event Lambda builds from an SQS message."""
    system = message.get("Attributes") or {}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {key: system[key] for key in _RECORD_ATTRIBUTES if key in system},
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def matches_filters(record: Mapping[str, Any], patterns: tuple[str, ...]) -> bool:
    """Lambda event filtering: a record passes when any pattern matches (the body as JSON if it is)."""
    if not patterns:
        return True
    candidate = dict(record)
    with contextlib.suppress(ValueError):
        candidate["body"] = json.loads(str(record.get("body", "")))
    return any(EventPattern.load(pattern).matches_event(candidate) for pattern in patterns)  # type: ignore[arg-type]


def failed_message_ids(response: Any, message_ids: list[str]) -> set[str]:
    """Which messages of a batch failed, read from a ReportBatchItemFailures response.

    As on AWS: no response, or an empty/null list, is full success; a malformed
    list (empty, null or unknown ``itemIdentifier``) fails the whole batch.
    """
    if not isinstance(response, Mapping):
        return set()
    failures = response.get("batchItemFailures")
    if not failures:
        return set()
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not identifier or identifier not in message_ids:
            return set(message_ids)
        failed.add(str(identifier))
    return failed


class _StoppableThread(threading.Thread):
    def __init__(self, name: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.stop_event = stop

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if not self.poll_once():
                    self.stop_event.wait(_IDLE_SLEEP_SECONDS)
            except Exception:
                if self.stop_event.is_set():
                    return
                LOG.exception("%s: polling failed; retrying", self.name)
                self.stop_event.wait(1)

    def poll_once(self) -> int:
        raise NotImplementedError


class EventSourcePoller(_StoppableThread):
    """One SQS event source mapping: batches of messages → one function invocation."""

    def __init__(
        self,
        spec: EventSourceSpec,
        function: FunctionSpec,
        *,
        host: FunctionHost,
        sqs: Any,
        region: str,
        stop: threading.Event,
        max_batching_window: float = MAX_BATCHING_WINDOW_SECONDS,
    ) -> None:
        super().__init__(f"poller-{function.logical_id}-{spec.logical_id}", stop)
        self.spec = spec
        self.function = function
        self.host = host
        self.sqs = sqs
        self.region = region
        self.queue_url = queue_url_of(sqs, spec.queue_arn)
        self.window = min(spec.batching_window, max_batching_window)

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(count, _SQS_RECEIVE_MAX),
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def poll_once(self) -> int:
        """Receive one batch (waiting up to a second for the first message) and invoke the function."""
        batch = self._receive(self.spec.batch_size, _POLL_WAIT_SECONDS)
        if not batch:
            return 0
        deadline = time.monotonic() + self.window
        while (
            len(batch) < self.spec.batch_size and time.monotonic() < deadline and not self.stop_event.is_set()
        ):
            more = self._receive(self.spec.batch_size - len(batch), 0)
            if more:
                batch.extend(more)
            else:
                time.sleep(_IDLE_SLEEP_SECONDS)
        self.process(batch)
        return len(batch)

    def process(self, messages: list[dict[str, Any]]) -> Invocation | None:
        """Invoke the function with a batch and delete what it handled."""
        records = [sqs_record(message, self.spec.queue_arn, self.region) for message in messages]
        selected = [record for record in records if matches_filters(record, self.spec.filter_patterns)]
        # Lambda deletes messages its filters drop.
        self._delete_records([record for record in records if record not in selected])
        if not selected:
            return None
        invocation = self.host.invoke(self.function, {"Records": selected})
        message_ids = [record["messageId"] for record in selected]
        if invocation.failed:
            LOG.warning(
                "%s failed a batch of %d (%s: %s); the messages will be retried",
                self.function.logical_id,
                len(selected),
                type(invocation.error).__name__,
                invocation.error,
            )
            return invocation
        failed = (
            failed_message_ids(invocation.result, message_ids)
            if self.spec.report_batch_item_failures
            else set()
        )
        self._delete_records([record for record in selected if record["messageId"] not in failed])
        LOG.info(
            "%s handled %d message(s): %d ok, %d to retry (%.0f ms)",
            self.function.logical_id,
            len(selected),
            len(selected) - len(failed),
            len(failed),
            invocation.duration_ms,
        )
        return invocation

    def _delete_records(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), _SQS_RECEIVE_MAX):
            chunk = records[start : start + _SQS_RECEIVE_MAX]
            entries = [
                {"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
                for index, record in enumerate(chunk)
            ]
            if entries:
                self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)


@dataclass(frozen=True)
class FailureRoute:
    """Where an event goes when its retries are exhausted, and in which shape."""

    arn: str
    shape: str  # "destination" (invocation record), "function-dlq", "target-dlq" or "subscription-dlq"


class AsyncSourcePoller(_StoppableThread):
    """Delivers events from an internal queue to what the template wired up, with retries."""

    def __init__(
        self,
        spec: AsyncSourceSpec,
        host: FunctionHost,
        *,
        clients: Any,
        region: str,
        stop: threading.Event,
        function: FunctionSpec | None = None,
        invoke_config: InvokeConfigSpec | None = None,
    ) -> None:
        super().__init__(f"async-{spec.logical_id}-{spec.target_id}", stop)
        self.spec = spec
        self.host = host
        self.clients = clients
        self.region = region
        self.function = function
        self.invoke_config = invoke_config
        self.failure_route = self._failure_route()

    @property
    def max_retries(self) -> int:
        if self.function is not None and self.invoke_config is not None:
            return self.invoke_config.max_retries
        return min(self.spec.max_retries, MAX_LOCAL_TARGET_RETRIES)

    @property
    def max_event_age(self) -> int:
        if self.function is not None and self.invoke_config is not None:
            return self.invoke_config.max_event_age
        return self.spec.max_event_age

    def _failure_route(self) -> FailureRoute | None:
        if self.function is not None:
            if self.invoke_config is not None and self.invoke_config.on_failure_arn:
                return FailureRoute(self.invoke_config.on_failure_arn, "destination")
            if self.function.dead_letter_arn:
                return FailureRoute(self.function.dead_letter_arn, "function-dlq")
        if self.spec.dead_letter_arn:
            # On AWS a rule target's or subscription's DLQ only receives events that could not be
            # handed to the function at all; locally it also catches exhausted function retries.
            shape = "target-dlq" if self.spec.kind == "eventbridge" else "subscription-dlq"
            return FailureRoute(self.spec.dead_letter_arn, shape)
        return None

    def poll_once(self) -> int:
        response = self.clients.sqs.receive_message(
            QueueUrl=self.spec.queue_url,
            MaxNumberOfMessages=_SQS_RECEIVE_MAX,
            WaitTimeSeconds=_POLL_WAIT_SECONDS,
            MessageSystemAttributeNames=["All"],
        )
        messages = list(response.get("Messages") or [])
        for message in messages:
            self.process(message)
        return len(messages)

    def process(self, message: Mapping[str, Any]) -> bool:
        """Deliver one event; True when it is done with (delivered or sent to its failure route)."""
        attributes = message.get("Attributes") or {}
        attempt = int(attributes.get("ApproximateReceiveCount", "1"))
        age = time.time() - int(attributes.get("SentTimestamp", str(int(time.time() * 1000)))) / 1000
        event = self._event(str(message.get("Body", "")))
        error: dict[str, Any] | None = None
        condition = "RetriesExhausted"
        if age > self.max_event_age:
            condition = "EventAgeExceeded"
            error = {
                "errorMessage": "event older than MaximumEventAgeInSeconds",
                "errorType": "EventAgeExceeded",
            }
        else:
            error = self._deliver(event)
            if error is None:
                self._delete_message(message)
                return True
            if attempt <= self.max_retries:
                LOG.warning(
                    "%s → %s failed (attempt %d of %d): %s",
                    self.spec.logical_id,
                    self.spec.target_id,
                    attempt,
                    self.max_retries + 1,
                    error.get("errorMessage"),
                )
                self.clients.sqs.change_message_visibility(
                    QueueUrl=self.spec.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=RETRY_DELAY_SECONDS * attempt,
                )
                return False
        self._fail(event, str(message.get("Body", "")), error, condition, attempt)
        self._delete_message(message)
        return True

    def _delete_message(self, message: Mapping[str, Any]) -> None:
        self.clients.sqs.delete_message(QueueUrl=self.spec.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _event(self, body: str) -> Any:
        if self.spec.kind == "sns":
            return {"Records": [sns_lambda_record(json.loads(body), self.spec.source_arn)]}
        original = json.loads(body)
        if isinstance(original, dict):
            original.pop("ingestion-time", None)
        return transform_input(
            original, self.spec.input, self.spec.input_path, self.spec.input_transformer, self.spec.source_arn
        )

    def _deliver(self, event: Any) -> dict[str, Any] | None:
        """Hand the event to the target; the error payload when it failed."""
        if self.function is not None:
            payload = json_or_text(event) if isinstance(event, str) else event
            invocation = self.host.invoke(self.function, payload)
            if invocation.failed:
                return invocation.error_payload()
            LOG.info("%s handled an event (%.0f ms)", self.function.logical_id, invocation.duration_ms)
            return None
        try:
            service = self.spec.target_arn.split(":")[2]
            message = event if isinstance(event, str) else json.dumps(event)
            if service == "sns":
                self.clients.sns.publish(TopicArn=self.spec.target_arn, Message=message)
            else:
                self.clients.sqs.send_message(
                    QueueUrl=queue_url_of(self.clients.sqs, self.spec.target_arn), MessageBody=message
                )
        except Exception as error:
            return {"errorMessage": str(error), "errorType": type(error).__name__}
        return None

    def _fail(
        self, event: Any, body: str, error: dict[str, Any] | None, condition: str, attempts: int
    ) -> None:
        route = self.failure_route
        error = error or {}
        if route is None:
            LOG.error(
                "%s → %s: event dropped after %d attempt(s) (%s); nothing is configured to keep it",
                self.spec.logical_id,
                self.spec.target_id,
                attempts,
                error.get("errorMessage"),
            )
            return
        LOG.warning(
            "%s → %s: retries exhausted, event sent to %s",
            self.spec.logical_id,
            self.spec.target_id,
            route.arn,
        )
        if route.shape == "destination" and self.function is not None:
            record = invocation_record(self.function.arn, event, error, condition, attempts)
            send_to(self.clients, route.arn, json.dumps(record), {})
        elif route.shape == "function-dlq":
            send_to(
                self.clients,
                route.arn,
                json.dumps(event),
                {
                    "RequestID": error.get("requestId", str(uuid.uuid4())),
                    "ErrorCode": "200",
                    "ErrorMessage": str(error.get("errorMessage", ""))[:1000],
                },
            )
        elif route.shape == "target-dlq":
            send_to(
                self.clients,
                route.arn,
                body,
                {
                    "RULE_ARN": self.spec.source_arn,
                    "TARGET_ARN": self.spec.target_arn,
                    "ERROR_CODE": str(error.get("errorType", "")),
                    "ERROR_MESSAGE": str(error.get("errorMessage", ""))[:1000],
                    "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts"
                    if condition == "RetriesExhausted"
                    else "MaximumEventAgeInSeconds",
                    "RETRY_ATTEMPTS": str(max(0, attempts - 1)),
                },
            )
        else:
            send_to(self.clients, route.arn, body, {})


def send_to(clients: Any, target_arn: str, body: str, attributes: Mapping[str, str]) -> None:
    """Send a failure record to an SQS queue, an SNS topic or an EventBridge bus by ARN."""
    service = target_arn.split(":")[2]
    string_attributes = {
        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items() if value
    }
    if service == "sqs":
        clients.sqs.send_message(
            QueueUrl=queue_url_of(clients.sqs, target_arn),
            MessageBody=body,
            MessageAttributes=string_attributes,
        )
    elif service == "sns":
        clients.sns.publish(TopicArn=target_arn, Message=body, MessageAttributes=string_attributes)
    elif service == "events":
        clients.events.put_events(
            Entries=[
                {
                    "Source": "lambda",
                    "DetailType": "Lambda Function Invocation Result - Failure",
                    "Detail": body,
                    "EventBusName": target_arn,
                }
            ]
        )
    else:
        LOG.error("failure destination %s is not supported locally; the event is dropped", target_arn)


def invocation_record(
    function_arn: str, event: Any, error: Mapping[str, Any], condition: str, attempts: int
) -> dict[str, Any]:
    """What Lambda sends to an OnFailure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": error.get("requestId", str(uuid.uuid4())),
            "functionArn": f"{function_arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            key: error[key] for key in ("errorMessage", "errorType", "stackTrace") if key in error
        },
    }


def sns_lambda_record(notification: Mapping[str, Any], subscription_arn: str) -> dict[str, Any]:
    """An SNS notification (as SNS delivers it to SQS) in the shape SNS invokes Lambda with."""
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": notification.get("Type", "Notification"),
            "MessageId": notification.get("MessageId"),
            "TopicArn": notification.get("TopicArn"),
            "Subject": notification.get("Subject"),
            "Message": notification.get("Message"),
            "Timestamp": notification.get("Timestamp"),
            "SignatureVersion": notification.get("SignatureVersion", "1"),
            "Signature": notification.get("Signature", ""),
            "SigningCertUrl": notification.get("SigningCertURL", ""),
            "UnsubscribeUrl": notification.get("UnsubscribeURL", ""),
            "MessageAttributes": notification.get("MessageAttributes") or {},
        },
    }


def transform_input(
    event: Any,
    constant: str | None = None,
    input_path: str | None = None,
    transformer: Mapping[str, Any] | None = None,
    rule_arn: str = "",
) -> Any:
    """Apply a rule target's Input, InputPath or InputTransformer to an event.

    A constant ``Input`` or an ``InputTransformer`` yields text (what EventBridge
    delivers to a topic or queue verbatim); ``InputPath`` and no transformation
    yield the selected JSON value.
    """
    if constant is not None:
        return str(constant)
    if input_path:
        return _json_path(event, input_path)
    if transformer:
        return render_input_template(
            str(transformer.get("InputTemplate", "")),
            dict(transformer.get("InputPathsMap") or {}),
            event,
            rule_arn,
        )
    return event


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def render_input_template(template: str, paths: Mapping[str, str], event: Any, rule_arn: str = "") -> str:
    """EventBridge's InputTemplate: ``<name>`` replaced by the value its input path selects.

    Inside quotes a string is inserted as string content (escaped); elsewhere a
    string is inserted as is and any other value as JSON.
    """
    values: dict[str, Any] = {name: _json_path(event, path) for name, path in paths.items()}
    values.setdefault("aws.events.event.json", event)
    values.setdefault("aws.events.event", event)
    values.setdefault("aws.events.rule-arn", rule_arn)
    values.setdefault("aws.events.rule-name", rule_arn.rsplit("/", 1)[-1])
    values.setdefault(
        "aws.events.event.ingestion-time", event.get("time", "") if isinstance(event, dict) else ""
    )

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        value = values[name]
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        quoted = (
            match.start() > 0
            and template[match.start() - 1] == '"'
            and template[match.end() : match.end() + 1] == '"'
        )
        if quoted:
            return json.dumps(text)[1:-1]
        return "null" if value is None else text

    return _PLACEHOLDER.sub(replace, template)


def json_or_text(text: str) -> Any:
    """A payload as a Lambda function receives it: parsed when it is JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_path(event: Any, path: str) -> Any:
    """The JSONPath subset EventBridge input paths use: ``$``, ``$.a.b``, ``$.a['b-c']``."""
    value = event
    expression = path.strip()
    if not expression.startswith("$"):
        raise ValueError(f"unsupported input path {path!r}")
    expression = expression[1:].replace("['", ".").replace("']", "")
    for part in filter(None, expression.split(".")):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
