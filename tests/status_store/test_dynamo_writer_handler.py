"""The writer Lambda over SQS batches, against a moto table built from the template."""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3
import dynamo_writer_handler as writer
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from status_callbacks.adapters import dynamodb as table_io
from status_callbacks.domain import status_items
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.observability import metrics
from tests.status_store.builders import (
    T0,
    call_record,
    call_sid,
    message_record,
    message_sid,
    sample_event,
    sqs_event,
    sqs_message,
)


@pytest.fixture
def deps(dynamodb, table):
    return writer.Dependencies(writer.Settings(table_name=table), dynamodb)


def _failed_ids(response):
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def _metric_counts():
    """The metric values emitted so far (EMF, as CloudWatch would ingest them)."""
    document = metrics.serialize_metric_set()
    names = [metric["Name"] for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    return {
        name: sum(document[name]) if isinstance(document[name], list) else document[name] for name in names
    }


def _items(dynamodb, table):
    items = [table_io.from_attribute_values(item) for item in dynamodb.scan(TableName=table)["Items"]]
    return {(item["sid"], item["sk"]): item for item in items}


def test_lifecycle_batch_stores_history_and_one_current_write_per_sid(dynamodb, table, deps, put_item_log):
    # Given the sample batch: a message's queued/sent/delivered, another message's sent/undelivered,
    # and a call's initiated/ringing/completed
    event = sample_event("sqs-lifecycle-batch.json")

    # When the writer handles it
    response = writer.handle(event, None, deps)

    # Then nothing failed, every callback has its history item, and each SID its furthest status
    assert response == {"batchItemFailures": []}
    items = _items(dynamodb, table)
    assert len([key for key in items if key[1] != "CURRENT"]) == 8
    assert items[(message_sid(0x11111111111111111111111111111111), "CURRENT")]["status"] == "delivered"
    assert items[("SM" + "2" * 32, "CURRENT")]["status"] == "undelivered"
    assert items[("CA" + "3" * 32, "CURRENT")]["status"] == "completed"
    # And the batch paid one current-view write per SID, not one per callback
    assert sorted(put_item_log.current_writes()) == sorted(
        ["SM" + "1" * 32, "SM" + "2" * 32, "CA" + "3" * 32]
    )
    assert len(put_item_log.event_writes()) == 8


def test_same_sid_several_statuses_in_one_batch(dynamodb, table, deps, put_item_log):
    # Given one batch with four statuses of one message, in arrival disorder
    records = [
        message_record(message_sid(1), status, T0 + offset)
        for status, offset in (("sent", 2), ("queued", 1), ("delivered", 3), ("sending", 4))
    ]

    # When it is handled
    response = writer.handle(sqs_event(*records), None, deps)

    # Then all four history items exist and one conditional write made "delivered" current
    assert _failed_ids(response) == []
    assert [e["status"] for e in table_io.events_of(dynamodb, table, message_sid(1))] == [
        "queued",
        "sending",
        "sent",
        "delivered",
    ]
    assert put_item_log.current_writes() == [message_sid(1)]
    assert table_io.current_of(dynamodb, table, message_sid(1))["status"] == "delivered"


def test_redelivered_batch_creates_no_duplicates(dynamodb, table, deps):
    # Given a batch already stored
    event = sample_event("sqs-lifecycle-batch.json")
    writer.handle(event, None, deps)
    before = _items(dynamodb, table)

    # When SQS delivers the same messages again
    response = writer.handle(event, None, deps)

    # Then the table holds exactly the same items
    assert _failed_ids(response) == []
    assert _items(dynamodb, table) == before


def test_the_same_callback_twice_in_one_batch_is_one_item(dynamodb, table, deps):
    # Given SNS delivered one callback twice (two SQS messages, same record)
    record = message_record(message_sid(1), "delivered")

    # When both are in one batch
    response = writer.handle(sqs_event(record, record), None, deps)

    # Then both succeed and the SID has one history item and one current view
    assert _failed_ids(response) == []
    assert set(_items(dynamodb, table)) == {(message_sid(1), "EVENT#delivered"), (message_sid(1), "CURRENT")}


def test_late_sent_never_replaces_delivered_across_batches(dynamodb, table, deps):
    # Given "delivered" stored
    writer.handle(sqs_event(message_record(message_sid(1), "delivered", T0 + 5_000)), None, deps)

    # When the earlier "sent" arrives in a later batch
    response = writer.handle(sqs_event(message_record(message_sid(1), "sent", T0 + 9_000)), None, deps)

    # Then it is stored in the history, counted as stale (not failed), and current stays delivered
    assert _failed_ids(response) == []
    assert {e["status"] for e in table_io.events_of(dynamodb, table, message_sid(1))} == {
        "sent",
        "delivered",
    }
    assert table_io.current_of(dynamodb, table, message_sid(1))["status"] == "delivered"
    assert _metric_counts()["CurrentStatusStale"] == 1


def test_call_events_order_by_sequence_number_across_batches(dynamodb, table, deps):
    writer.handle(sqs_event(call_record(call_sid(1), "in-progress", 2)), None, deps)

    writer.handle(sqs_event(call_record(call_sid(1), "ringing", 1)), None, deps)
    writer.handle(sqs_event(call_record(call_sid(1), "completed", 3)), None, deps)

    current = table_io.current_of(dynamodb, table, call_sid(1))
    assert (current["status"], current["position"]) == ("completed", 3)


def test_out_of_order_sample_batch(dynamodb, table, deps):
    # Given delivered-before-sent and completed-before-ringing in one batch
    response = writer.handle(sample_event("sqs-out-of-order.json"), None, deps)

    # Then the furthest statuses are current
    assert _failed_ids(response) == []
    assert table_io.current_of(dynamodb, table, "SM" + "1" * 32)["status"] == "delivered"
    assert table_io.current_of(dynamodb, table, "CA" + "3" * 32)["status"] == "completed"


def test_error_callbacks_reach_the_index_and_healthy_ones_do_not(dynamodb, table, deps):
    # Given a batch of healthy and error callbacks
    records = [
        message_record(message_sid(1), "delivered"),
        message_record(message_sid(2), "undelivered", T0 + 1, error_code="30003"),
        call_record(call_sid(3), "completed", 3),
    ]

    # When it is handled
    writer.handle(sqs_event(*records), None, deps)

    # Then only the error is in the sparse index, and findable by code
    indexed = dynamodb.scan(TableName=table, IndexName=status_items.ERROR_INDEX_NAME)["Items"]
    assert [item["sid"]["S"] for item in indexed] == [message_sid(2)]
    found = table_io.errors_by_code(dynamodb, table, "30003", T0, T0 + 1)
    assert [item["sid"] for item in found] == [message_sid(2)]
    assert _metric_counts()["ErrorEventsStored"] == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
    ],
)
def test_a_failed_event_write_reports_exactly_that_message(dynamodb, table, deps, write_faults, code, status):
    # Given DynamoDB rejects the writes of one SID's callback
    records = [message_record(message_sid(n), "delivered") for n in range(1, 5)]
    write_faults.fail(message_sid(3), code=code, status=status)
    event = sqs_event(*records)

    # When the batch is handled
    response = writer.handle(event, None, deps)

    # Then only that message is reported for retry, and every other record is stored
    assert _failed_ids(response) == [event["Records"][2]["messageId"]]
    stored = {sid for sid, _ in _items(dynamodb, table)}
    assert stored == {message_sid(1), message_sid(2), message_sid(4)}
    assert write_faults.injected == 1
    assert _metric_counts()["WriteFailures"] == 1


