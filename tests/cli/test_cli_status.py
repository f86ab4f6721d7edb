"""``status``: locations from the outputs, live counts, a clear failure when stacks are missing."""

from __future__ import annotations

import json
import time
from datetime import datetime

from moto.server import ThreadedMotoServer

from status_callbacks.domain import archive
from status_callbacks.domain.record import build_record
from status_callbacks.domain.validation import RejectionReason
from tests.cli.builders import API_BASE_URL, keep_rejected, rejected_by_validator
from tests.support.signing import form_body, message_status_params, signed_callback, unsigned_callback
from twilio_callbacks_cli.main import main

REQUIRED_KEYS = {
    "api_url",
    "aws_endpoint_url",
    "region",
    "topic_arn",
    "bucket",
    "table",
    "event_bus",
    "alerts_topic_arn",
    "dead_letter_queue_urls",
    "queue_depths",
    "dlq_depths",
    "objects_archived",
}


def run(capsys, *arguments):
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def archive_records(pipeline, days):
    """Write one archive object per day, as the archiver would."""
    for index, day_ms in enumerate(days):
        record = build_record(
            {"MessageSid": f"SM{index:032x}", "MessageStatus": "sent"}, {}, "/twilio", day_ms
        )
        plan = archive.plan_archive([(f"m{index}", record)])
        for archive_object in plan.objects:
            pipeline.s3.put_object(
                Bucket=pipeline.output("ArchiveBucketName"),
                Key=archive_object.key,
                Body=archive_object.body(),
            )


def test_status_json_names_every_resource_and_counts(pipeline, capsys):
    # Given messages waiting on the ingest queue, one in flight, two in the status DLQ, and 3 archived objects
    sqs = pipeline.sqs
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=pipeline.output("IngestQueueUrl"), MessageBody=body)
    sqs.receive_message(
        QueueUrl=pipeline.output("IngestQueueUrl"), MaxNumberOfMessages=1, VisibilityTimeout=300
    )
    for body in ("x", "y"):
        sqs.send_message(QueueUrl=pipeline.output("StatusDeadLetterQueueUrl"), MessageBody=body)
    archive_records(pipeline, [1_795_000_000_000, 1_795_100_000_000, 1_795_200_000_000])
    # (and an object outside the archive prefix, which is not an archived batch)
    pipeline.s3.put_object(Bucket=pipeline.output("ArchiveBucketName"), Key="athena/tmp.csv", Body=b"x")
    # When status is asked for as JSON
    code, out, _ = run(capsys, "status", "--json")
    status = json.loads(out)
    # Then every location comes from the outputs
    assert code == 0
    assert set(status) >= REQUIRED_KEYS
    assert status["api_url"] == pipeline.output("ApiBaseUrl")
    assert status["aws_endpoint_url"] is None
    assert status["region"] == "us-east-1"
    assert status["topic_arn"] == pipeline.output("TopicArn")
    assert status["bucket"] == pipeline.output("ArchiveBucketName")
    assert status["table"] == pipeline.output("StatusTableName")
    assert status["event_bus"] == pipeline.output("ErrorEventBusName")
    assert status["alerts_topic_arn"] == pipeline.output("AlertsTopicArn")
    # And every dead-letter queue any stack outputs is listed, found by the naming convention
    declared_dlqs = {
        value
        for stack in pipeline.stacks.values()
        for key, value in stack.outputs.items()
        if key.endswith("DeadLetterQueueUrl")
    }
    assert set(status["dead_letter_queue_urls"]) == declared_dlqs
    assert {"IngestDeadLetter", "ArchiveDeadLetter", "StatusDeadLetter"} <= set(status["dlq_depths"])
    assert {"Ingest", "Archive", "Status"} <= set(status["queue_depths"])
    # And the counts are live
    assert status["queue_depths"]["Ingest"]["messages"] == 2
    assert status["queue_depths"]["Ingest"]["in_flight"] == 1
    assert status["dlq_depths"]["StatusDeadLetter"]["messages"] == 2
    assert status["dlq_depths"]["IngestDeadLetter"]["messages"] == 0
    assert status["objects_archived"] == 3
    # And no secret value is shown, only the secret's name
    assert "0123456789abcdef0123456789abcdef" not in out


