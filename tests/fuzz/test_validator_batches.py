"""The validator handler on batches mixing hostile messages with genuine callbacks (moto in-process).

Whatever an attacker puts in a batch, the genuine callbacks beside it are
published exactly once, every hostile message is rejected (never retried,
never published) and counted in the rejection metrics, the batch reports no
failures, and no log line carries the auth token or a phone number.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
import validator_handler
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from status_callbacks.adapters.secrets import AuthTokenSource
from status_callbacks.domain.delivery import record_from_body
from status_callbacks.domain.record import build_record
from status_callbacks.domain.rejected import decode_requests
from tests.fuzz.strategies import domains, param_names, signatures, text
from tests.fuzz.test_validator_properties import forwarded
from tests.reliability.harness import LogCapture, captured_logs, leaks
from tests.support.api_gateway import ForwardedMessage, lambda_event, lambda_sqs_record
from tests.support.signing import message_status_params, sign

pytestmark = pytest.mark.fuzz

TOKEN = "fuzz-batch-auth-token-not-a-secret"
SECRET_NAME = "TwilioStatusCallbackHandler"
REJECTED_BUCKET = "rejected-requests"
DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
SENT_AT = 1_767_225_600_000
# The test callbacks' numbers (tests.support.signing) and the ones drawn below.
PHONE_NUMBERS = {"+15555550123", "+15555550199"}


@dataclass
class LambdaContext:
    function_name: str = "StatusCallbackHandler-ValidatorFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:validator"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


@dataclass
class Ingest:
    """The ingest stack's AWS side in moto, observed through a raw subscription to its topic."""

    dependencies: validator_handler.Dependencies
    sqs: Any
    observer_url: str
    s3: Any

    def kept_message_ids(self) -> list[str]:
        """SQS message ids the validator kept in the rejected store since the last call (emptied)."""
        keys = [item["Key"] for item in self.s3.list_objects_v2(Bucket=REJECTED_BUCKET).get("Contents", [])]
        ids = []
        for key in keys:
            body = self.s3.get_object(Bucket=REJECTED_BUCKET, Key=key)["Body"].read()
            ids += [request.message_id for request in decode_requests(body)]
            self.s3.delete_object(Bucket=REJECTED_BUCKET, Key=key)
        return ids

    def published(self) -> list[str]:
        """Event ids the topic delivered since the last call."""
        event_ids: list[str] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.observer_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return event_ids
            event_ids += [record_from_body(message["Body"]).event_id for message in messages]
            self.sqs.delete_message_batch(
                QueueUrl=self.observer_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


@pytest.fixture(scope="module")
def ingest() -> Iterator[Ingest]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        topic = sns.create_topic(Name="records")["TopicArn"]
        observer = sqs.create_queue(QueueName="observer")["QueueUrl"]
        observer_arn = sqs.get_queue_attributes(QueueUrl=observer, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=observer_arn, Attributes={"RawMessageDelivery": "true"}
        )
        secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps({"AUTH_TOKEN": TOKEN}))
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=REJECTED_BUCKET)
        dependencies = validator_handler.Dependencies(
            settings=validator_handler.Settings(
                topic_arn=topic, auth_token_secret_name=SECRET_NAME, rejected_bucket=REJECTED_BUCKET
            ),
            sns=sns,
            s3=s3,
            tokens=AuthTokenSource(SECRET_NAME, SecretsProvider(boto3_client=secrets)),
        )
        yield Ingest(dependencies, sqs, observer, s3)


@pytest.fixture(scope="module")
def logs(ingest: Ingest) -> Iterator[LogCapture]:
    with captured_logs() as capture:
        yield capture


# --- what lands in a batch ----------------------------------------------------------------------------


def genuine(sid_number: int, route: str = "/twilio") -> tuple[str, dict[str, dict[str, str]], str]:
    """A callback Twilio signed; its body, attributes and the event id it must be published under."""
    sid = f"SM{sid_number:032x}"
    params = message_status_params("delivered", MessageSid=sid, SmsSid=sid)
    body = urlencode(list(params.items()))
    signature = sign(f"https://{DOMAIN}{route}", params, TOKEN)
    event_id = build_record(params, {}, route, 0).event_id
    return body, forwarded(body, signature, DOMAIN, route), event_id


