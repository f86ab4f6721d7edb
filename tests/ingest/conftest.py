"""The ingest stack's AWS side in moto: ingest queue, record topic, auth token secret, subscribers.

`IngestStack.deliver` takes requests as they leave Twilio, forwards them as
api.yaml maps them, sends them to the moto ingest queue, receives them as the
Lambda event source would and runs the real handler on that event.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import validator_handler
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from moto import mock_aws

from aws_emulator.templates import load_template
from status_callbacks.adapters.secrets import AuthTokenSource
from status_callbacks.domain.delivery import record_from_body
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.rejected import RejectedRequest, decode_requests
from status_callbacks.domain.validation import Destination
from status_callbacks.observability import logger
from tests.support import api_gateway
from tests.support.signing import TEST_AUTH_TOKEN, TwilioRequest

SECRET_NAME = "TwilioStatusCallbackHandler"
TEMPLATE = Path(__file__).resolve().parents[2] / "aws_stacks" / "StatusCallbackHandler" / "template.yaml"


def template_callback_routes() -> str:
    """The validator's CALLBACK_ROUTES exactly as the template sets it (through its Mappings)."""
    template = load_template(TEMPLATE)
    environment = template["Resources"]["ValidatorFunction"]["Properties"]["Environment"]
    map_name, top, second = environment["Variables"]["CALLBACK_ROUTES"]["Fn::FindInMap"]
    return str(template["Mappings"][map_name][top][second])


# Configured as the template configures the deployed validator (the API's domain, api.yaml's routes).
DESTINATION = Destination.of(api_gateway.API_DOMAIN, template_callback_routes())
REJECTED_BUCKET = "rejected-requests"


@dataclass
class LambdaContext:
    """The attributes Powertools reads from the Lambda context."""

    function_name: str = "StatusCallbackHandler-ValidatorFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:StatusCallbackHandler-ValidatorFunction"
    )
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


