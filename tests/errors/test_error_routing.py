"""The error routing domain without AWS: table, event detail, alert text, batching, number flags."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from status_callbacks.adapters.dynamodb import from_attribute_values, to_attribute_values
from status_callbacks.adapters.events import PublishPolicy
from status_callbacks.domain.flags import (
    MAX_REMEMBERED_EVENT_IDS,
    FlagSkipReason,
    NumberFlag,
    merge_number_flag,
    number_flag_from_detail,
)
from status_callbacks.domain.record import CallbackRecord, build_record
from status_callbacks.domain.routes import (
    DEFAULT_DETAIL_TYPE,
    DEFAULT_EVENT_SOURCE,
    ROUTES,
    Action,
    EntryTooLargeError,
    EventTarget,
    NotAnErrorCallbackError,
    Severity,
    alert_text,
    chunk_entries,
    entry_size,
    error_detail,
    error_event_entry,
    route_for,
)


def error_callback(
    code: str,
    *,
    sid: str = "SM1",
    status: str = "undelivered",
    to: str = "+14155550123",
    received_at: int = 1_767_225_600_000,
) -> CallbackRecord:
    twilio = {
        "AccountSid": "AC1",
        "MessageSid": sid,
        "MessageStatus": status,
        "To": to,
        "From": "+14155550199",
    }
    if code:
        twilio["ErrorCode"] = code
    return build_record(twilio, {}, "/twilio", received_at)


class TestRoutingTable:
    def test_numbers_that_cannot_receive_messages_are_flagged(self) -> None:
        # Given the routing table
        # When we collect the codes whose actions flag the number
        flagged = {code for code, route in ROUTES.items() if Action.FLAG_NUMBER in route.actions}
        # Then exactly unreachable, unknown, landline/unreachable carrier and opted-out numbers are flagged
        assert flagged == {"30003", "30005", "30006", "21610"}

    @pytest.mark.parametrize(
        ("code", "words"),
        [
            ("30007", ("carrier", "filtered")),
            ("30032", ("toll-free", "verification")),
            ("30034", ("10dlc", "register")),
        ],
    )
    def test_filtering_and_registration_problems_are_said_plainly(
        self, code: str, words: tuple[str, ...]
    ) -> None:
        # Given a carrier filtering or sender registration code
        route = route_for(code)
        # Then its reason names the problem and asks for the registration/content check
        assert all(word in route.reason.lower() for word in words)
        assert Action.FLAG_NUMBER not in route.actions

    def test_registration_problems_are_critical(self) -> None:
        assert route_for("30032").severity is Severity.CRITICAL
        assert route_for("30034").severity is Severity.CRITICAL
        assert Action.CHECK_SENDER_REGISTRATION in route_for("30034").actions

    def test_unknown_code_gets_a_generic_reason_and_no_action(self) -> None:
        # Given a code the table does not know
        route = route_for("63016")
        # Then it still routes: generic reason pointing at Twilio's error page, nothing automatic
        assert "63016" in route.reason
        assert "twilio.com/docs/api/errors/63016" in route.reason
        assert route.actions == ()
        assert route.severity is Severity.WARNING

    def test_reasons_are_safe_to_substitute_into_the_alert_template(self) -> None:
        # EventBridge's input transformer does not escape values: a quote would break the alert.
        for route in ROUTES.values():
            assert not any(character in route.reason for character in '"\\\n\r\t')


class TestErrorDetail:
    def test_detail_keeps_the_original_contract_and_adds_enrichment(self) -> None:
        # Given an error callback record
        record = error_callback("30006")
        # When the event detail is built
        detail = error_detail(record)
        # Then ErrorCode is the code as a string, record is the record, and enrichment is additive
        assert detail["ErrorCode"] == "30006"
        assert isinstance(detail["ErrorCode"], str)
        assert detail["record"] == record.to_dict()
        assert detail["Actions"] == ["flag_number"]
        assert detail["Severity"] == "info"
        assert detail["Reason"] == route_for("30006").reason
        assert detail["Alert"] == alert_text(record, route_for("30006"))

    def test_a_record_without_error_code_has_no_error_event(self) -> None:
        with pytest.raises(NotAnErrorCallbackError):
            error_detail(error_callback(""))

    def test_entry_uses_the_configured_bus_source_and_detail_type(self) -> None:
        # Given a record received at a known instant
        record = error_callback("30007", received_at=1_767_225_601_456)
        # When its PutEvents entry is built with the defaults
        entry = error_event_entry(record, EventTarget("errors-bus"))
        # Then it carries the original contract and the callback's arrival as event time
        assert entry["EventBusName"] == "errors-bus"
        assert entry["Source"] == DEFAULT_EVENT_SOURCE == "custom.twilioStatusCallbackErrors"
        assert entry["DetailType"] == DEFAULT_DETAIL_TYPE == "errormessage"
        assert entry["Time"] == datetime(2026, 1, 1, 0, 0, 1, 456000, tzinfo=UTC)
        assert json.loads(entry["Detail"]) == error_detail(record)


class TestAlertText:
    def test_alert_names_code_reason_product_sid_and_status(self) -> None:
        record = error_callback("30007", sid="SM0000000000000000000000000000a007", status="undelivered")
        text = alert_text(record, route_for("30007"))
        assert text.startswith("[warning] Twilio error 30007 on message SM0000000000000000000000000000a007")
        assert "Account AC1" in text
        assert "(status undelivered)" in text
        assert route_for("30007").reason in text
        assert record.event_id in text

    def test_alert_never_shows_the_phone_numbers(self) -> None:
        record = error_callback("30006", to="+14155550123")
        text = alert_text(record, route_for("30006"))
        assert "+14155550123" not in text
        assert "+14155550199" not in text
        assert "4155550" not in text

    def test_alert_is_one_line_without_quotes(self) -> None:
        # Given a status with characters that would break the input transformer
        record = replace(error_callback("30008"), status='fa"il\ned\\')
        # Then the alert text keeps the words but not the characters
        text = alert_text(record, route_for("30008"))
        assert not any(character in text for character in '"\\\n')
        assert "fa il ed" in text


class TestBatching:
    def test_entry_size_counts_what_eventbridge_counts(self) -> None:
        entry = {"Source": "abc", "DetailType": "de", "Detail": '{"é":1}', "Time": object()}
        # 14 for Time + 3 + 2 + 9 bytes of UTF-8 detail
        assert entry_size(entry) == 14 + 3 + 2 + len('{"é":1}'.encode())

    @given(st.lists(st.integers(min_value=1, max_value=1000), max_size=60))
    def test_chunks_respect_count_and_size_and_keep_order(self, sizes: list[int]) -> None:
        # Given items of arbitrary sizes, none larger than the limit
        items = list(enumerate(sizes))
        # When they are chunked for PutEvents with small limits
        chunks = list(chunk_entries(items, lambda item: item[1], max_count=4, max_bytes=1000))
        # Then every chunk fits, none is empty, and nothing is lost or reordered
        assert all(0 < len(chunk) <= 4 for chunk in chunks)
        assert all(sum(size for _, size in chunk) <= 1000 for chunk in chunks)
        assert [item for chunk in chunks for item in chunk] == items

    def test_an_entry_larger_than_a_call_is_refused(self) -> None:
        with pytest.raises(EntryTooLargeError):
            list(chunk_entries([1, 2000], lambda size: size, max_bytes=1000))

    def test_backoff_grows_and_stays_bounded(self) -> None:
        policy = PublishPolicy(attempts=5, base_delay_seconds=0.1, max_delay_seconds=0.3)
        for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.3)]:
            assert ceiling / 2 <= policy.delay(attempt) <= ceiling


def _flag(event_id: str, seen_at: int, sid: str = "SM1", code: str = "30006") -> NumberFlag:
    return NumberFlag(
        phone_number="+14155550123",
        error_code=code,
        reason=route_for(code).reason,
        severity=str(route_for(code).severity),
        event_id=event_id,
        seen_at=seen_at,
        sid=sid,
        status="undelivered",
        product="message",
    )


class TestNumberFlags:
    def test_first_flag_creates_the_item(self) -> None:
        item = merge_number_flag(None, _flag("e1", 1000), now_ms=5000)
        assert item is not None
        assert item["phone_number"] == "+14155550123"
        assert item["error_code"] == "30006"
        assert item["first_seen_at"] == item["last_seen_at"] == 1000
        assert item["callback_count"] == 1
        assert item["recent_event_ids"] == ["e1"]

    def test_same_event_again_changes_nothing(self) -> None:
        item = merge_number_flag(None, _flag("e1", 1000), now_ms=5000)
        assert merge_number_flag(item, _flag("e1", 1000), now_ms=6000) is None

    def test_late_older_event_moves_first_seen_but_not_the_latest_sid(self) -> None:
        # Given a flag from a newer callback
        newer = merge_number_flag(None, _flag("e2", 2000, sid="SM-new"), now_ms=5000)
        # When an older callback's flag arrives afterwards
        merged = merge_number_flag(newer, _flag("e1", 1000, sid="SM-old"), now_ms=6000)
        # Then first seen moves back, last seen and the latest SID stay
        assert merged is not None
        assert (merged["first_seen_at"], merged["last_seen_at"]) == (1000, 2000)
        assert merged["last_sid"] == "SM-new"
        assert merged["callback_count"] == 2

    @given(
        st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=5, unique=True),
        st.data(),
    )
    def test_any_arrival_order_gives_the_same_flag(self, times: list[int], data: st.DataObject) -> None:
        # Given flags of distinct callbacks, some delivered twice
        flags = [_flag(f"e{index}", seen_at, sid=f"SM{seen_at}") for index, seen_at in enumerate(times)]
        deliveries = flags + data.draw(st.lists(st.sampled_from(flags), max_size=3))
        orders = [deliveries, deliveries[::-1]] + [data.draw(st.permutations(deliveries)) for _ in range(4)]
        results = []
        for order in orders:
            item = None
            for flag in order:
                item = merge_number_flag(item, flag, now_ms=0) or item
            assert item is not None
            results.append(item)
        # Then every order ends with the same counts, times and latest SID
        for item in results:
            assert item["callback_count"] == len(flags)
            assert item["first_seen_at"] == min(times)
            assert item["last_seen_at"] == max(times)
            assert item["last_sid"] == f"SM{max(times)}"
            assert set(item["recent_event_ids"]) == {flag.event_id for flag in flags}

    def test_remembered_event_ids_are_bounded(self) -> None:
        item = None
        for index in range(MAX_REMEMBERED_EVENT_IDS + 5):
            item = merge_number_flag(item, _flag(f"e{index}", index), now_ms=0)
        assert item is not None
        assert len(item["recent_event_ids"]) == MAX_REMEMBERED_EVENT_IDS
        assert item["callback_count"] == MAX_REMEMBERED_EVENT_IDS + 5

    def test_attribute_values_round_trip_with_whole_numbers(self) -> None:
        item = merge_number_flag(None, _flag("e1", 1_767_225_600_123), now_ms=5000)
        assert item is not None
        assert from_attribute_values(to_attribute_values(item)) == item

    @pytest.mark.parametrize(
        ("to", "expected"),
        [
            ("+14155550123", "+14155550123"),
            ("whatsapp:+14155550123", FlagSkipReason.NO_NUMBER),
            ("client:alice", FlagSkipReason.NO_NUMBER),
            ("+04155550123", FlagSkipReason.NO_NUMBER),
            ("", FlagSkipReason.NO_NUMBER),
        ],
    )
    def test_only_e164_recipients_are_flagged(self, to: str, expected: str) -> None:
        flag = number_flag_from_detail(error_detail(error_callback("30006", to=to)))
        assert (flag.phone_number if isinstance(flag, NumberFlag) else flag) == expected

    def test_events_without_the_flag_action_are_not_flagged(self) -> None:
        assert number_flag_from_detail(error_detail(error_callback("30007"))) is FlagSkipReason.NOT_FLAGGED