def _repeated_keys(params: dict[str, str]) -> str:
    pairs = list(params.items())
    return urlencode([*pairs, pairs[0]])


hostile_bodies = st.one_of(
    text,
    st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", errors="replace")),
    st.dictionaries(param_names, text, max_size=6).map(json.dumps),
    st.dictionaries(param_names, text, min_size=1, max_size=6).map(_repeated_keys),
    st.integers(min_value=1, max_value=3).map(lambda n: "Body=" + "x" * (n * 100_000)),
    st.just(""),
    st.builds(
        lambda extra: urlencode(list(message_status_params(**extra).items())),
        st.dictionaries(param_names, text, max_size=2),
    ),
)


@st.composite
def hostile_messages(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """What an attacker can make API Gateway queue: any body, any signature, any declared query values."""
    body = draw(hostile_bodies)
    shape = draw(st.sampled_from(["forwarded", "unsigned", "no-route-data", "junk-attributes"]))
    if shape == "forwarded":
        query = tuple(zip(["id", "category"], draw(st.lists(text, min_size=2, max_size=2)), strict=True))
        route = draw(st.sampled_from(["/twilio", "/twilio-params"]))
        return body, forwarded(
            body, draw(signatures), draw(domains), route, query if route != "/twilio" else ()
        )
    if shape == "unsigned":
        return body, forwarded(body, None, draw(domains), "/twilio")
    if shape == "no-route-data":
        return body, {}
    junk = draw(
        st.dictionaries(
            text, st.fixed_dictionaries({"stringValue": text, "dataType": st.just("String")}), max_size=4
        )
    )
    return body, junk


def metric_totals(output: str) -> dict[str, float]:
    """Sum of every EMF metric printed to stdout."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                totals[metric["Name"]] = totals.get(metric["Name"], 0.0) + sum(document[metric["Name"]])
    return totals


_SIDS = iter(range(1, 10**9))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(hostile_messages(), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=2),
    st.randoms(use_true_random=False),
)
def test_hostile_messages_are_rejected_and_counted_without_blocking_the_genuine_ones_beside_them(
    ingest: Ingest,
    logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
    hostile: list[tuple[str, dict[str, Any]]],
    good_count: int,
    shuffle: random.Random,
) -> None:
    good = [genuine(next(_SIDS), route="/twilio") for _ in range(good_count)]
    batch: list[tuple[str, str, dict[str, Any]]] = [
        ("good", body, attributes) for body, attributes, _ in good
    ]
    batch += [("hostile", body, attributes) for body, attributes in hostile]
    shuffle.shuffle(batch)
    event = lambda_event(
        lambda_sqs_record(
            ForwardedMessage(
                body,
                {
                    name: {"DataType": "String", "StringValue": value.get("stringValue", "")}
                    for name, value in attributes.items()
                },
            ),
            f"message-{index}",
            SENT_AT,
        )
        for index, (_, body, attributes) in enumerate(batch)
    )
    capsys.readouterr()
    logs.clear()
    original = validator_handler.default_dependencies
    validator_handler.default_dependencies = lambda: ingest.dependencies
    try:
        response = validator_handler.handler(event, LambdaContext())
    finally:
        validator_handler.default_dependencies = original

    # Then nothing is retried: hostile messages are final rejections, genuine ones are published
    assert response == {"batchItemFailures": []}
    assert sorted(ingest.published()) == sorted(event_id for _, _, event_id in good)
    # and every hostile message is counted as a rejection
    metrics = metric_totals(capsys.readouterr().out)
    assert metrics["CallbacksRejected"] == len(hostile)
    assert metrics["CallbacksPublished"] == len(good)
    # and kept for replay, each once, and logged in one line for the batch (counts by reason),
    # with neither the token nor a phone number in any line
    kept = ingest.kept_message_ids()
    assert sorted(kept) == sorted(f"message-{i}" for i, (kind, _, _) in enumerate(batch) if kind == "hostile")
    [summary] = logs.json_lines("callbacks rejected and kept for replay")
    assert sum(summary["by_reason"].values()) == len(hostile)
    assert leaks(logs.snapshot(), [TOKEN], PHONE_NUMBERS) == []