@dataclass
class IngestStack:
    """moto resources shaped like template.yaml's, plus two subscriber queues to observe the topic."""

    sqs: Any
    sns: Any
    secretsmanager: Any
    s3: Any
    queue_url: str
    queue_arn: str
    topic_arn: str
    all_records_url: str
    error_records_url: str
    public_base_url: str | None = None
    invocations: list[dict[str, Any]] = field(default_factory=list)

    def dependencies(self) -> validator_handler.Dependencies:
        """Fresh handler dependencies (own secrets cache) around the moto-backed clients."""
        return validator_handler.Dependencies(
            settings=validator_handler.Settings(
                topic_arn=self.topic_arn,
                auth_token_secret_name=SECRET_NAME,
                rejected_bucket=REJECTED_BUCKET,
                public_base_url=self.public_base_url,
                destination=DESTINATION,
            ),
            sns=self.sns,
            s3=self.s3,
            tokens=AuthTokenSource(SECRET_NAME, SecretsProvider(boto3_client=self.secretsmanager)),
        )

    def kept(self) -> list[RejectedRequest]:
        """Every request the validator kept in the rejected store, oldest first."""
        keys = [item["Key"] for item in self.s3.list_objects_v2(Bucket=REJECTED_BUCKET).get("Contents", [])]
        requests = [
            request
            for key in keys
            for request in decode_requests(self.s3.get_object(Bucket=REJECTED_BUCKET, Key=key)["Body"].read())
        ]
        return sorted(requests, key=lambda request: (request.received_at, request.message_id))

    def put_secret(self, secret: dict[str, str]) -> None:
        self.secretsmanager.put_secret_value(SecretId=SECRET_NAME, SecretString=json.dumps(secret))

    def enqueue(self, requests: Sequence[TwilioRequest], plus_as_space: bool = False) -> list[str]:
        """What API Gateway does for each request; returns the SQS message ids in order."""
        return [
            api_gateway.send(self.sqs, self.queue_url, api_gateway.forward(r, plus_as_space=plus_as_space))
            for r in requests
        ]

    def receive_event(self) -> dict[str, Any]:
        return api_gateway.receive_event(self.sqs, self.queue_url, self.queue_arn)

    def invoke(
        self, event: dict[str, Any], deps: validator_handler.Dependencies | None = None
    ) -> dict[str, Any]:
        """Run the decorated Lambda handler (logging, metrics, tracing) on this event."""
        chosen = deps or self.dependencies()
        original = validator_handler.default_dependencies
        validator_handler.default_dependencies = lambda: chosen
        try:
            response = validator_handler.handler(event, LambdaContext())
        finally:
            validator_handler.default_dependencies = original
        self.invocations.append(response)
        return response

    def deliver(
        self,
        requests: Sequence[TwilioRequest],
        deps: validator_handler.Dependencies | None = None,
        plus_as_space: bool = False,
    ) -> tuple[list[str], dict[str, Any]]:
        """Enqueue the requests, receive them as one batch and run the handler on it."""
        message_ids = self.enqueue(requests, plus_as_space)
        event = self.receive_event()
        assert [record["messageId"] for record in event["Records"]] == message_ids
        return message_ids, self.invoke_and_settle(event, deps)

    def invoke_and_settle(
        self, event: dict[str, Any], deps: validator_handler.Dependencies | None = None
    ) -> dict[str, Any]:
        """Invoke, then do what the event source mapping does with ReportBatchItemFailures.

        Succeeded messages are deleted; failed ones stay and (as if their
        visibility timeout had passed) become receivable again at once.
        """
        response = self.invoke(event, deps)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for record in event["Records"]:
            if record["messageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        return response

    def redeliver(
        self, deps: validator_handler.Dependencies | None = None
    ) -> tuple[list[str], dict[str, Any]]:
        """SQS hands the messages still in the queue to the validator again."""
        event = self.receive_event()
        return [record["messageId"] for record in event["Records"]], self.invoke_and_settle(event, deps)

    def _drain(self, queue_url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)
            self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )

    def published(self) -> list[CallbackRecord]:
        """Records the topic delivered to an unfiltered raw subscription (consumed)."""
        return [record_from_body(m["Body"]) for m in self._drain(self.all_records_url)]

    def published_messages(self) -> list[dict[str, Any]]:
        """Raw SQS messages of the unfiltered subscription, with SNS attributes (consumed)."""
        return self._drain(self.all_records_url)

    def published_errors(self) -> list[CallbackRecord]:
        """Records delivered to the subscription filtering on `ErrorCode` exists (consumed)."""
        return [record_from_body(m["Body"]) for m in self._drain(self.error_records_url)]


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


@pytest.fixture
def ingest_stack() -> Iterator[IngestStack]:
    """Given the ingest stack's resources with the test auth token stored in the secret."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=REJECTED_BUCKET)
        queue_url, queue_arn = _queue(sqs, "ingest")
        topic_arn = sns.create_topic(Name="records", Attributes={"KmsMasterKeyId": "alias/aws/sns"})[
            "TopicArn"
        ]
        all_url, all_arn = _queue(sqs, "all-records")
        errors_url, errors_arn = _queue(sqs, "error-records")
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=all_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=errors_arn,
            Attributes={
                "RawMessageDelivery": "true",
                "FilterPolicy": json.dumps({"ErrorCode": [{"exists": True}]}),
            },
        )
        secretsmanager.create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({"AUTH_TOKEN": TEST_AUTH_TOKEN})
        )
        yield IngestStack(
            sqs=sqs,
            sns=sns,
            secretsmanager=secretsmanager,
            s3=s3,
            queue_url=queue_url,
            queue_arn=queue_arn,
            topic_arn=topic_arn,
            all_records_url=all_url,
            error_records_url=errors_url,
        )


@pytest.fixture
def sns_calls(ingest_stack: IngestStack) -> list[str]:
    """Every SNS API operation the handler's client makes, in order (a botocore event hook)."""
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    ingest_stack.sns.meta.events.register("before-call.sns", count)
    return calls


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes (JSON lines) while the test runs."""
    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)