def test_a_failed_current_write_reports_the_message_that_carries_it(dynamodb, table, deps, write_faults):
    # Given a batch with two statuses of one message, and DynamoDB rejecting its current-view write
    sent = message_record(message_sid(1), "sent", T0)
    delivered = message_record(message_sid(1), "delivered", T0 + 1)
    other = message_record(message_sid(2), "sent", T0)
    write_faults.fail(message_sid(1), "CURRENT", code="InternalServerError", status=500)
    event = sqs_event(sent, delivered, other)

    # When it is handled
    response = writer.handle(event, None, deps)

    # Then the message that carried the collapsed current write (delivered) is retried, not swallowed
    assert _failed_ids(response) == [event["Records"][1]["messageId"]]
    items = _items(dynamodb, table)
    assert {(message_sid(1), "EVENT#sent"), (message_sid(1), "EVENT#delivered")} <= set(items)
    assert (message_sid(1), "CURRENT") not in items
    assert (message_sid(2), "CURRENT") in items

    # And when that message is redelivered after the fault clears, the current view catches up
    write_faults.rules.clear()
    retry = {"Records": [event["Records"][1]]}
    assert _failed_ids(writer.handle(retry, None, deps)) == []
    assert table_io.current_of(dynamodb, table, message_sid(1))["status"] == "delivered"


class _ThrottledBody:
    """The HTTP body of DynamoDB's throttling answer, as botocore reads it."""

    def stream(self, **_):
        yield json.dumps({"__type": "ThrottlingException", "message": "slow down"}).encode()


