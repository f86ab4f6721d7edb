"""The router against moto: contract, routing through the template's rules, retries, dedupe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import error_router_handler
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.exceptions import ClientError

from status_callbacks.adapters.events import Claim, PublishLedger
from status_callbacks.domain.alerts import alert_message
from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.routes import DEFAULT_DETAIL_TYPE, DEFAULT_EVENT_SOURCE, error_detail, route_for


@pytest.fixture
def deps(error_stack: Any) -> error_router_handler.Dependencies:
    settings = error_router_handler.Settings(
        event_bus_name=error_stack.bus_name, idempotency_table=error_stack.idempotency_table
    )
    return error_router_handler.build_dependencies(
        settings, error_stack.events, error_stack.dynamodb, sleep=error_stack.sleeps.append
    )


def failed_ids(response: Any) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def event_ids(events: list[dict[str, Any]]) -> list[str]:
    return [event["detail"]["record"]["event_id"] for event in events]


def test_error_event_matches_the_original_contract(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given an error callback on the error queue
    record = make_callback("30006", received_at=1_767_225_600_123)
    # When the router handles the batch
    response = error_router_handler.handle(make_sqs_event(record.to_json()), lambda_context, deps)
    # Then a rule written for the original project receives exactly one event of the original shape
    assert failed_ids(response) == []
    [event] = error_stack.drain(error_stack.original_rule_queue_url)
    assert event["source"] == DEFAULT_EVENT_SOURCE == "custom.twilioStatusCallbackErrors"
    assert event["detail-type"] == DEFAULT_DETAIL_TYPE == "errormessage"
    assert event["detail"]["ErrorCode"] == "30006"
    assert event["detail"]["record"] == record.to_dict()
    # ... whose enrichment is additive and comes from the routing table
    assert event["detail"] == error_detail(record)
    assert set(event["detail"]) == {"ErrorCode", "record", "Reason", "Severity", "Actions", "Alert"}
    # ... and whose time is when the callback arrived
    assert event["time"] == datetime.fromtimestamp(1_767_225_600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_template_rules_flag_unreachable_numbers_and_alert_on_every_error(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given one batch of error callbacks with flaggable, non-flaggable and unknown codes
    codes = ["30003", "30005", "30006", "21610", "30007", "30032", "30034", "63016"]
    records = {code: make_callback(code, sid=f"SM{code:0>32}") for code in codes}
    # When the router handles it
    response = error_router_handler.handle(
        make_sqs_event(*(record.to_json() for record in records.values())), lambda_context, deps
    )
    # Then it was one PutEvents call, and the template's flag rule saw only the numbers to flag
    assert failed_ids(response) == []
    assert len(error_stack.faults.calls) == 1
    flagged = error_stack.drain(error_stack.flag_queue_url)
    assert sorted(event["detail"]["ErrorCode"] for event in flagged) == ["21610", "30003", "30005", "30006"]
    # ... and the template's alerts rule took every error, each becoming one alert about its own code
    alerts = [alert_message(event["detail"]) for event in error_stack.drain(error_stack.alerts_queue_url)]
    assert sorted(alert.subject for alert in alerts) == sorted(
        f"[{route_for(code).severity}] Twilio error {code} on message {record.sid}"
        for code, record in records.items()
    )


def test_alert_is_readable_and_hides_the_phone_number(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given a carrier-filtered message
    record = make_callback("30007", sid="SM0000000000000000000000000000a007", to="+14155550145")
    # When it is routed
    error_router_handler.handle(make_sqs_event(record.to_json()), lambda_context, deps)
    # Then the alert (as the alerter renders the event the rule hands it) says what happened, plainly
    [event] = error_stack.drain(error_stack.alerts_queue_url)
    alert = alert_message(event["detail"])
    assert alert.subject == "[warning] Twilio error 30007 on message SM0000000000000000000000000000a007"
    assert alert.text.startswith("Twilio error 30007 on message SM0000000000000000000000000000a007")
    assert "carrier filtered this message" in alert.text
    assert "status undelivered" in alert.text
    assert "Review the message content" in alert.text
    # ... as plain text: no JSON quoting, no phone number
    assert not alert.text.startswith('"')
    assert "+14155550145" not in alert.text + alert.subject


def test_partially_failed_put_events_is_retried_for_the_failed_entries(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given three error callbacks, and EventBridge failing the second entry once
    records = [make_callback("30006", sid=f"SM{index:032d}") for index in range(3)]
    error_stack.faults.fail(records[1], times=1)
    # When the router handles them
    response = error_router_handler.handle(
        make_sqs_event(*(record.to_json() for record in records)), lambda_context, deps
    )
    # Then only the failed entry was sent again, after a backoff, and every callback alerted once
    assert failed_ids(response) == []
    assert [len(call) for call in error_stack.faults.calls] == [3, 1]
    assert error_stack.faults.sent_event_ids()[3:] == [records[1].event_id]
    assert len(error_stack.sleeps) == 1
    alerts = error_stack.drain(error_stack.original_rule_queue_url)
    assert sorted(event_ids(alerts)) == sorted(record.event_id for record in records)


def test_entries_still_failing_become_batch_item_failures_and_the_retry_publishes(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given two callbacks, and EventBridge failing the second on every attempt
    good, failing = make_callback("30006", sid="SM1"), make_callback("30006", sid="SM2")
    error_stack.faults.fail(failing, times=3)
    event = make_sqs_event(good.to_json(), failing.to_json())
    # When the router handles the batch
    response = error_router_handler.handle(event, lambda_context, deps)
    # Then the failing message is reported for retry after the bounded attempts, the good one is not
    assert failed_ids(response) == [event["Records"][1]["messageId"]]
    assert error_stack.faults.sent_event_ids().count(failing.event_id) == 3
    assert event_ids(error_stack.drain(error_stack.original_rule_queue_url)) == [good.event_id]
    # When SQS redelivers that message and EventBridge takes it this time
    retry = {"Records": [event["Records"][1]]}
    response = error_router_handler.handle(retry, lambda_context, deps)
    # Then it publishes (the failed attempt did not mark it done), exactly once
    assert failed_ids(response) == []
    assert event_ids(error_stack.drain(error_stack.original_rule_queue_url)) == [failing.event_id]


def test_put_events_call_error_fails_every_entry_of_the_call(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given EventBridge throttling every attempt of the call
    record = make_callback("30005")
    error_stack.faults.calls_to_raise = 3
    event = make_sqs_event(record.to_json())
    # When the router handles the batch
    response = error_router_handler.handle(event, lambda_context, deps)
    # Then the message is a batch item failure and nothing was published
    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert error_stack.drain(error_stack.alerts_queue_url) == []
    # ... and its redelivery publishes it
    assert failed_ids(error_router_handler.handle(event, lambda_context, deps)) == []
    assert len(error_stack.drain(error_stack.alerts_queue_url)) == 1


def test_duplicate_error_callback_yields_one_alert(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given one error callback delivered twice in a batch (Twilio retry) and again later (SQS redelivery)
    record = make_callback("30006")
    first = make_sqs_event(record.to_json(), record.to_json())
    later = make_sqs_event(record.to_json())
    # When the router handles both batches
    responses = [error_router_handler.handle(batch, lambda_context, deps) for batch in (first, later)]
    # Then every delivery is acknowledged, one entry was ever sent, and one alert went out
    assert [failed_ids(response) for response in responses] == [[], []]
    assert error_stack.faults.sent_event_ids() == [record.event_id]
    assert len(error_stack.drain(error_stack.alerts_queue_url)) == 1
    assert len(error_stack.drain(error_stack.flag_queue_url)) == 1


def test_callbacks_arriving_out_of_order_each_publish_with_their_own_time(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given a later failure delivered before an earlier one for the same message
    earlier = make_callback("30003", status="failed", received_at=1_767_225_600_000)
    later = make_callback("30003", status="undelivered", received_at=1_767_225_660_000)
    # When they arrive in two batches, newest first
    for record in (later, earlier):
        assert (
            failed_ids(error_router_handler.handle(make_sqs_event(record.to_json()), lambda_context, deps))
            == []
        )
    # Then both are published, each stamped with its own arrival time
    events = error_stack.drain(error_stack.flag_queue_url)
    assert event_ids(events) == [later.event_id, earlier.event_id]
    assert [event["time"] for event in events] == ["2026-01-01T00:01:00Z", "2026-01-01T00:00:00Z"]


def test_undeliverable_bodies_fail_without_blocking_good_callbacks(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given a batch with a non-JSON body, a JSON body that is not a record, and a good callback
    record = make_callback("30006")
    event = make_sqs_event("MessageSid=SM1&ErrorCode=30006", json.dumps({"hello": "world"}), record.to_json())
    # When the router handles it
    response = error_router_handler.handle(event, lambda_context, deps)
    # Then the two bad messages retry (and end in the DLQ), the good one is published
    assert failed_ids(response) == [event["Records"][0]["messageId"], event["Records"][1]["messageId"]]
    assert event_ids(error_stack.drain(error_stack.original_rule_queue_url)) == [record.event_id]


def test_a_batch_of_only_bad_bodies_is_answered_item_by_item(
    error_stack: Any, deps: Any, lambda_context: Any, make_sqs_event: Any
) -> None:
    event = make_sqs_event("not json")
    response = error_router_handler.handle(event, lambda_context, deps)
    assert failed_ids(response) == [event["Records"][0]["messageId"]]


def test_a_record_without_error_code_is_acknowledged_without_an_event(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given a healthy callback (the subscription filter should have kept it out)
    record = make_callback("", status="delivered")
    # When the router handles it
    response = error_router_handler.handle(make_sqs_event(record.to_json()), lambda_context, deps)
    # Then it is acknowledged and nothing is published
    assert failed_ids(response) == []
    assert error_stack.faults.calls == []


def test_a_callback_claimed_by_another_invocation_is_retried_later(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given another invocation that is publishing the same callback right now
    record = make_callback("30006")
    other = PublishLedger(
        DynamoDBPersistenceLayer(table_name=error_stack.idempotency_table, boto3_client=error_stack.dynamodb),
        dedupe_window_seconds=3600,
    )
    assert other.claim(record.event_id, remaining_time_in_millis=30_000) is Claim.CLAIMED
    event = make_sqs_event(record.to_json())
    # When this invocation gets a copy of it
    response = error_router_handler.handle(event, lambda_context, deps)
    # Then it publishes nothing and asks SQS to retry it
    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert error_stack.faults.calls == []
    # When the other invocation has published it
    other.confirm(record.event_id, "bus-event-1")
    # Then the retry is acknowledged as a duplicate
    assert failed_ids(error_router_handler.handle(event, lambda_context, deps)) == []
    assert error_stack.faults.calls == []


def test_a_ledger_failure_fails_only_its_callback(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given DynamoDB refusing the first claim of the batch
    first, second = make_callback("30006", sid="SM1"), make_callback("30006", sid="SM2")
    refused: list[bool] = []

    def refuse_once(**_: Any) -> None:
        if not refused:
            refused.append(True)
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "PutItem")

    error_stack.dynamodb.meta.events.register("before-call.dynamodb.PutItem", refuse_once)
    event = make_sqs_event(first.to_json(), second.to_json())
    # When the router handles the batch
    response = error_router_handler.handle(event, lambda_context, deps)
    # Then only the first callback retries; the second is published
    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert error_stack.faults.sent_event_ids() == [second.event_id]


def test_many_callbacks_are_sent_in_calls_of_at_most_ten(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    records = [make_callback("30008", sid=f"SM{index:032d}") for index in range(25)]
    response = error_router_handler.handle(
        make_sqs_event(*(record.to_json() for record in records)), lambda_context, deps
    )
    assert failed_ids(response) == []
    assert [len(call) for call in error_stack.faults.calls] == [10, 10, 5]


def test_large_callbacks_are_split_by_size_and_an_oversized_one_fails_alone(
    error_stack: Any, deps: Any, lambda_context: Any, make_callback: Any, make_sqs_event: Any
) -> None:
    # Given callbacks of about 100 KB (two fit a call) and one too large for any call
    large = [make_callback("30008", sid=f"SM{index:032d}", Note="x" * 100_000) for index in range(3)]
    oversized = make_callback("30008", sid="SM-huge", Note="x" * 270_000)
    event = make_sqs_event(*(record.to_json() for record in [*large, oversized]))
    # When the router handles them
    response = error_router_handler.handle(event, lambda_context, deps)
    # Then the large ones go in calls under 256 KB and only the oversized one is reported
    assert [len(call) for call in error_stack.faults.calls] == [2, 1]
    assert failed_ids(response) == [event["Records"][3]["messageId"]]
    assert len(error_stack.drain(error_stack.alerts_queue_url)) == 3


def test_handler_entry_point_reads_its_settings_from_the_environment(
    error_stack: Any, lambda_context: Any, sample_event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the environment the template sets and the sample SQS event
    monkeypatch.setenv("EVENT_BUS_NAME", error_stack.bus_name)
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", error_stack.idempotency_table)
    monkeypatch.setenv("EVENT_SOURCE", DEFAULT_EVENT_SOURCE)
    monkeypatch.setenv("EVENT_DETAIL_TYPE", DEFAULT_DETAIL_TYPE)
    sample = sample_event("router-sqs-error-callbacks.json")
    error_router_handler.default_dependencies.cache_clear()
    try:
        # When the Lambda entry point runs
        response = error_router_handler.handler(sample, lambda_context)
    finally:
        error_router_handler.default_dependencies.cache_clear()
    # Then both distinct callbacks alert once (the third record is a duplicate) and one number is flagged
    assert failed_ids(response) == []
    records = [CallbackRecord.from_json(message["body"]) for message in sample["Records"]]
    assert len({record.event_id for record in records}) == 2
    assert len(error_stack.drain(error_stack.alerts_queue_url)) == 2
    assert [event["detail"]["ErrorCode"] for event in error_stack.drain(error_stack.flag_queue_url)] == [
        "30006"
    ]
