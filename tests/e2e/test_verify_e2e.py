"""``twilio-callbacks verify`` against the running local pipeline: a pass, a wrong token, a failing archiver.

The pipeline is the runner's default configuration (conftest), so the alerts
are read from whatever it offers: its inbox queue, or a temporary queue
``verify`` subscribes for the run and deletes afterwards.
"""

from __future__ import annotations

import json

import pytest

from pipeline_harness.faults import fail_with_5xx, injected
from tests.e2e.conftest import E2E_TOKEN
from tests.e2e.verify_run import FAILING_TIMEOUT, PASSING_TIMEOUT, stages, verify
from twilio_callbacks_cli.discovery import ARCHIVE_BUCKET_NAME
from twilio_callbacks_cli.verify_checks import TEMPORARY_INBOX_PREFIX

pytestmark = pytest.mark.e2e

STAGES = [
    "token",
    "accepted by API Gateway",
    "queued",
    "validated",
    "archived in S3",
    "stored in DynamoDB",
    "routed to the error bus",
    "alerted",
    "number flagged",
]


def test_verify_passes_every_stage_of_the_running_pipeline(pipeline, capsys):
    # Given the local pipeline, its secret holding the token
    # When verify runs with the token it reads from the secret
    code, report = verify(pipeline, capsys, "--timeout", PASSING_TIMEOUT)

    # Then every stage passes, in order, and the exit code says so
    assert [stage["stage"] for stage in report["stages"]] == STAGES
    assert {name: stage["result"] for name, stage in stages(report).items()} == dict.fromkeys(STAGES, "pass")
    assert code == 0
    assert report["ok"] is True
    # And every probe was sent and queued, each with its own SQS message id
    assert len(report["probes"]) == 10
    assert len({probe["message_id"] for probe in report["probes"]}) == 10
    # And the documented-nowhere behaviours were settled by this run
    findings = {finding["topic"]: finding for finding in report["findings"]}
    assert findings["missing query parameter"]["detail"].startswith("arrives empty")
    assert "MissingSignature" in findings["missing X-Twilio-Signature"]["detail"]
    # And no temporary alerts queue is left behind
    queues = pipeline.clients.sqs.list_queues(QueueNamePrefix=TEMPORARY_INBOX_PREFIX).get("QueueUrls", [])
    assert queues == []


def test_verify_with_a_token_the_secret_does_not_hold_fails_token_and_validation(pipeline, capsys):
    # Given the pipeline's secret holds token A
    # When verify signs with token B
    code, report = verify(pipeline, capsys, "--auth-token", "not-" + E2E_TOKEN, "--timeout", PASSING_TIMEOUT)

    # Then it exits non-zero, the token stage names the secret and the validator rejected the probes
    assert code == 1
    by_name = stages(report)
    assert by_name["token"]["result"] == "FAIL"
    assert by_name["token"]["cause"] == "the secret's AUTH_TOKEN is not the token Twilio signs with"
    assert "TwilioStatusCallbackHandler" in by_name["token"]["detail"]
    assert by_name["validated"]["result"] == "FAIL"
    assert "InvalidSignature" in by_name["validated"]["detail"]
    assert "secret" in by_name["validated"]["cause"]
    assert "replay" in by_name["validated"]["look_at"]
    # And API Gateway still accepted and queued every probe: the failure is located at validation
    assert by_name["accepted by API Gateway"]["result"] == "pass"
    assert by_name["queued"]["result"] == "pass"
    assert by_name["archived in S3"]["cause"] == "see validated"
    # And neither token appears anywhere in the report
    assert E2E_TOKEN not in json.dumps(report)


def test_verify_names_the_archive_stage_and_the_archiver_when_archive_writes_fail(pipeline, capsys):
    # Given the archive bucket answers every PutObject with S3's 500
    bucket = pipeline.output(ARCHIVE_BUCKET_NAME)
    failing = fail_with_5xx("s3", "PutObject", match=lambda request: request.path.startswith(f"/{bucket}/"))

    # When verify runs
    with injected(pipeline.traffic, failing):
        code, report = verify(pipeline, capsys, "--timeout", FAILING_TIMEOUT)

    # Then the fault really happened, and verify fails naming the archive stage and the archiver
    assert failing.injected > 0
    assert code == 1
    by_name = stages(report)
    archived = by_name["archived in S3"]
    assert archived["result"] == "FAIL"
    assert "the archiver is failing" in archived["cause"]
    assert "ArchiveQueue" in archived["cause"]
    assert "ArchiveDeadLetterQueue" in archived["look_at"]
    assert "redrive" in archived["look_at"]
    # And every other stage still passes: one broken consumer never affects another
    others = {name: stage["result"] for name, stage in by_name.items() if name != "archived in S3"}
    assert others == dict.fromkeys(others, "pass")
