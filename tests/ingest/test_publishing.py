"""Grouping records into PublishBatch calls: duplicates merged, 10 entries and 256 KiB per call."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from status_callbacks.domain.publishing import (
    MAX_BYTES_PER_CALL,
    MAX_ENTRIES_PER_CALL,
    merge_duplicates,
    plan_publish_calls,
    request_entry_size,
)
from status_callbacks.domain.record import build_record


def record(sid: str, padding: int = 0, status: str = "delivered"):
    twilio = {"MessageSid": sid, "MessageStatus": status, "Body": "x" * padding}
    return build_record(twilio, {}, "/twilio", received_at=1)


def test_duplicates_become_one_entry_carrying_every_message_id():
    # Given three deliveries of one callback and one other callback
    a, b = record("SM1"), record("SM2")
    # When merged
    entries = merge_duplicates([("m1", a), ("m2", b), ("m3", record("SM1"))])
    # Then there is one entry per callback, in first-seen order, with all its SQS message ids
    assert [(e.record.sid, e.message_ids) for e in entries] == [("SM1", ("m1", "m3")), ("SM2", ("m2",))]


def test_entry_size_counts_message_and_attributes():
    [entry] = merge_duplicates([("m1", record("SM1"))])
    request = entry.request_entry()
    expected = len(request["Message"].encode()) + sum(
        len(name) + len(a["DataType"]) + len(a["StringValue"].encode())
        for name, a in request["MessageAttributes"].items()
    )
    assert entry.size == request_entry_size(request) == expected


def test_twenty_small_records_take_two_calls():
    entries = merge_duplicates([(f"m{n}", record(f"SM{n}")) for n in range(20)])
    assert [len(call) for call in plan_publish_calls(entries)] == [10, 10]


@given(st.lists(st.integers(min_value=0, max_value=120_000), max_size=25))
def test_calls_respect_both_limits_and_keep_every_entry_in_order(paddings):
    # Given records of arbitrary sizes up to ~120 KB
    entries = merge_duplicates([(f"m{n}", record(f"SM{n}", padding)) for n, padding in enumerate(paddings)])
    # When planned
    calls = plan_publish_calls(entries)
    # Then every entry appears once, in order, and no call exceeds 10 entries or 256 KiB
    assert [e for call in calls for e in call] == entries
    for call in calls:
        assert 1 <= len(call) <= MAX_ENTRIES_PER_CALL
        assert sum(e.size for e in call) <= MAX_BYTES_PER_CALL
    # And a call is only closed when the next entry would not fit (greedy, so as few calls as in-order allows)
    for call, following in itertools.pairwise(calls):
        assert (
            len(call) == MAX_ENTRIES_PER_CALL
            or sum(e.size for e in call) + following[0].size > MAX_BYTES_PER_CALL
        )
