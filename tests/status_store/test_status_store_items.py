"""Pure item building for the status store: keys, items, conditions, batch collapse, sizes."""

from __future__ import annotations

import pytest

from pipeline_bench import billing
from status_callbacks.adapters import dynamodb
from status_callbacks.domain import status_items
from status_callbacks.domain.record import build_record
from tests.status_store.builders import T0, call_record, call_sid, message_params, message_record, message_sid


def test_event_item_is_keyed_by_sid_and_status():
    # Given a delivered message callback
    record = message_record(message_sid(1), "delivered")

    # When its history item is built
    item = status_items.event_item(record)

    # Then it sits under the SID with one sort key per status and keeps every Twilio parameter
    assert item["sid"] == message_sid(1)
    assert item["sk"] == "EVENT#delivered"
    assert item["twilio"] == dict(record.twilio)
    assert item["event_id"] == record.event_id
    assert item["received_at"] == T0
    assert item["position"] == 5


def test_repeated_callback_builds_the_same_key_even_when_received_later():
    # Given the same callback received twice (a Twilio retry arrives later)
    first = message_record(message_sid(1), "sent", received_at=T0)
    retry = message_record(message_sid(1), "sent", received_at=T0 + 30_000)

    # Then both map onto one item key and one event id
    assert first.event_id == retry.event_id
    assert (status_items.event_item(first)["sid"], status_items.event_item(first)["sk"]) == (
        status_items.event_item(retry)["sid"],
        status_items.event_item(retry)["sk"],
    )


def test_healthy_items_carry_no_error_index_key():
    # Given a healthy callback
    item = status_items.event_item(message_record(message_sid(1), "delivered"))

    # Then it has no error index key, so the sparse index gets no write for it
    assert status_items.ERROR_INDEX_PARTITION_KEY not in item
    assert "error_code" not in item


def test_error_items_carry_a_sharded_error_index_key():
    # Given an undelivered message with an error code
    record = message_record(message_sid(1), "undelivered", error_code="30003")

    # When its history item is built
    item = status_items.event_item(record)

    # Then it is indexed under <code>#<shard>, the shard within the fixed range
    code, shard = item[status_items.ERROR_INDEX_PARTITION_KEY].split("#")
    assert code == "30003"
    assert 0 <= int(shard) < status_items.ERROR_SHARDS
    assert item["error_code"] == "30003"


def test_error_shards_spread_one_code_over_every_shard():
    # Given many different error callbacks with one code
    shards = {status_items.error_shard_of("30003", f"{n:032x}") for n in range(200)}

    # Then they land on every shard, not on one hot partition
    assert shards == {f"30003#{n}" for n in range(status_items.ERROR_SHARDS)}


def test_error_shard_is_stable_for_one_event():
    assert status_items.error_shard_of("30007", "ab" * 16) == status_items.error_shard_of("30007", "ab" * 16)


def test_current_item_is_small_and_never_in_the_error_index():
    # Given an error callback
    record = message_record(message_sid(1), "undelivered", error_code="30003")

    # When its current-status view is built
    item = status_items.current_item(record)

    # Then it holds the envelope only: no Twilio map, no error index key
    assert item["sk"] == "CURRENT"
    assert item["status"] == "undelivered"
    assert item["error_code"] == "30003"
    assert "twilio" not in item
    assert status_items.ERROR_INDEX_PARTITION_KEY not in item


def test_unknown_product_is_kept_under_its_event_id():
    # Given a callback from a product the record contract does not know
    record = build_record({"AccountSid": "AC1", "SomethingSid": "ZZ1"}, {}, "/twilio", T0)

    # When its history item is built
    item = status_items.event_item(record)

    # Then nothing is lost: it is stored under its event id
    assert record.product == "unknown"
    assert item["sid"] == f"EVENT#{record.event_id}"
    assert item["sk"].startswith("EVENT#")
    with pytest.raises(ValueError, match="no current status"):
        status_items.current_item(record)


def test_conference_events_with_the_same_name_are_kept_apart():
    # Given two participants joining one conference (same SID, same "status")
    conference = "CF" + "1" * 32
    joins = [
        build_record(
            {"ConferenceSid": conference, "StatusCallbackEvent": "participant-join", "CallSid": call_sid(n)},
            {},
            "/twilio",
            T0 + n,
        )
        for n in (1, 2)
    ]

    # Then each gets its own history item
    keys = {status_items.event_sort_key_of(record) for record in joins}
    assert len(keys) == 2
    assert all(key.startswith("EVENT#participant-join#") for key in keys)


