"""``verify`` reading alerts from the errors stack's own inbox (on locally by default), leaving them there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aws_emulator import LocalPipeline
from tests.e2e.conftest import E2E_TOKEN
from tests.e2e.verify_run import PASSING_TIMEOUT, stages, verify
from twilio_callbacks_cli.discovery import ALERTS_INBOX_QUEUE_URL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with LocalPipeline(aws_port=0, http_port=0, token=E2E_TOKEN) as running:
        yield running


def test_verify_reads_the_alert_from_the_stack_inbox_and_leaves_it_there(pipeline, capsys):
    # Given the errors stack keeps an alerts inbox
    inbox = pipeline.output(ALERTS_INBOX_QUEUE_URL)
    assert inbox

    # When verify runs
    code, report = verify(pipeline, capsys, "--timeout", PASSING_TIMEOUT)

    # Then it passes, finding the probe's alert in that inbox
    assert code == 0, report["stages"]
    alerted = stages(report)["alerted"]
    assert alerted["result"] == "pass"
    assert "the alerts inbox" in alerted["detail"]
    # And the alert is still there for the people who read the inbox
    error_sid = next(probe["sid"] for probe in report["probes"] if probe["status"] == "undelivered")
    sqs = pipeline.clients.sqs
    attributes = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["ApproximateNumberOfMessages"])
    assert int(attributes["Attributes"]["ApproximateNumberOfMessages"]) >= 1
    bodies = [
        m["Body"] for m in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
    ]
    assert any(error_sid in body for body in bodies)
