"""The callback record contract: verbatim parameters, custom params apart, stable ids."""

from __future__ import annotations

import json

import pytest

from status_callbacks.domain.record import (
    UNKNOWN_PRODUCT,
    CallbackRecord,
    MalformedBodyError,
    build_record,
    error_code_of,
    message_attributes,
    parse_form_body,
)

MESSAGE = {
    "AccountSid": "AC" + "a" * 32,
    "MessageSid": "SM" + "b" * 32,
    "SmsSid": "SM" + "b" * 32,
    "MessageStatus": "undelivered",
    "SmsStatus": "undelivered",
    "ErrorCode": "30006",
    "To": "+15555550100",
    "From": "+15555550199",
}


def test_message_record_envelope_and_verbatim_params():
    # Given a message callback with custom params
    custom = {"id": "order 42", "category": "alerts"}
    # When it is normalised
    record = build_record(MESSAGE, custom, "/twilio-params", received_at=1_700_000_000_123)
    # Then the envelope is filled and nothing Twilio sent is changed
    assert record.product == "message"
    assert record.sid == MESSAGE["MessageSid"]
    assert record.status == "undelivered"
    assert record.account_sid == MESSAGE["AccountSid"]
    assert record.error_code == "30006"
    assert record.received_at == 1_700_000_000_123
    assert record.twilio == MESSAGE
    assert record.custom == custom


def test_custom_params_cannot_clobber_twilio_params():
    # Given a custom param named like a Twilio param
    record = build_record(MESSAGE, {"MessageStatus": "forged"}, "/twilio-params", 1)
    # Then both survive, each in its own namespace
    assert record.twilio["MessageStatus"] == "undelivered"
    assert record.custom["MessageStatus"] == "forged"
    assert record.status == "undelivered"


def test_event_id_is_stable_across_deliveries_and_sensitive_to_content():
    first = build_record(MESSAGE, {"id": "1"}, "/twilio-params", received_at=1)
    retried = build_record(dict(reversed(list(MESSAGE.items()))), {"id": "1"}, "/twilio-params", 99)
    other = build_record({**MESSAGE, "MessageStatus": "delivered"}, {"id": "1"}, "/twilio-params", 1)
    assert first.event_id == retried.event_id
    assert first.event_id != other.event_id
    assert len(first.event_id) == 32


@pytest.mark.parametrize(
    ("params", "product", "sid", "status"),
    [
        ({"CallSid": "CA1", "CallStatus": "completed", "SequenceNumber": "3"}, "call", "CA1", "completed"),
        (
            {"CallSid": "CA1", "RecordingSid": "RE1", "RecordingStatus": "completed"},
            "recording",
            "RE1",
            "completed",
        ),
        ({"SmsSid": "SM1", "SmsStatus": "sent"}, "message", "SM1", "sent"),
        (
            {"ConferenceSid": "CF1", "CallSid": "CA1", "StatusCallbackEvent": "participant-join"},
            "conference",
            "CF1",
            "participant-join",
        ),
    ],
)
def test_products_are_identified_most_specific_first(params, product, sid, status):
    record = build_record(params, {}, "/twilio", 1)
    assert (record.product, record.sid, record.status) == (product, sid, status)


def test_unknown_product_is_kept_with_empty_envelope():
    record = build_record({"Foo": "bar", "AccountSid": "AC1"}, {}, "/twilio", 1)
    assert record.product == UNKNOWN_PRODUCT
    assert record.sid is None and record.status is None and record.error_code is None
    assert record.twilio == {"Foo": "bar", "AccountSid": "AC1"}


def test_record_round_trips_through_json():
    record = build_record(MESSAGE, {"id": "é & ' +"}, "/twilio-params", 5)
    assert CallbackRecord.from_json(record.to_json()) == record
    assert set(json.loads(record.to_json())) == {
        "schema_version",
        "event_id",
        "product",
        "sid",
        "status",
        "account_sid",
        "error_code",
        "received_at",
        "route",
        "twilio",
        "custom",
    }


@pytest.mark.parametrize(
    ("raw", "expected"), [("30006", "30006"), ("", None), ("0", None), (" 21610 ", "21610")]
)
def test_error_code(raw, expected):
    assert error_code_of({"ErrorCode": raw}) == expected


def test_message_attributes_only_carry_error_code_when_present():
    healthy = build_record({**MESSAGE, "ErrorCode": "", "MessageStatus": "delivered"}, {}, "/twilio", 1)
    failed = build_record(MESSAGE, {}, "/twilio", 1)
    assert "ErrorCode" not in message_attributes(healthy)
    assert message_attributes(healthy)["Status"]["StringValue"] == "delivered"
    assert message_attributes(failed)["ErrorCode"] == {"DataType": "String", "StringValue": "30006"}


def test_form_body_parses_values_verbatim():
    params = parse_form_body("To=%2B15555550100&Body=a+b%26c&Empty=")
    assert params == {"To": "+15555550100", "Body": "a b&c", "Empty": ""}


@pytest.mark.parametrize(
    "body",
    ["", "   ", "no-equals-sign", "A=1&A=2", '{"MessageSid": "SM1"}', "A=%ff%fe"],
)
def test_malformed_bodies_are_rejected(body):
    with pytest.raises(MalformedBodyError):
        parse_form_body(body)
