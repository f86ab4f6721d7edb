"""The status store's writes and lookups against a moto table built from the template."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline_bench import billing
from status_callbacks.adapters import dynamodb as table_io
from status_callbacks.domain import status_items
from status_callbacks.domain.record import build_record
from tests.status_store.builders import T0, call_record, call_sid, message_params, message_record, message_sid


def _all_items(client, table):
    return [table_io.from_attribute_values(item) for item in client.scan(TableName=table)["Items"]]


def _index_items(client, table):
    response = client.scan(TableName=table, IndexName=status_items.ERROR_INDEX_NAME)
    return [table_io.from_attribute_values(item) for item in response["Items"]]


def test_same_callback_twice_is_one_item(dynamodb, table):
    # Given a callback stored once
    record = message_record(message_sid(1), "delivered")
    table_io.put_event(dynamodb, table, record)

    # When the same callback is stored again (Twilio retry or SQS redelivery), received later
    retry = message_record(message_sid(1), "delivered", received_at=T0 + 60_000)
    table_io.put_event(dynamodb, table, retry)

    # Then there is still one item for (SID, delivered)
    events = table_io.events_of(dynamodb, table, message_sid(1))
    assert len(events) == 1
    assert events[0]["event_id"] == record.event_id


def test_current_status_only_moves_forward_for_messages(dynamodb, table):
    # Given a message whose delivered callback arrived first
    delivered = message_record(message_sid(1), "delivered", received_at=T0 + 5_000)
    assert table_io.advance_current(dynamodb, table, delivered) is True

    # When the earlier "sent" callback arrives late
    sent = message_record(message_sid(1), "sent", received_at=T0 + 9_000)
    advanced = table_io.advance_current(dynamodb, table, sent)

    # Then it is stale (not an error) and the current status stays delivered
    assert advanced is False
    current = table_io.current_of(dynamodb, table, message_sid(1))
    assert current is not None
    assert current["status"] == "delivered"
    assert current["event_id"] == delivered.event_id


def test_current_status_moves_forward_in_order(dynamodb, table):
    for status in ("queued", "sent", "delivered", "read"):
        assert table_io.advance_current(dynamodb, table, message_record(message_sid(1), status)) is True

    current = table_io.current_of(dynamodb, table, message_sid(1))
    assert current is not None
    assert current["status"] == "read"


def test_calls_order_by_sequence_number(dynamodb, table):
    # Given a call's "completed" callback (SequenceNumber 3) stored first
    assert table_io.advance_current(dynamodb, table, call_record(call_sid(1), "completed", 3))

    # When "ringing" (SequenceNumber 1) arrives late
    advanced = table_io.advance_current(dynamodb, table, call_record(call_sid(1), "ringing", 1))

    # Then the call stays completed
    assert advanced is False
    current = table_io.current_of(dynamodb, table, call_sid(1))
    assert current is not None
    assert (current["status"], current["position"]) == ("completed", 3)


def test_a_repeat_of_the_current_callback_is_stale(dynamodb, table):
    record = message_record(message_sid(1), "sent")
    assert table_io.advance_current(dynamodb, table, record) is True

    assert table_io.advance_current(dynamodb, table, record) is False


def test_a_throttled_current_write_raises(dynamodb, table, write_faults):
    # Given DynamoDB throttles the current-view write
    write_faults.fail(message_sid(1), "CURRENT", "ProvisionedThroughputExceededException")

    # Then it is not mistaken for a stale callback
    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        table_io.advance_current(dynamodb, table, message_record(message_sid(1), "sent"))


def test_events_of_lists_a_sids_history_in_lifecycle_order(dynamodb, table):
    # Given a message's callbacks stored out of order, plus another message's
    for status, offset in (("delivered", 3), ("queued", 1), ("sent", 2)):
        table_io.put_event(dynamodb, table, message_record(message_sid(1), status, T0 + offset))
    table_io.put_event(dynamodb, table, message_record(message_sid(2), "sent"))
    table_io.advance_current(dynamodb, table, message_record(message_sid(1), "delivered"))

    # When its history is read
    events = table_io.events_of(dynamodb, table, message_sid(1))

    # Then it holds that SID's events only (not the current view), in lifecycle order
    assert [event["status"] for event in events] == ["queued", "sent", "delivered"]
    assert all(event["sid"] == message_sid(1) for event in events)


def test_current_of_an_unknown_sid_is_none(dynamodb, table):
    assert table_io.current_of(dynamodb, table, message_sid(99)) is None


def test_only_error_items_reach_the_sparse_index(dynamodb, table):
    # Given healthy and error callbacks, each with its current view
    records = [
        message_record(message_sid(1), "delivered"),
        message_record(message_sid(2), "undelivered", error_code="30003"),
        message_record(message_sid(3), "sent"),
        message_record(message_sid(4), "failed", error_code="30007"),
    ]
    for record in records:
        table_io.put_event(dynamodb, table, record)
        table_io.advance_current(dynamodb, table, record)

    # When the error index is read in full
    indexed = _index_items(dynamodb, table)

    # Then it holds exactly the two error events (no healthy item, no current view)
    assert sorted((item["sid"], item["sk"]) for item in indexed) == [
        (message_sid(2), "EVENT#undelivered"),
        (message_sid(4), "EVENT#failed"),
    ]
    assert len(_all_items(dynamodb, table)) == 8


def test_errors_by_code_fans_out_over_shards_within_the_time_range(dynamodb, table):
    # Given 40 callbacks with error 30003 one second apart, plus another code and healthy ones
    errors = [
        message_record(message_sid(n), "undelivered", received_at=T0 + n * 1000, error_code="30003")
        for n in range(40)
    ]
    noise = [
        message_record(message_sid(100 + n), "failed", received_at=T0 + n * 1000, error_code="30007")
        for n in range(5)
    ] + [message_record(message_sid(200 + n), "delivered", received_at=T0 + n * 1000) for n in range(5)]
    for record in errors + noise:
        table_io.put_event(dynamodb, table, record)
    used_shards = {status_items.event_item(record)["error_shard"] for record in errors}
    assert len(used_shards) > 1

    # When errors with that code are asked for in [10s, 30s]
    found = table_io.errors_by_code(dynamodb, table, "30003", T0 + 10_000, T0 + 30_000)

    # Then every one in the range comes back once, oldest first, from every shard, with both ends included
    assert [item["sid"] for item in found] == [message_sid(n) for n in range(10, 31)]
    assert all(item["error_code"] == "30003" and item["status"] == "undelivered" for item in found)
    assert {item["error_shard"] for item in found} == {
        status_items.event_item(record)["error_shard"] for record in errors[10:31]
    }


def test_errors_by_code_returns_only_what_the_index_projects(dynamodb, table, table_properties):
    # Given an error callback whose Twilio parameters include phone numbers
    table_io.put_event(dynamodb, table, message_record(message_sid(1), "failed", error_code="30007"))

    # When it is found by code
    (found,) = table_io.errors_by_code(dynamodb, table, "30007", T0, T0)

    # Then it carries keys and the projected envelope fields, never the Twilio map
    (index,) = table_properties["GlobalSecondaryIndexes"]
    expected = {"sid", "sk", "error_shard", "received_at", *index["Projection"]["NonKeyAttributes"]}
    assert set(found) == expected
    assert "twilio" not in found


def test_unknown_product_is_stored_and_readable(dynamodb, table):
    record = build_record(
        {"AccountSid": "AC1", "SomethingSid": "ZZ1", "ErrorCode": "12345"}, {}, "/twilio", T0
    )

    table_io.put_event(dynamodb, table, record)

    (stored,) = table_io.events_of(dynamodb, table, f"EVENT#{record.event_id}")
    assert stored["twilio"] == dict(record.twilio)
    assert [item["sid"] for item in table_io.errors_by_code(dynamodb, table, "12345", T0, T0)] == [
        f"EVENT#{record.event_id}"
    ]


def test_ttl_attribute_is_written_when_enabled(dynamodb, table):
    record = message_record(message_sid(1), "sent")

    table_io.put_event(dynamodb, table, record, ttl_days=90)
    table_io.advance_current(dynamodb, table, record, ttl_days=90)

    expected = T0 // 1000 + 90 * 86_400
    assert [item["expires_at"] for item in _all_items(dynamodb, table)] == [expected, expected]


def test_events_of_pages_through_large_histories(dynamodb, table):
    # Given more conference events than fit in one 1 MB page
    conference = "CF" + "1" * 32
    padding = "x" * 20_000
    for n in range(60):
        record = build_record(
            {"ConferenceSid": conference, "StatusCallbackEvent": "participant-mute", "Note": f"{n}{padding}"},
            {},
            "/twilio",
            T0 + n,
        )
        table_io.put_event(dynamodb, table, record)

    # Then every one comes back
    assert len(table_io.events_of(dynamodb, table, conference)) == 60


# Twilio's documented call status callback (every parameter it sends on a completed outbound call).
FULL_CALL_CALLBACK = {
    "Called": "+15005550001",
    "ToState": "CA",
    "CallerCountry": "US",
    "Direction": "outbound-api",
    "Timestamp": "Mon, 10 Jun 2024 06:13:20 +0000",
    "CallbackSource": "call-progress-events",
    "SipResponseCode": "200",
    "CallerState": "CA",
    "ToZip": "94108",
    "SequenceNumber": "3",
    "CallSid": call_sid(1),
    "To": "+15005550001",
    "CallerZip": "94108",
    "ToCountry": "US",
    "CalledZip": "94108",
    "ApiVersion": "2010-04-01",
    "CalledCity": "SAN FRANCISCO",
    "CallStatus": "completed",
    "Duration": "1",
    "From": "+15005550006",
    "CallDuration": "42",
    "AccountSid": "AC" + "f" * 32,
    "CalledCountry": "US",
    "CallerCity": "SAN FRANCISCO",
    "ToCity": "SAN FRANCISCO",
    "FromCountry": "US",
    "Caller": "+15005550006",
    "FromCity": "SAN FRANCISCO",
    "CalledState": "CA",
    "FromZip": "94108",
    "FromState": "CA",
}


@pytest.mark.parametrize(
    ("record", "expected_units"),
    [
        (
            build_record(
                message_params(message_sid(1), "delivered"),
                {"id": "o-1", "category": "otp"},
                "/twilio-params",
                T0,
            ),
            2,
        ),
        (message_record(message_sid(1), "undelivered", error_code="30003"), 3),
        (build_record(FULL_CALL_CALLBACK, {}, "/twilio", T0), 2),
    ],
    ids=["healthy-message", "error-message", "healthy-call-full-params"],
)
def test_write_units_per_callback_measured_from_stored_items(
    dynamodb, table, table_properties, record, expected_units
):
    # Given a realistic callback stored with a 90-day TTL (the largest item variant)
    table_io.put_event(dynamodb, table, record, ttl_days=90)
    table_io.advance_current(dynamodb, table, record, ttl_days=90)

    # When the stored items are read back and sized by DynamoDB's rules
    def stored(sk):
        key = {"sid": {"S": record.sid}, "sk": {"S": sk}}
        return table_io.from_attribute_values(dynamodb.get_item(TableName=table, Key=key)["Item"])

    event, current = stored(status_items.event_sort_key_of(record)), stored("CURRENT")
    (index,) = table_properties["GlobalSecondaryIndexes"]
    index_entry = billing.error_index_entry(event, index["Projection"]["NonKeyAttributes"])

    # Then each stays within one write unit (1 KB), so a callback costs 2 units healthy, 3 with an error
    assert billing.item_size(event) <= billing.WRITE_UNIT_BYTES
    assert billing.item_size(current) <= billing.WRITE_UNIT_BYTES
    units = billing.write_units(event) + billing.write_units(current)
    if index_entry is not None:
        units += billing.write_units(index_entry)
    assert units == expected_units
