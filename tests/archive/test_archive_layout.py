"""The archive layout, pure: UTC day partitions, content-derived keys, gzip NDJSON, batch planning."""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from status_callbacks.domain import archive
from status_callbacks.domain.archive import (
    UnarchivableRecordError,
    decode_records,
    encode_records,
    object_key,
    partition_of,
    plan_archive,
)
from tests.archive.builders import epoch_ms, message_record

SM1 = "SM" + "11" * 16
SM2 = "SM" + "22" * 16
SM3 = "SM" + "33" * 16
# Epoch ms from 1970 to the end of 9999, the range a UTC day can name.
ARCHIVABLE_MS = st.integers(min_value=0, max_value=253_402_300_799_999)


@pytest.mark.parametrize(
    ("received", "day"),
    [
        ("2026-01-31T23:59:59.999Z", "2026-01-31"),
        ("2026-02-01T00:00:00.000Z", "2026-02-01"),
        ("2025-12-31T23:59:59.999Z", "2025-12-31"),
        ("2026-01-01T00:00:00.000Z", "2026-01-01"),
        ("2028-02-29T12:00:00.000Z", "2028-02-29"),
        ("1970-01-01T00:00:00.000Z", "1970-01-01"),
    ],
)
def test_partition_is_the_utc_day_of_received_at_with_the_right_month(received: str, day: str):
    # Given a record's received_at on either side of a UTC day, month or year boundary
    received_at = epoch_ms(received)

    # When its partition is computed
    partition = partition_of(received_at)

    # Then it is that UTC day, month numbered 01-12 (not off by one)
    assert partition == day


def test_partition_comes_from_the_record_not_from_now():
    # Given a record received years ago (a replay from the dead-letter queue, say)
    received_at = epoch_ms("2019-07-04T08:30:00.000Z")

    # Then its partition is the day it was received, whatever today is
    assert partition_of(received_at) == "2019-07-04"
    assert archive.partition_prefix(partition_of(received_at)) == "callbacks/dt=2019-07-04/"