def test_sid_without_status_keeps_each_callback():
    # Given two different message callbacks with a SID but no status parameter
    records = [
        build_record({"MessageSid": message_sid(1), "Body": body}, {}, "/twilio", T0) for body in ("a", "b")
    ]

    # Then neither overwrites the other
    assert len({status_items.event_sort_key_of(record) for record in records}) == 2


def test_ttl_is_epoch_seconds_after_receipt():
    record = message_record(message_sid(1), "sent", received_at=1_718_000_000_999)

    assert status_items.event_item(record, ttl_days=30)["expires_at"] == 1_718_000_000 + 30 * 86_400
    assert status_items.current_item(record, ttl_days=30)["expires_at"] == 1_718_000_000 + 30 * 86_400
    assert "expires_at" not in status_items.event_item(record, ttl_days=0)


def test_advance_condition_only_lets_the_position_grow():
    # Given a call callback with SequenceNumber 3
    condition = status_items.advance_condition(call_record(call_sid(1), "completed", 3))

    # Then the current view is written only when absent or strictly behind
    assert condition["ConditionExpression"] == "attribute_not_exists(#position) OR #position < :position"
    assert condition["ExpressionAttributeNames"] == {"#position": "position"}
    assert condition["ExpressionAttributeValues"] == {":position": {"N": "3"}}


def test_batch_collapses_each_sid_to_its_furthest_record():
    # Given a batch with three statuses of one message, two of one call, and one of another message
    batch = {
        "m1-queued": message_record(message_sid(1), "queued"),
        "m1-delivered": message_record(message_sid(1), "delivered", received_at=T0 + 5),
        "m1-sent": message_record(message_sid(1), "sent", received_at=T0 + 9),
        "c1-completed": call_record(call_sid(1), "completed", 4),
        "c1-ringing": call_record(call_sid(1), "ringing", 1),
        "m2-sent": message_record(message_sid(2), "sent"),
    }

    # When the batch is planned
    writers = status_items.current_view_writers(batch)

    # Then exactly one current-view write per SID, by the furthest along
    assert writers == {"m1-delivered", "c1-completed", "m2-sent"}


def test_batch_tie_keeps_the_earliest_received():
    # Given two terminal outcomes (same rank) of one message in a batch
    batch = {
        "late": message_record(message_sid(1), "undelivered", received_at=T0 + 100, error_code="30003"),
        "early": message_record(message_sid(1), "delivered", received_at=T0),
    }

    # Then the first received wins, as it would across batches
    assert status_items.current_view_writers(batch) == {"early"}


def test_batch_plan_skips_records_without_a_sid():
    record = build_record({"SomethingSid": "ZZ1"}, {}, "/twilio", T0)

    assert status_items.current_view_writers({"unknown": record}) == frozenset()


def test_attribute_values_round_trip():
    # Given an item with strings, numbers and maps
    item = status_items.event_item(message_record(message_sid(1), "sent", error_code="30007"), ttl_days=7)

    # When it goes to DynamoDB's wire format and back
    restored = dynamodb.from_attribute_values(dynamodb.to_attribute_values(item))

    # Then it is unchanged, numbers as int
    assert restored == item
    assert isinstance(restored["received_at"], int)


@pytest.mark.parametrize(
    ("item", "size"),
    [
        ({"a": "bc"}, 3),  # name + UTF-8 bytes
        ({"é": "ü"}, 4),  # multi-byte characters count as bytes
        ({"n": 12345}, 1 + 3 + 1),  # ceil(5 digits / 2) + 1
        ({"n": 1_718_000_000_000}, 1 + 2 + 1),  # trailing zeros are trimmed
        ({"m": {"k": "v"}}, 1 + 3 + (1 + 1 + 1)),  # map overhead + name + value + 1 per element
        ({"b": True}, 2),
    ],
)
def test_item_size_follows_dynamodbs_documented_rules(item, size):
    assert billing.item_size(item) == size


def test_write_units_round_up_per_started_kilobyte():
    assert billing.write_units({"a": "x" * 1022}) == 1  # 1 + 1022 = 1023 bytes
    assert billing.write_units({"a": "x" * 1023}) == 1  # exactly 1024
    assert billing.write_units({"a": "x" * 1024}) == 2


def test_error_index_entry_projects_only_keys_and_named_attributes():
    item = status_items.event_item(message_record(message_sid(1), "failed", error_code="30007"))

    entry = billing.error_index_entry(item, ["status"])

    assert entry is not None
    assert set(entry) == {"sid", "sk", "error_shard", "received_at", "status"}


def test_current_view_has_no_error_index_entry():
    record = build_record(message_params(message_sid(1), "failed", "30007"), {}, "/twilio", T0)

    assert billing.error_index_entry(status_items.current_item(record), ["status"]) is None
