"""The number flagger against moto: what a flag records, duplicates, order, concurrency, failures."""

from __future__ import annotations

import copy
from typing import Any

import error_router_handler
import number_flags_handler
import pytest
from botocore.exceptions import ClientError

from status_callbacks.adapters.dynamodb import flags_for_number, record_number_flag
from status_callbacks.domain.flags import NumberFlag, number_flag_from_detail
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.routes import DEFAULT_DETAIL_TYPE, DEFAULT_EVENT_SOURCE, error_detail, route_for

NOW_MS = 1_767_300_000_000


@pytest.fixture
def flagger(error_stack: Any) -> number_flags_handler.Dependencies:
    return number_flags_handler.Dependencies(
        settings=number_flags_handler.Settings(number_flags_table=error_stack.number_flags_table),
        dynamodb=error_stack.dynamodb,
        clock=lambda: NOW_MS,
    )


def bus_event(record: CallbackRecord) -> dict[str, Any]:
    """The event EventBridge hands the flagger for a record the router published."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": DEFAULT_DETAIL_TYPE,
        "source": DEFAULT_EVENT_SOURCE,
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": error_detail(record),
    }


def test_flag_records_the_number_with_code_reason_and_when(
    error_stack: Any, flagger: Any, lambda_context: Any, sample_event: Any
) -> None:
    # Given the sample flag-number event (a 30006 for +14155550123)
    event = sample_event("flagger-eventbridge-flag-number.json")
    # When the flagger handles it
    result = number_flags_handler.handle(event, lambda_context, flagger)
    # Then the number has one flag for 30006 with its reason, severity and times
    assert result == {"outcome": "recorded"}
    [flag] = flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550123")
    record = event["detail"]["record"]
    assert flag == {
        "phone_number": "+14155550123",
        "error_code": "30006",
        "reason": route_for("30006").reason,
        "severity": "info",
        "product": "message",
        "first_seen_at": record["received_at"],
        "last_seen_at": record["received_at"],
        "last_sid": record["sid"],
        "last_status": "undelivered",
        "callback_count": 1,
        "recent_event_ids": [record["event_id"]],
        "updated_at": NOW_MS,
        "version": 1,
    }


def test_sample_flagger_event_is_what_the_router_publishes(sample_event: Any) -> None:
    event = sample_event("flagger-eventbridge-flag-number.json")
    assert event["source"] == DEFAULT_EVENT_SOURCE
    assert event["detail-type"] == DEFAULT_DETAIL_TYPE
    assert event["detail"] == error_detail(CallbackRecord.from_dict(event["detail"]["record"]))


def test_redelivered_event_changes_nothing(
    error_stack: Any, flagger: Any, lambda_context: Any, make_callback: Any
) -> None:
    # Given a flag already recorded for an event
    event = bus_event(make_callback("30005"))
    number_flags_handler.handle(event, lambda_context, flagger)
    before = flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550123")
    # When EventBridge delivers the same event again
    later = number_flags_handler.Dependencies(
        flagger.settings, flagger.dynamodb, clock=lambda: NOW_MS + 60_000
    )
    result = number_flags_handler.handle(copy.deepcopy(event), lambda_context, later)
    # Then it is recognised and the flag is untouched
    assert result == {"outcome": "duplicate"}
    assert flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550123") == before


def test_events_arriving_out_of_order_give_the_same_flag(
    error_stack: Any, flagger: Any, lambda_context: Any, make_callback: Any
) -> None:
    # Given two failures of the same number, one minute apart
    older = make_callback("30003", sid="SM-older", received_at=1_767_225_600_000)
    newer = make_callback("30003", sid="SM-newer", received_at=1_767_225_660_000)
    # When they reach the flagger in order for one number and newest first for another
    for to, order in (("+14155550101", (older, newer)), ("+14155550102", (newer, older))):
        for record in order:
            twilio = {**record.twilio, "To": to}
            moved = CallbackRecord.from_dict({**record.to_dict(), "twilio": twilio})
            number_flags_handler.handle(bus_event(moved), lambda_context, flagger)
    # Then both numbers end with the same first/last seen, count and latest SID
    in_order, reversed_order = (
        flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, to)[0]
        for to in ("+14155550101", "+14155550102")
    )
    for flag in (in_order, reversed_order):
        assert (flag["first_seen_at"], flag["last_seen_at"]) == (1_767_225_600_000, 1_767_225_660_000)
        assert flag["callback_count"] == 2
        assert flag["last_sid"] == "SM-newer"


def test_each_error_code_is_a_separate_flag_of_the_number(
    error_stack: Any, flagger: Any, lambda_context: Any, make_callback: Any
) -> None:
    for code in ("30006", "21610"):
        number_flags_handler.handle(bus_event(make_callback(code, sid=f"SM{code}")), lambda_context, flagger)
    flags = flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550123")
    assert sorted((flag["error_code"], flag["reason"]) for flag in flags) == [
        ("21610", route_for("21610").reason),
        ("30006", route_for("30006").reason),
    ]
    assert flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550000") == []


@pytest.mark.parametrize(
    ("code", "to", "outcome"),
    [("30006", "whatsapp:+14155550123", "NoNumber"), ("30007", "+14155550123", "NotFlagged")],
)
def test_events_that_cannot_flag_a_number_are_counted_not_failed(
    error_stack: Any, flagger: Any, lambda_context: Any, make_callback: Any, code: str, to: str, outcome: str
) -> None:
    result = number_flags_handler.handle(bus_event(make_callback(code, to=to)), lambda_context, flagger)
    assert result == {"outcome": outcome}
    scan = error_stack.dynamodb.scan(TableName=error_stack.number_flags_table)
    assert scan["Items"] == []


def test_a_concurrent_change_is_merged_not_overwritten(error_stack: Any, make_callback: Any) -> None:
    # Given another flagger writing a flag for the same number between our read and our write
    mine = number_flag_from_detail(error_detail(make_callback("30006", sid="SM-mine", received_at=2000)))
    theirs = number_flag_from_detail(error_detail(make_callback("30006", sid="SM-theirs", received_at=1000)))
    assert isinstance(mine, NumberFlag)
    assert isinstance(theirs, NumberFlag)
    interfered: list[bool] = []

    def write_theirs_first(**_: Any) -> None:
        if not interfered:
            interfered.append(True)
            error_stack.dynamodb.meta.events.unregister("before-call.dynamodb.PutItem", write_theirs_first)
            record_number_flag(error_stack.dynamodb, error_stack.number_flags_table, theirs, NOW_MS)

    error_stack.dynamodb.meta.events.register("before-call.dynamodb.PutItem", write_theirs_first)
    # When we record our flag
    outcome = record_number_flag(error_stack.dynamodb, error_stack.number_flags_table, mine, NOW_MS)
    # Then our conditional write lost, we merged again, and both events count
    assert interfered == [True]
    assert str(outcome) == "recorded"
    [flag] = flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550123")
    assert flag["callback_count"] == 2
    assert flag["version"] == 2
    assert (flag["first_seen_at"], flag["last_seen_at"], flag["last_sid"]) == (1000, 2000, "SM-mine")


def test_a_failed_write_raises_so_lambda_retries_then_dead_letters(
    error_stack: Any, lambda_context: Any, make_callback: Any
) -> None:
    # Given a flagger whose table is not there
    broken = number_flags_handler.Dependencies(
        settings=number_flags_handler.Settings(number_flags_table="missing-table"),
        dynamodb=error_stack.dynamodb,
    )
    # When it handles a flag-number event, Then the error propagates (Lambda's async retries, then DLQ)
    with pytest.raises(ClientError):
        number_flags_handler.handle(bus_event(make_callback("30006")), lambda_context, broken)


def test_router_to_rule_to_flagger(
    error_stack: Any, flagger: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given a landline failure routed by the router through the template's flag rule
    record = make_callback("30006", to="+14155550188")
    router = error_router_handler.build_dependencies(
        error_router_handler.Settings(error_stack.bus_name, error_stack.idempotency_table),
        error_stack.events,
        error_stack.dynamodb,
        sleep=error_stack.sleeps.append,
    )
    error_router_handler.handle(make_sqs_event(record.to_json()), lambda_context, router)
    [delivered] = error_stack.drain(error_stack.flag_queue_url)
    # When the flagger receives the event the rule delivered
    number_flags_handler.handle(delivered, lambda_context, flagger)
    # Then the number is flagged for 30006
    [flag] = flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550188")
    assert (flag["error_code"], flag["recent_event_ids"]) == ("30006", [record.event_id])


def test_handler_entry_point_reads_its_table_from_the_environment(
    error_stack: Any, lambda_context: Any, sample_event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBER_FLAGS_TABLE_NAME", error_stack.number_flags_table)
    number_flags_handler.default_dependencies.cache_clear()
    try:
        result = number_flags_handler.handler(
            sample_event("flagger-eventbridge-flag-number.json"), lambda_context
        )
    finally:
        number_flags_handler.default_dependencies.cache_clear()
    assert result == {"outcome": "recorded"}
    assert len(flags_for_number(error_stack.dynamodb, error_stack.number_flags_table, "+14155550123")) == 1