@given(ARCHIVABLE_MS)
def test_partition_matches_the_calendar_for_any_millisecond(received_at: int):
    # Given any archivable millisecond
    # When it is partitioned
    partition = partition_of(received_at)

    # Then the partition's UTC day contains that millisecond
    day_start = datetime.strptime(partition, "%Y-%m-%d").replace(tzinfo=UTC)
    start_ms = int((day_start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
    assert start_ms <= received_at < start_ms + 86_400_000


@pytest.mark.parametrize("received_at", [-1, 253_402_300_800_000, 10**20])
def test_a_received_at_that_names_no_day_is_unarchivable(received_at: int):
    with pytest.raises(UnarchivableRecordError):
        partition_of(received_at)


def test_object_key_is_hive_partitioned_and_derived_from_the_set_of_events():
    # Given the same events listed in a different order and with a repeat
    ids = ["b" * 32, "a" * 32, "c" * 32]

    # When keys are derived
    key = object_key("2026-02-01", ids)
    same = object_key("2026-02-01", [*reversed(ids), "a" * 32])
    other = object_key("2026-02-01", ids[:2])

    # Then the key lives in the day's partition, names a gzip object, and depends only on the set
    assert key.startswith("callbacks/dt=2026-02-01/")
    assert key.endswith(".json.gz")
    assert key == same
    assert key != other


def test_objects_are_gzip_ndjson_with_each_line_the_record_contract():
    # Given two records
    records = [
        message_record(SM1, "sent", epoch_ms("2026-02-01T10:00:00Z"), category="reminder"),
        message_record(SM1, "undelivered", epoch_ms("2026-02-01T10:00:05Z"), error_code="30003"),
    ]

    # When they are encoded
    body = encode_records(records)

    # Then the body is gzip, one JSON object per newline-terminated line, each the record's dict
    assert body[:2] == b"\x1f\x8b"
    text = gzip.decompress(body).decode("utf-8")
    assert text.endswith("\n")
    assert [json.loads(line) for line in text.splitlines()] == [record.to_dict() for record in records]
    assert decode_records(body) == [record.to_dict() for record in records]
    # And identical input gives identical bytes (no timestamp in the gzip header)
    assert encode_records(records) == body


def test_non_ascii_parameters_survive_encoding():
    record = message_record(SM1, "sent", epoch_ms("2026-02-01T10:00:00Z"), category="café ☕ & co")

    assert decode_records(encode_records([record])) == [record.to_dict()]


def test_a_batch_spanning_midnight_plans_one_object_per_day():
    # Given records either side of midnight UTC
    before = message_record(SM1, "delivered", epoch_ms("2026-01-31T23:59:59.999Z"))
    after = message_record(SM2, "sent", epoch_ms("2026-02-01T00:00:00.000Z"))
    later = message_record(SM2, "delivered", epoch_ms("2026-02-01T00:00:03.000Z"))

    # When the batch is planned
    plan = plan_archive([("m1", later), ("m2", before), ("m3", after)])

    # Then there is one object per day, holding that day's records and settling their messages
    assert [o.partition for o in plan.objects] == ["2026-01-31", "2026-02-01"]
    january, february = plan.objects
    assert january.key.startswith("callbacks/dt=2026-01-31/")
    assert february.key.startswith("callbacks/dt=2026-02-01/")
    assert january.records == (before,)
    assert february.records == (after, later)
    assert january.delivery_ids == ("m2",)
    assert set(february.delivery_ids) == {"m1", "m3"}
    assert plan.record_count == 3
    assert plan.duplicates == 0
    assert plan.unarchivable == ()


def test_a_record_delivered_twice_in_one_batch_is_archived_once_and_settles_both_messages():
    # Given the same record on two messages (an SQS redelivery next to the original)
    record = message_record(SM1, "delivered", epoch_ms("2026-02-01T09:00:00Z"))
    other = message_record(SM2, "sent", epoch_ms("2026-02-01T09:00:01Z"))

    # When the batch is planned
    plan = plan_archive([("m1", record), ("m2", other), ("m3", record)])

    # Then the object holds it once, and both messages share its fate
    (only,) = plan.objects
    assert only.records == (record, other)
    assert set(only.delivery_ids) == {"m1", "m2", "m3"}
    assert plan.duplicates == 1


def test_a_twilio_retry_received_the_next_day_keeps_the_first_copy():
    # Given one callback received late on the 31st and its Twilio retry received after midnight
    first = message_record(SM1, "delivered", epoch_ms("2026-01-31T23:59:59.000Z"))
    retry = message_record(SM1, "delivered", epoch_ms("2026-02-01T00:00:14.000Z"))
    assert first.event_id == retry.event_id

    # When both are in one batch (in either order)
    plans = [plan_archive([("m1", first), ("m2", retry)]), plan_archive([("m2", retry), ("m1", first)])]

    # Then only the first copy is archived, in its own day, and both messages settle with it
    for plan in plans:
        (only,) = plan.objects
        assert only.partition == "2026-01-31"
        assert only.records == (first,)
        assert set(only.delivery_ids) == {"m1", "m2"}


def test_out_of_order_records_are_stored_in_received_order():
    # Given a message's callbacks arriving out of order
    sent = message_record(SM1, "sent", epoch_ms("2026-02-01T09:00:00Z"))
    delivered = message_record(SM1, "delivered", epoch_ms("2026-02-01T09:00:02Z"))
    read = message_record(SM1, "read", epoch_ms("2026-02-01T09:00:09Z"))

    # When planned
    plan = plan_archive([("m3", read), ("m1", sent), ("m2", delivered)])

    # Then the object lists them by received_at
    assert [r.status for r in plan.objects[0].records] == ["sent", "delivered", "read"]


# Offsets from 2026-01-31T23:59:58Z: the batch straddles midnight.
_CALLBACKS = [
    (SM1, "sent", 0),
    (SM1, "delivered", 1_999),
    (SM2, "queued", 2_000),
    (SM2, "failed", 2_500),
    (SM3, "sent", 3_000),
]


@given(st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_delivery_order(rng: random.Random):
    # Given a batch across two days with a duplicate, in a random order
    base = epoch_ms("2026-01-31T23:59:58.000Z")
    records = [message_record(sid, status, base + offset) for sid, status, offset in _CALLBACKS]
    deliveries = [(f"m{n}", record) for n, record in enumerate(records)]
    deliveries.append(("dup", records[2]))
    shuffled = deliveries[:]
    rng.shuffle(shuffled)

    # When both orders are planned
    in_order, out_of_order = plan_archive(deliveries), plan_archive(shuffled)

    # Then keys, bytes and settled messages are the same
    assert [o.key for o in in_order.objects] == [o.key for o in out_of_order.objects]
    assert [o.body() for o in in_order.objects] == [o.body() for o in out_of_order.objects]
    assert [set(o.delivery_ids) for o in in_order.objects] == [
        set(o.delivery_ids) for o in out_of_order.objects
    ]


def test_a_record_with_an_impossible_time_is_unarchivable_and_does_not_block_the_rest():
    # Given a record whose received_at names no day next to a good one
    good = message_record(SM1, "sent", epoch_ms("2026-02-01T09:00:00Z"))
    broken = message_record(SM2, "sent", -5)

    # When planned
    plan = plan_archive([("good", good), ("broken", broken)])

    # Then the broken one is set aside and the good one is still archived
    assert plan.unarchivable == ("broken",)
    assert [o.delivery_ids for o in plan.objects] == [("good",)]


def test_an_empty_batch_plans_nothing():
    plan = plan_archive([])

    assert plan.objects == ()
    assert plan.record_count == 0


def test_the_prefix_can_be_moved():
    record = message_record(SM1, "sent", epoch_ms("2026-02-01T09:00:00Z"))

    plan = plan_archive([("m1", record)], prefix="archive/v1/")

    assert plan.objects[0].key.startswith("archive/v1/dt=2026-02-01/")
