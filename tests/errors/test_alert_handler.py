"""The alerter: one error event in, one plain-text alert with a subject on the alerts topic."""

from __future__ import annotations

import json
from typing import Any

import alert_handler
import boto3
import pytest
from moto import mock_aws

from status_callbacks.domain.alerts import MAX_SUBJECT_CHARACTERS, alert_message
from status_callbacks.domain.routes import error_detail
from tests.errors.conftest import REGION, error_callback


def error_event(detail: dict[str, Any]) -> dict[str, Any]:
    """The event EventBridge hands a rule target."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "errormessage",
        "source": "custom.twilioStatusCallbackErrors",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


@pytest.fixture
def alerts_topic() -> Any:
    """An alerts topic with a queue subscribed the way the AlertsInbox is (SNS envelope kept)."""
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic_arn = sns.create_topic(Name="alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        yield sns, sqs, topic_arn, queue_url


def test_an_error_event_becomes_one_alert_with_a_subject_and_plain_text(alerts_topic: Any) -> None:
    # Given an error event as the router puts it on the bus
    sns, sqs, topic_arn, queue_url = alerts_topic
    record = error_callback("30005", sid="SM" + "5" * 32, to="+14155550160")
    deps = alert_handler.Dependencies(alert_handler.Settings(topic_arn=topic_arn), sns)

    # When the alerter handles it
    alert_handler.handle(error_event(error_detail(record)), deps)

    # Then subscribers receive the subject and the text, with the next step and no phone number
    [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"] == f"[info] Twilio error 30005 on message SM{'5' * 32}"
    assert envelope["Message"].startswith(
        f"Twilio error 30005 on message SM{'5' * 32} (status undelivered)\n"
    )
    assert "The recipient's number is flagged" in envelope["Message"]
    assert f"History: twilio-callbacks query message SM{'5' * 32}" in envelope["Message"]
    assert "+14155550160" not in envelope["Message"]


def test_a_failed_publish_raises_so_lambda_retries_then_dead_letters(alerts_topic: Any) -> None:
    sns, _, topic_arn, _ = alerts_topic
    deps = alert_handler.Dependencies(alert_handler.Settings(topic_arn=topic_arn + "-gone"), sns)

    with pytest.raises(sns.exceptions.NotFoundException):
        alert_handler.handle(error_event(error_detail(error_callback("30007"))), deps)


def test_the_subject_fits_sns_limits_whatever_the_event_holds() -> None:
    # Given an event whose values are long and carry line breaks (a code not in the routing table)
    record = error_callback("9" * 200, sid="SM" + "\n" * 3 + "x" * 150)
    alert = alert_message(error_detail(record))

    # Then the subject is one line of fewer than 100 characters, and the text has no control characters
    assert len(alert.subject) <= MAX_SUBJECT_CHARACTERS
    assert "\n" not in alert.subject and "\r" not in alert.subject
    assert all(line.isprintable() for line in alert.text.splitlines())


def test_the_handler_reads_its_topic_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:alerts")
    assert alert_handler.Settings.from_env({"ALERTS_TOPIC_ARN": "arn:x"}).topic_arn == "arn:x"


def test_a_probe_from_verify_is_labelled_so_on_call_can_ignore_it() -> None:
    # Given an error callback that `twilio-callbacks verify` sent (its form carries the probe marker)
    record = error_callback("30005", TwilioCallbacksVerify="run42")
    alert = alert_message(error_detail(record))

    # Then subscribers still receive it (verify checks they do), marked as a probe needing no action
    assert alert.subject.startswith("[probe run42] [info] Twilio error 30005")
    assert alert.text.startswith("A probe sent by `twilio-callbacks verify` (run run42): no action needed.")