def test_status_human_output_is_an_aligned_table(pipeline, capsys):
    code, out, _ = run(capsys, "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["stack", "role", "status"]
    assert any(line.startswith("StatusCallbackHandler ") and "CREATE_COMPLETE" in line for line in lines)
    api = next(line for line in lines if line.startswith("api url "))
    table_row = next(line for line in lines if line.startswith("number flags table "))
    # Values start in one column
    assert api.index("https://") == table_row.index(pipeline.output("NumberFlagsTableName"))
    header = next(line for line in lines if line.startswith("queue "))
    assert header.split() == ["queue", "kind", "messages", "in", "flight", "sqs", "name"]


def test_status_with_no_stacks_fails_with_a_clear_message(aws, capsys):
    # Given nothing is deployed (the local runner not started, or no sam deploy)
    # When status is asked for
    code, out, err = run(capsys, "status")
    # Then it exits 3 and says what to do
    assert code == 3
    assert out == ""
    assert "StatusCallbackHandler" in err and "CheckForStatusCallbackErrors" in err
    assert "twilio-callbacks local" in err and "sam deploy" in err


def test_status_with_some_stacks_missing_shows_what_exists_and_fails(make_pipeline, capsys):
    # Given only the ingest and Dynamo stacks are deployed
    make_pipeline(("ingest", "dynamo"))
    # When status is asked for
    code, out, err = run(capsys, "status", "--json")
    # Then it reports what is there, names what is missing, and exits non-zero
    status = json.loads(out)
    assert code == 3
    assert set(status["stacks"]) == {"ingest", "dynamo"}
    assert set(status["missing_stacks"]) == {"SaveStatusCallbackToS3", "CheckForStatusCallbackErrors"}
    assert status["bucket"] is None and status["objects_archived"] is None
    assert status["table"] is not None
    assert "not deployed: SaveStatusCallbackToS3, CheckForStatusCallbackErrors" in err


def test_status_of_a_second_environment_by_prefix(make_pipeline, capsys, monkeypatch):
    # Given two environments: the default one and one deployed with a "staging-" prefix
    default = make_pipeline()
    staging = make_pipeline(prefix="staging-")
    # When status is asked for with the prefix (option or environment variable)
    code, out, _ = run(capsys, "--stack-prefix", "staging-", "status", "--json")
    monkeypatch.setenv("TWILIO_CALLBACKS_STACK_PREFIX", "staging-")
    code_env, out_env, _ = run(capsys, "status", "--json")
    # Then the staging resources are reported, not the default ones
    assert code == code_env == 0
    for document in (json.loads(out), json.loads(out_env)):
        assert document["table"] == staging.output("StatusTableName") != default.output("StatusTableName")
        assert document["stacks"]["ingest"]["name"] == "staging-StatusCallbackHandler"


def test_one_stack_name_can_be_overridden(make_pipeline, capsys):
    make_pipeline(("ingest", "s3", "errors"))
    make_pipeline(("dynamo",), prefix="other-")
    code, out, _ = run(capsys, "status", "--dynamo-stack", "other-SaveStatusCallbackToDynamo", "--json")
    assert code == 0
    assert json.loads(out)["stacks"]["dynamo"]["name"] == "other-SaveStatusCallbackToDynamo"


def test_status_through_an_emulator_endpoint(pipeline, capsys, monkeypatch):
    # Given the stacks are served by moto's server, as the local runner serves them
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        # And no credentials are configured (an emulator needs none)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        # When status is asked for, with the endpoint from the environment or from --endpoint-url
        code, out, err = run(capsys, "status", "--json")
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        code_option, out_option, _ = run(capsys, "--endpoint-url", endpoint, "status", "--json")
    finally:
        server.stop()
    # Then it reads the same stacks through the endpoint and reports the endpoint
    assert code == code_option == 0, err
    for document in (json.loads(out), json.loads(out_option)):
        assert document["aws_endpoint_url"] == endpoint
        assert document["table"] == pipeline.output("StatusTableName")
        assert document["queue_depths"]["Ingest"]["messages"] == 0


def test_unreachable_endpoint_is_reported(capsys, monkeypatch):
    # Given the local runner is not running (nothing listens on the endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, _, err = run(capsys, "status")
    assert code == 3
    assert "cannot reach the AWS endpoint" in err and "twilio-callbacks local" in err


def test_status_counts_the_last_days_rejections_with_the_largest_reasons_remedy(pipeline, capsys):
    # Given forgeries and a wrong-token spell today, unsigned requests, and an older rejection
    now_ms = int(time.time() * 1000)
    url = f"{API_BASE_URL}/twilio"
    signed = [signed_callback(url, message_status_params(), "not-the-token") for _ in range(3)]
    unsigned = unsigned_callback(url, form_body(message_status_params()))
    kept = [rejected_by_validator(request, f"m-{n}", now_ms - 60_000) for n, request in enumerate(signed)]
    keep_rejected(pipeline, [*kept, rejected_by_validator(unsigned, "m-unsigned", now_ms - 60_000)])
    keep_rejected(pipeline, [rejected_by_validator(signed[0], "m-old", now_ms - 30 * 3_600_000)])
    # When status is asked for
    code, out, _ = run(capsys, "status", "--json")
    _, text, _ = run(capsys, "status")
    # Then the last 24 hours are counted by reason
    assert code == 0
    rejected = json.loads(out)["rejected"]
    assert rejected["window"] == "24h"
    assert rejected["total"] == 4
    assert rejected["by_reason"] == {"InvalidSignature": 3, "MissingSignature": 1}
    since = datetime.fromisoformat(rejected["since"].replace("Z", "+00:00")).timestamp() * 1000
    assert abs(since - (now_ms - 24 * 3_600_000)) < 60_000
    # And the text names the remedy of the largest reason and the replay command
    assert "requests rejected in the last 24 h: 4 (InvalidSignature 3, MissingSignature 1)" in text
    assert f"InvalidSignature: {RejectionReason.INVALID_SIGNATURE.remedy}" in text
    assert "twilio-callbacks rejected replay --since 24h" in text


def test_status_without_rejections_says_0(pipeline, capsys):
    code, out, _ = run(capsys, "status")

    assert code == 0
    assert "requests rejected in the last 24 h: 0" in out
