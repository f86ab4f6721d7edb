"""The archiver Lambda against moto S3: objects per day, duplicates, partial failures, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import archiver_handler
import pytest
from archiver_handler import Dependencies, Settings, handle
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import EndpointConnectionError

from status_callbacks.domain.archive import partition_of
from tests.archive.builders import (
    BUCKET,
    FROM_NUMBER,
    TO_NUMBER,
    epoch_ms,
    failed_ids,
    load_event,
    message_record,
    sqs_event,
)

SM1 = "SM" + "a1" * 16
SM2 = "SM" + "b2" * 16

Archived = Callable[[], dict[str, list[dict[str, Any]]]]


def _two_day_batch() -> list[str]:
    return [
        message_record(SM1, "sent", epoch_ms("2026-01-31T23:59:58.000Z"), category="reminder").to_json(),
        message_record(SM1, "delivered", epoch_ms("2026-01-31T23:59:59.999Z"), category="reminder").to_json(),
        message_record(SM2, "sent", epoch_ms("2026-02-01T00:00:00.000Z")).to_json(),
        message_record(SM2, "failed", epoch_ms("2026-02-01T00:00:02.000Z"), error_code="30008").to_json(),
    ]


def test_a_batch_spanning_two_days_writes_two_gzip_ndjson_objects(
    deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given one batch with callbacks either side of midnight UTC
    bodies = _two_day_batch()

    # When the archiver handles it
    response = handle(sqs_event(bodies), lambda_context, deps)

    # Then nothing is retried and there is one object per day holding exactly that day's records
    assert response == {"batchItemFailures": []}
    objects = archived()
    assert sorted(key.split("/")[1] for key in objects) == ["dt=2026-01-31", "dt=2026-02-01"]
    by_day = {key.split("/")[1]: records for key, records in objects.items()}
    assert by_day["dt=2026-01-31"] == [json.loads(bodies[0]), json.loads(bodies[1])]
    assert by_day["dt=2026-02-01"] == [json.loads(bodies[2]), json.loads(bodies[3])]


def test_objects_are_stored_as_gzip_under_the_archive_prefix(
    deps: Dependencies, lambda_context: LambdaContext
):
    handle(sqs_event(_two_day_batch()), lambda_context, deps)

    for item in deps.s3.list_objects_v2(Bucket=BUCKET)["Contents"]:
        head = deps.s3.head_object(Bucket=BUCKET, Key=item["Key"])
        body = deps.s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        assert item["Key"].startswith("callbacks/dt=") and item["Key"].endswith(".json.gz")
        assert head["ContentType"] == "application/gzip"
        assert body[:2] == b"\x1f\x8b"


def test_a_redelivered_batch_lands_on_the_same_keys_and_adds_no_object(
    deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given a versioned archive that already holds a batch
    deps.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    bodies = _two_day_batch()
    handle(sqs_event(bodies, id_prefix="first"), lambda_context, deps)
    before = archived()

    # When SQS delivers the same records again (new message ids, e.g. after a visibility timeout)
    response = handle(sqs_event(bodies, id_prefix="again"), lambda_context, deps)

    # Then it succeeds, the keys and contents are unchanged and no object or version was added
    assert response == {"batchItemFailures": []}
    assert archived() == before
    versions = deps.s3.list_object_versions(Bucket=BUCKET)["Versions"]
    assert len(versions) == len(before) == 2


def test_a_duplicate_record_within_a_batch_is_archived_once(
    deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given a batch where one callback arrives on two messages
    record = message_record(SM1, "delivered", epoch_ms("2026-02-01T12:00:00Z")).to_json()
    other = message_record(SM2, "sent", epoch_ms("2026-02-01T12:00:01Z")).to_json()

    # When handled
    response = handle(sqs_event([record, other, record]), lambda_context, deps)

    # Then both messages succeed and the object holds the callback once
    assert response == {"batchItemFailures": []}
    (records,) = archived().values()
    assert [r["event_id"] for r in records] == [json.loads(record)["event_id"], json.loads(other)["event_id"]]


def test_out_of_order_arrival_lands_in_the_day_received_and_in_received_order(
    deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given a late batch: yesterday's callbacks delivered today, newest first
    bodies = [
        message_record(SM1, "read", epoch_ms("2026-01-15T08:00:09Z")).to_json(),
        message_record(SM1, "delivered", epoch_ms("2026-01-15T08:00:02Z")).to_json(),
        message_record(SM1, "sent", epoch_ms("2026-01-15T08:00:00Z")).to_json(),
    ]

    # When handled
    handle(sqs_event(bodies), lambda_context, deps)

    # Then they sit in their own day's partition, oldest first
    ((key, records),) = archived().items()
    assert key.startswith("callbacks/dt=2026-01-15/")
    assert [r["status"] for r in records] == ["sent", "delivered", "read"]


def test_a_failed_write_fails_exactly_that_days_messages(
    deps: Dependencies,
    lambda_context: LambdaContext,
    archived: Archived,
    fail_puts_for: Callable[[str], None],
):
    # Given S3 refusing writes into the 1 February partition
    fail_puts_for("dt%3D2026-02-01")
    bodies = _two_day_batch()
    bodies.append(bodies[2])  # a duplicate of a 1 February record shares its object's fate
    event = sqs_event(bodies)

    # When the two-day batch is handled
    response = handle(event, lambda_context, deps)

    # Then only the 1 February messages are handed back for retry; 31 January is archived
    assert failed_ids(response) == {"msg-2", "msg-3", "msg-4"}
    assert [key.split("/")[1] for key in archived()] == ["dt=2026-01-31"]


def test_a_retried_day_completes_the_archive_without_duplicating_the_other_day(
    deps: Dependencies,
    lambda_context: LambdaContext,
    archived: Archived,
    fail_puts_for: Callable[[str], None],
):
    # Given a batch whose 1 February write failed
    bodies = _two_day_batch()
    fail_puts_for("dt%3D2026-02-01")
    response = handle(sqs_event(bodies), lambda_context, deps)
    retried = [bodies[int(message_id.split("-")[1])] for message_id in sorted(failed_ids(response))]

    # When S3 recovers and SQS redelivers only the failed messages
    deps.s3.meta.events.unregister("before-call.s3.PutObject", unique_id="refuse-dt%3D2026-02-01")
    second = handle(sqs_event(retried, id_prefix="retry"), lambda_context, deps)

    # Then every record is archived exactly once across both days
    assert second == {"batchItemFailures": []}
    archived_ids = [r["event_id"] for records in archived().values() for r in records]
    assert sorted(archived_ids) == sorted(json.loads(body)["event_id"] for body in bodies)


def test_a_connection_error_fails_the_group_like_an_s3_error(
    deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given the network to S3 failing for every write
    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    deps.s3.meta.events.register("before-call.s3.PutObject", unreachable)

    # When a batch is handled
    response = handle(sqs_event(_two_day_batch()), lambda_context, deps)

    # Then every message is reported back (none is lost) and nothing was written
    assert failed_ids(response) == {"msg-0", "msg-1", "msg-2", "msg-3"}
    assert archived() == {}


@pytest.mark.parametrize(
    "body",
    [
        "MessageSid=SMxx&MessageStatus=sent",
        "[1, 2, 3]",
        json.dumps({"event_id": "abc"}),
        json.dumps({"Type": "Notification", "Message": "not json"}),
        "",
    ],
    ids=["form-body", "json-array", "missing-received-at", "broken-envelope", "empty"],
)
def test_an_undeliverable_message_fails_alone(
    body: str, deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given a batch with a message that holds no callback record next to a good one
    good = message_record(SM1, "sent", epoch_ms("2026-02-01T12:00:00Z")).to_json()

    # When handled
    response = handle(sqs_event([good, body]), lambda_context, deps)

    # Then only the bad message is reported (it will reach the DLQ) and the good one is archived
    assert failed_ids(response) == {"msg-1"}
    assert [r["event_id"] for records in archived().values() for r in records] == [
        json.loads(good)["event_id"]
    ]


def test_a_record_with_an_impossible_time_is_reported_not_crashed_on(
    deps: Dependencies, lambda_context: LambdaContext
):
    good = message_record(SM1, "sent", epoch_ms("2026-02-01T12:00:00Z")).to_dict()
    broken = {**good, "event_id": "f" * 32, "received_at": -1}

    response = handle(sqs_event([json.dumps(good), json.dumps(broken)]), lambda_context, deps)

    assert failed_ids(response) == {"msg-1"}


def test_a_batch_of_only_bad_messages_reports_every_one(deps: Dependencies, lambda_context: LambdaContext):
    # Given nothing in the batch is a record
    # When handled
    response = handle(sqs_event(["nope", "{}"]), lambda_context, deps)

    # Then all are reported back as a partial response rather than a crashed invocation
    assert failed_ids(response) == {"msg-0", "msg-1"}


def test_the_sample_two_day_event_archives_three_records_in_two_objects(
    deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    event = load_event("sqs-batch-two-days.json")

    response = handle(event, lambda_context, deps)

    assert response == {"batchItemFailures": []}
    objects = archived()
    assert sorted(key.split("/")[1] for key in objects) == ["dt=2026-01-31", "dt=2026-02-01"]
    assert sum(len(records) for records in objects.values()) == 3


def test_the_sample_event_with_undeliverable_messages_reports_them(
    deps: Dependencies, lambda_context: LambdaContext
):
    event = load_event("sqs-batch-with-undeliverable.json")

    response = handle(event, lambda_context, deps)

    assert failed_ids(response) == {record["messageId"] for record in event["Records"][1:]}


def test_an_sns_envelope_is_unwrapped(deps: Dependencies, lambda_context: LambdaContext, archived: Archived):
    # Given a message as SNS delivers it without raw delivery (e.g. replayed from the subscription's DLQ)
    event = load_event("sqs-batch-sns-envelope.json")
    inner = json.loads(json.loads(event["Records"][0]["body"])["Message"])

    # When handled
    response = handle(event, lambda_context, deps)

    # Then the record inside is archived as the contract, not the envelope
    assert response == {"batchItemFailures": []}
    ((key, records),) = archived().items()
    assert records == [inner]
    assert key.startswith(f"callbacks/dt={partition_of(inner['received_at'])}/")


def test_the_lambda_entry_point_emits_metrics_and_keeps_phone_numbers_out_of_logs(
    deps: Dependencies,
    lambda_context: LambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    # Given the decorated handler wired to the moto bucket
    monkeypatch.setattr(archiver_handler, "default_dependencies", lambda: deps)
    bodies = [*_two_day_batch(), "not a record"]

    # When Lambda invokes it
    response = archiver_handler.handler(sqs_event(bodies), lambda_context)

    # Then the partial response is returned, metrics are published as EMF
    assert failed_ids(response) == {"msg-4"}
    output = capsys.readouterr().out
    emf = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    assert emf, "no metrics were flushed"
    (blob,) = emf
    assert blob["ArchivedRecords"] == [4.0]
    assert blob["ArchiveObjectsWritten"] == [2.0]
    assert blob["UndeliverableMessages"] == [1.0]
    assert blob["ArchiveWriteFailures"] == [0.0]
    # And no phone number reaches the logs, even at DEBUG
    assert TO_NUMBER not in output and FROM_NUMBER not in output


def test_settings_come_from_the_environment():
    assert Settings.from_env({"ARCHIVE_BUCKET": "b"}) == Settings(bucket="b", prefix="callbacks/")
    assert Settings.from_env({"ARCHIVE_BUCKET": "b", "ARCHIVE_PREFIX": "x/"}).prefix == "x/"


@pytest.mark.parametrize(
    "environ",
    [{}, {"ARCHIVE_BUCKET": " "}, {"ARCHIVE_BUCKET": "b", "ARCHIVE_PREFIX": "callbacks"}],
    ids=["no-bucket", "blank-bucket", "prefix-without-slash"],
)
def test_settings_refuse_a_broken_environment(environ: dict[str, str]):
    with pytest.raises(ValueError, match="ARCHIVE_"):
        Settings.from_env(environ)


def test_metrics_count_only_what_reached_s3_when_a_write_fails(
    deps: Dependencies,
    lambda_context: LambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fail_puts_for: Callable[[str], None],
):
    # Given S3 refusing the 1 February partition
    monkeypatch.setattr(archiver_handler, "default_dependencies", lambda: deps)
    fail_puts_for("dt%3D2026-02-01")

    # When the two-day batch is handled by the Lambda entry point
    archiver_handler.handler(sqs_event(_two_day_batch()), lambda_context)

    # Then the metrics say two records were archived and two messages await a retry
    (blob,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert blob["ArchivedRecords"] == [2.0]
    assert blob["ArchiveObjectsWritten"] == [1.0]
    assert blob["ArchiveWriteFailures"] == [2.0]
