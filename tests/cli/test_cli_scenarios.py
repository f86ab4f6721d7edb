"""Scenario generation: realistic lifecycles, seeded, signed over the exact URL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from pipeline_harness.scenarios import (
    FAILED_CODES,
    SIGNATURE_HEADER,
    UNDELIVERED_CODES,
    Kind,
    Product,
    ScenarioOptions,
    Signing,
    callback_url,
    encode_query,
    generate,
    sign,
)
from status_callbacks.domain.lifecycle import lifecycle_position
from status_callbacks.domain.record import build_record, parse_form_body
from status_callbacks.domain.signature import candidate_urls, is_valid_signature

TOKEN = "0123456789abcdef0123456789abcdef"
BASE = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SID = re.compile(r"^(SM|CA|AC|MG)[0-9a-f]{32}$")
FICTIONAL_NUMBER = re.compile(r"^\+1555\d{7}$")


def lifecycles(**options):
    return list(generate(ScenarioOptions(start=START, **options)))


def statuses(lifecycle):
    return [callback.status for callback in lifecycle.callbacks]


def test_message_lifecycle_is_queued_sent_delivered_in_order():
    # Given a scenario of healthy messages
    # When it is generated
    generated = lifecycles(count=5, seed=1)
    # Then each message reports queued, sent, delivered in that order, with Twilio's parameters
    assert len(generated) == 5
    for lifecycle in generated:
        assert lifecycle.product is Product.MESSAGE
        assert statuses(lifecycle) == ["queued", "sent", "delivered"]
        for callback in lifecycle.callbacks:
            form = callback.form
            assert form["MessageSid"] == form["SmsSid"] == lifecycle.sid
            assert form["MessageStatus"] == form["SmsStatus"] == callback.status
            assert form["ApiVersion"] == "2010-04-01"
            assert "ErrorCode" not in form
            assert SID.match(form["AccountSid"]) and SID.match(form["MessageSid"])
            assert FICTIONAL_NUMBER.match(form["To"]) and FICTIONAL_NUMBER.match(form["From"])


def test_failed_messages_end_with_a_code_matching_their_status():
    # Given every message fails with one of the default codes
    generated = lifecycles(count=60, seed=2, error_rate=1.0)
    # Then undelivered comes after sent with a carrier code, failed straight after queued
    for lifecycle in generated:
        last = lifecycle.callbacks[-1]
        if last.status == "failed":
            assert statuses(lifecycle) == ["queued", "failed"]
            assert last.error_code in FAILED_CODES
        else:
            assert statuses(lifecycle) == ["queued", "sent", "undelivered"]
            assert last.error_code in UNDELIVERED_CODES
        assert all(callback.error_code is None for callback in lifecycle.callbacks[:-1])
    assert {lifecycle.callbacks[-1].status for lifecycle in generated} == {"failed", "undelivered"}


def test_error_codes_can_be_chosen():
    generated = lifecycles(count=10, seed=3, error_rate=1.0, error_codes=("30007",))
    assert {lifecycle.callbacks[-1].error_code for lifecycle in generated} == {"30007"}


def test_error_rate_is_roughly_honoured():
    generated = lifecycles(count=1000, seed=4, error_rate=0.1)
    failed = sum(lifecycle.callbacks[-1].error_code is not None for lifecycle in generated)
    assert 60 <= failed <= 140


def test_call_progress_events_carry_increasing_sequence_numbers():
    # Given a scenario of calls
    generated = lifecycles(count=20, seed=5, kind=Kind.CALL, error_rate=0.3)
    for lifecycle in generated:
        assert lifecycle.product is Product.CALL
        forms = [callback.form for callback in lifecycle.callbacks]
        # Then each call progresses initiated, ringing, then answered and completed (or busy/no-answer)
        assert [form["SequenceNumber"] for form in forms] == [str(n) for n in range(len(forms))]
        assert statuses(lifecycle)[:2] == ["initiated", "ringing"]
        assert statuses(lifecycle)[2:] in (["in-progress", "completed"], ["busy"], ["no-answer"])
        assert all(form["CallSid"] == lifecycle.sid and form["CallStatus"] for form in forms)
        assert all(form["CallbackSource"] == "call-progress-events" for form in forms)
        final = forms[-1]
        assert "CallDuration" in final
        if final["CallStatus"] == "completed":
            assert int(final["CallDuration"]) > 0 and final["SipResponseCode"] == "200"
    assert any(statuses(lifecycle)[-1] != "completed" for lifecycle in generated)


def test_mixed_scenario_has_both_products():
    generated = lifecycles(count=50, seed=6, kind=Kind.MIXED)
    assert {lifecycle.product for lifecycle in generated} == {Product.MESSAGE, Product.CALL}


def test_same_seed_same_scenario_and_another_seed_differs():
    # Given two generations with one seed and one with another
    options = {
        "count": 30,
        "seed": 7,
        "kind": Kind.MIXED,
        "error_rate": 0.2,
        "out_of_order": 0.5,
        "duplicates": 0.2,
    }
    first, second = lifecycles(**options), lifecycles(**options)
    other = lifecycles(**{**options, "seed": 8})
    # Then the same seed gives identical callbacks, order and signatures; another seed does not
    assert first == second
    assert [sign(c, BASE, TOKEN) for lc in first for c in lc.callbacks] == [
        sign(c, BASE, TOKEN) for lc in second for c in lc.callbacks
    ]
    assert [lc.sid for lc in first] != [lc.sid for lc in other]


def test_out_of_order_lifecycles_arrive_shuffled_but_complete():
    # Given every lifecycle is delivered out of order
    generated = lifecycles(count=40, seed=9, kind=Kind.MIXED, out_of_order=1.0)
    in_order = lifecycles(count=40, seed=9, kind=Kind.MIXED)
    for shuffled, ordered in zip(generated, in_order, strict=True):
        # Then the arrival order is not the lifecycle order, yet the same callbacks arrive
        assert shuffled.out_of_order
        assert sorted(statuses(shuffled)) == sorted(statuses(ordered))
        positions = [lifecycle_position(c.product.value, c.status, c.form) for c in shuffled.callbacks]
        assert positions != sorted(positions)
        # And the final status is still the lifecycle's furthest one
        assert shuffled.final_status == ordered.callbacks[-1].status


def test_duplicates_repeat_a_callback_identically():
    # Given every callback is retried once by "Twilio"
    generated = lifecycles(count=5, seed=10, duplicates=1.0)
    for lifecycle in generated:
        firsts = lifecycle.callbacks[0::2]
        repeats = lifecycle.callbacks[1::2]
        # Then each callback is followed by a byte-identical request
        assert [c.attempt for c in firsts] == [1] * len(firsts)
        assert [c.attempt for c in repeats] == [2] * len(repeats)
        for first, repeat in zip(firsts, repeats, strict=True):
            a, b = sign(first, BASE, TOKEN), sign(repeat, BASE, TOKEN)
            assert (a.url, a.body, dict(a.headers)) == (b.url, b.body, dict(b.headers))
            # And the record the validator builds has the same event id, so it is stored once
            record_a = build_record(first.form, dict(first.query), first.route, 1)
            record_b = build_record(repeat.form, dict(repeat.query), repeat.route, 2)
            assert record_a.event_id == record_b.event_id


def test_signature_verifies_over_the_exact_url_with_the_official_validator():
    # Given a healthy message callback
    callback = lifecycles(count=1, seed=11)[0].callbacks[0]
    # When it is signed
    request = sign(callback, BASE, TOKEN)
    # Then Twilio's RequestValidator accepts it over the exact URL and form, and rejects other tokens
    assert request.url == f"{BASE}/twilio"
    form = parse_form_body(request.body)
    assert form == callback.form
    assert RequestValidator(TOKEN).validate(request.url, form, request.headers[SIGNATURE_HEADER])
    assert not RequestValidator("another-token").validate(
        request.url, form, request.headers[SIGNATURE_HEADER]
    )
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    "value",
    ["alerts & reminders", "O'Brien", "2+2=4", "café résumé", "a%20b", "日本語", "50% off/today?"],
)
def test_custom_params_are_percent_encoded_and_validate_as_the_validator_rebuilds_them(value):
    # Given a /twilio-params callback whose custom value needs encoding
    options = {"count": 1, "seed": 12, "custom_params": (("id", "42 7"), ("category", value))}
    callback = lifecycles(**options)[0].callbacks[0]
    # When it is signed
    request = sign(callback, BASE, TOKEN)
    parts = urlsplit(request.url)
    # Then the URL carries standard percent-encoding (no raw space, & or + inside values)
    assert parts.path == "/twilio-params"
    assert parts.query == encode_query([("id", "42 7"), ("category", value)])
    assert " " not in request.url and parts.query.count("&") == 1 and "+" not in parts.query
    decoded = dict(parse_qsl(parts.query))
    assert decoded == {"id": "42 7", "category": value}
    form = parse_form_body(request.body)
    # And the official validator accepts it over the exact URL
    assert RequestValidator(TOKEN).validate(request.url, form, request.headers[SIGNATURE_HEADER])
    # And so does the validator Lambda's URL rebuilding from API Gateway's decoded values
    query = [(unquote(name), unquote(v)) for name, v in (pair.split("=") for pair in parts.query.split("&"))]
    urls = candidate_urls(parts.netloc, parts.path, query)
    assert is_valid_signature(request.headers[SIGNATURE_HEADER], urls, form, [TOKEN])


def test_generated_params_route_uses_values_that_need_encoding():
    generated = lifecycles(count=30, seed=13, route="/twilio-params")
    names = {tuple(name for name, _ in lc.callbacks[0].query) for lc in generated}
    assert names == {("id", "category")}
    categories = {dict(lc.callbacks[0].query)["category"] for lc in generated}
    assert any(any(ch in c for ch in "&'+é ") for c in categories)


def test_a_full_callback_url_keeps_its_query_string_as_written():
    # Given a StatusCallback URL written with its own query string (form encoding, + for space)
    callback = lifecycles(count=1, seed=14)[0].callbacks[0]
    written = f"{BASE}/twilio-params?id=order+9&category=a%2Fb"
    # When a callback is signed for it
    request = sign(callback, written, TOKEN)
    # Then the URL is exactly as written and the signature is over it
    assert request.url == written
    assert callback_url(written, callback) == written
    assert RequestValidator(TOKEN).validate(written, callback.form, request.headers[SIGNATURE_HEADER])


def test_forged_and_unsigned_callbacks():
    # Given half forged and half unsigned callbacks
    generated = lifecycles(count=40, seed=15, forged=0.5, unsigned=0.5)
    callbacks = [c for lc in generated for c in lc.callbacks]
    signings = {c.signing for c in callbacks}
    assert signings == {Signing.FORGED, Signing.UNSIGNED}
    for callback in callbacks:
        request = sign(callback, BASE, TOKEN)
        if callback.signing is Signing.UNSIGNED:
            # Then unsigned requests carry no signature header
            assert SIGNATURE_HEADER not in request.headers
        else:
            # And forged ones carry a well-formed signature that does not verify
            signature = request.headers[SIGNATURE_HEADER]
            assert len(signature) == 28
            assert not RequestValidator(TOKEN).validate(request.url, callback.form, signature)


@pytest.mark.parametrize(
    "options",
    [
        {"error_rate": 1.5},
        {"duplicates": -0.1},
        {"forged": 0.6, "unsigned": 0.6},
        {"route": "/elsewhere"},
        {"route": "/twilio", "custom_params": (("id", "1"),)},
        {"count": -1},
    ],
)
def test_impossible_options_are_refused(options):
    with pytest.raises(ValueError):
        ScenarioOptions(**options)