def test_a_transient_throttle_is_retried_in_process(table):
    # Given the writer's own client configuration, and DynamoDB throttling the first HTTP attempt.
    # (A before-send answer replaces the HTTP response; moto still sees that attempt, which is
    # harmless for an idempotent PutItem and lets the retry logic run for real.)
    client = boto3.client("dynamodb", region_name="us-east-1", config=writer.CLIENT_CONFIG)
    attempts = []

    def throttle_first_attempt(request, **_):
        attempts.append(request)
        if len(attempts) == 1:
            headers = {"Content-Type": "application/x-amz-json-1.0"}
            return AWSResponse(request.url, 400, headers, _ThrottledBody())
        return None

    client.meta.events.register_first("before-send.dynamodb.PutItem", throttle_first_attempt)
    deps = writer.Dependencies(writer.Settings(table_name=table), client)

    # When a batch is handled
    response = writer.handle(sqs_event(message_record(message_sid(1), "sent")), None, deps)

    # Then botocore retried the write and the record is stored without an SQS redelivery
    assert _failed_ids(response) == []
    assert len(attempts) == 3  # throttled event write, its retry, then the current write
    assert table_io.current_of(client, table, message_sid(1))["status"] == "sent"


def test_undeliverable_body_fails_alone_and_others_are_stored(dynamodb, table, deps):
    # Given the sample batch: a record, a non-record body, an unknown-product record, an SNS envelope
    event = sample_event("sqs-undeliverable-unknown-and-envelope.json")

    # When it is handled
    response = writer.handle(event, None, deps)

    # Then only the non-record body is reported (it retries, then dead-letters) and is counted
    assert _failed_ids(response) == [event["Records"][1]["messageId"]]
    assert _metric_counts()["UndeliverableRecords"] == 1
    items = _items(dynamodb, table)
    # And the unknown product is kept under its event id, with no current view
    unknown = CallbackRecord.from_json(event["Records"][2]["body"])
    assert (f"EVENT#{unknown.event_id}", "EVENT#") in {(sid, sk[:6]) for sid, sk in items}
    assert not [key for key in items if key[0].startswith("EVENT#") and key[1] == "CURRENT"]
    # And the record inside the SNS envelope is unwrapped and stored
    assert items[("SM" + "2" * 32, "EVENT#failed")]["error_code"] == "30007"


def test_a_batch_of_only_undeliverable_bodies_fails_the_invocation(deps):
    # Given nothing in the batch is a record
    event = {"Records": [sqs_message("{}"), sqs_message("[1, 2]")]}

    # Then the invocation fails as a whole (Lambda backs off and SQS retries every message)
    with pytest.raises(BatchProcessingError):
        writer.handle(event, None, deps)


def test_settings_come_from_the_environment():
    settings = writer.Settings.from_env({"STATUS_TABLE_NAME": "t", "STATUS_TTL_DAYS": "30"})

    assert settings == writer.Settings(table_name="t", ttl_days=30)
    assert writer.Settings.from_env({"STATUS_TABLE_NAME": "t", "STATUS_TTL_DAYS": "0"}).ttl_days == 0


@dataclass
class LambdaContext:
    function_name: str = "writer"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:writer"
    aws_request_id: str = "request-1"


def test_lambda_entry_point_builds_its_dependencies_from_the_environment(
    monkeypatch, table_properties, capsys
):
    # Given the function's environment as the template sets it, and a table
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        definition = {
            name: table_properties[name]
            for name in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode")
        }
        client.create_table(TableName="status", **definition)
        monkeypatch.setenv("STATUS_TABLE_NAME", "status")
        monkeypatch.setenv("STATUS_TTL_DAYS", "30")
        writer.default_dependencies.cache_clear()
        try:
            # When Lambda invokes the handler
            response = writer.handler(sqs_event(message_record(message_sid(1), "sent")), LambdaContext())
        finally:
            writer.default_dependencies.cache_clear()

        # Then the record is stored with its TTL and the metrics are flushed as EMF
        assert response == {"batchItemFailures": []}
        (event,) = table_io.events_of(client, "status", message_sid(1))
        assert event["expires_at"] == T0 // 1000 + 30 * 86_400
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(
        document.get("EventsStored") == [1.0] or document.get("EventsStored") == 1.0 for document in emitted
    )


def test_logs_never_carry_phone_numbers_or_bodies(dynamodb, table, deps, capsys, write_faults):
    # Given a batch with a failing write and an undeliverable body containing a phone number
    write_faults.fail(message_sid(2))
    event = sqs_event(
        message_record(message_sid(1), "sent"), message_record(message_sid(2), "sent"), "To=+15005550001"
    )

    # When it is handled
    writer.handle(event, None, deps)

    # Then nothing logged mentions the numbers
    output = capsys.readouterr()
    assert "+1500555" not in output.out + output.err
