"""What the validator decides for the AWS behaviours its docs leave open, and the reasons it gives.

Each test builds the SQS message attributes API Gateway would forward under
one reading of an undocumented behaviour (a base64 body, raw query values, a
custom domain's base path) and checks the official library still decides.
"""

from __future__ import annotations

import base64
from urllib.parse import quote, unquote

from status_callbacks.domain.signature import TokenRole
from status_callbacks.domain.tokens import AuthTokens
from status_callbacks.domain.validation import (
    Accepted,
    Destination,
    Rejection,
    RejectionReason,
    decode_body,
    validate_callback,
)
from tests.support.signing import (
    TEST_AUTH_TOKEN,
    form_body,
    message_status_params,
    sign,
)

API_DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
DESTINATION = Destination.of(API_DOMAIN, "POST /twilio,POST /twilio-params")
TOKENS = AuthTokens(primary=TEST_AUTH_TOKEN)
RECEIVED_AT = 1_767_225_600_000


def attributes(
    signature: str | None,
    *,
    domain: str = API_DOMAIN,
    path: str = "/twilio",
    route: str | None = "POST /twilio",
    query: tuple[tuple[str, str], ...] = (),
) -> dict[str, dict[str, str]]:
    forwarded = {
        "Signature": {"stringValue": f"={signature or ''}"},
        "Domain": {"stringValue": f"={domain}"},
        "Path": {"stringValue": f"={path}"},
        "SourceIp": {"stringValue": "=54.172.60.1"},
    }
    if route is not None:
        forwarded["Route"] = {"stringValue": f"={route}"}
    for position, (name, value) in enumerate(query, start=1):
        forwarded[f"Query.{position}.{name}"] = {"stringValue": f"={value}"}
    return forwarded


def validate(body: str, forwarded: dict, public_base_url: str | None = None) -> Accepted | Rejection:
    return validate_callback(body, forwarded, TOKENS, RECEIVED_AT, public_base_url, destination=DESTINATION)


def test_a_form_body_queued_base64_encoded_is_decoded_and_validated() -> None:
    # Given a callback whose form body API Gateway queued base64-encoded (as it does for Lambda proxies)
    params = message_status_params()
    url = f"https://{API_DOMAIN}/twilio"
    encoded = base64.b64encode(form_body(params).encode()).decode()

    # When it is validated
    outcome = validate(encoded, attributes(sign(url, params)))

    # Then the signature is checked over the decoded parameters, and the decoding is reported
    assert isinstance(outcome, Accepted)
    assert dict(outcome.record.twilio) == params
    assert outcome.body_was_base64


def test_a_plain_form_body_is_never_mistaken_for_base64() -> None:
    # A form always has "=" inside and "&" between parameters; tiny bodies that happen to be base64
    # but do not decode to a form are left alone
    assert decode_body("AccountSid=AC1&MessageStatus=sent") == ("AccountSid=AC1&MessageStatus=sent", False)
    assert decode_body("abcd") == ("abcd", False)
    assert decode_body(base64.b64encode(b"\xff\xfe").decode()) == ("//4=", False)


def test_query_values_forwarded_raw_validate_and_are_reported_as_raw() -> None:
    # Given a StatusCallback URL with percent-encoded values, forwarded exactly as Twilio sent them
    written = f"id={quote('order 42/ü', safe='')}&category={quote('a+b', safe='')}"
    url = f"https://{API_DOMAIN}/twilio-params?{written}"
    params = message_status_params()
    raw = tuple(pair.split("=", 1) for pair in written.split("&"))
    forwarded = attributes(sign(url, params), path="/twilio-params", route="POST /twilio-params", query=raw)

    # When it is validated
    outcome = validate(form_body(params), forwarded)

    # Then it is accepted with the values the user meant, and the raw reading is what matched
    assert isinstance(outcome, Accepted)
    assert dict(outcome.record.custom) == {"id": "order 42/ü", "category": "a+b"}
    assert outcome.query_was_raw


def test_query_values_forwarded_decoded_are_not_reported_as_raw() -> None:
    written = f"id={quote('order 42/ü', safe='')}&category=x"
    url = f"https://{API_DOMAIN}/twilio-params?{written}"
    params = message_status_params()
    decoded = tuple((name, unquote(value)) for name, value in (p.split("=", 1) for p in written.split("&")))
    forwarded = attributes(
        sign(url, params), path="/twilio-params", route="POST /twilio-params", query=decoded
    )

    outcome = validate(form_body(params), forwarded)

    assert isinstance(outcome, Accepted)
    assert not outcome.query_was_raw


def test_a_custom_domain_with_a_base_path_validates_under_public_base_url() -> None:
    # Given Twilio calls https://api.example.com/hooks/twilio: a custom domain whose API mapping is "hooks"
    params = message_status_params()
    signature = sign("https://api.example.com/hooks/twilio", params)
    forwarded = attributes(signature, domain="api.example.com", path="/hooks/twilio", route="POST /twilio")

    # When PublicBaseUrl names the domain and the base path
    outcome = validate(form_body(params), forwarded, public_base_url="https://api.example.com/hooks")

    # Then it validates, and the record's route is the route, not the mapped path
    assert isinstance(outcome, Accepted)
    assert outcome.record.route == "/twilio"


def test_a_custom_domain_without_public_base_url_is_rejected_with_the_url_to_set() -> None:
    # Given the same request, with PublicBaseUrl left empty
    params = message_status_params()
    signature = sign("https://api.example.com/hooks/twilio", params)
    forwarded = attributes(signature, domain="api.example.com", path="/hooks/twilio", route="POST /twilio")

    outcome = validate(form_body(params), forwarded)

    # Then the reason says which base URL Twilio signed for
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.PUBLIC_BASE_URL_MISMATCH
    assert "https://api.example.com/hooks/twilio" in outcome.detail


def test_a_custom_domain_without_a_base_path_and_without_public_base_url_names_the_url_to_set() -> None:
    # Given Twilio calls https://hooks.example.com/twilio (a custom domain, empty mapping path)
    params = message_status_params()
    signature = sign("https://hooks.example.com/twilio", params)
    forwarded = attributes(signature, domain="hooks.example.com", path="/twilio", route="POST /twilio")

    outcome = validate(form_body(params), forwarded)

    # Then it is not mistaken for probing: the reason names the base URL Twilio signed for
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.PUBLIC_BASE_URL_MISMATCH
    assert "signed for https://hooks.example.com/twilio" in outcome.detail


def test_a_public_base_url_twilio_does_not_call_is_named_as_the_cause() -> None:
    # Given Twilio calls the execute-api URL while the stack's PublicBaseUrl names a custom domain
    params = message_status_params()
    signature = sign(f"https://{API_DOMAIN}/twilio", params)

    outcome = validate(form_body(params), attributes(signature), public_base_url="https://hooks.example.com")

    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.PUBLIC_BASE_URL_MISMATCH
    assert "PublicBaseUrl is https://hooks.example.com" in outcome.detail


def test_a_wrong_token_is_an_invalid_signature_and_a_non_callback_is_said_to_be_one() -> None:
    params = message_status_params()
    url = f"https://{API_DOMAIN}/twilio"
    wrong = validate(form_body(params), attributes(sign(url, params, "another-token")))
    probe = validate("q=1&w=2", attributes(sign(url, {"q": "1", "w": "2"}, "another-token")))

    assert isinstance(wrong, Rejection) and wrong.reason is RejectionReason.INVALID_SIGNATURE
    assert isinstance(probe, Rejection) and probe.reason is RejectionReason.NOT_TWILIO_CALLBACK


def test_a_callback_signed_with_the_secondary_token_is_accepted_and_says_so() -> None:
    params = message_status_params()
    url = f"https://{API_DOMAIN}/twilio"
    tokens = AuthTokens(primary="the-new-token", secondary=TEST_AUTH_TOKEN)

    outcome = validate_callback(
        form_body(params), attributes(sign(url, params)), tokens, RECEIVED_AT, destination=DESTINATION
    )

    assert isinstance(outcome, Accepted)
    assert outcome.token is TokenRole.SECONDARY


def test_a_message_queued_before_the_route_was_forwarded_still_validates() -> None:
    # Given a message from before api.yaml forwarded Route (redriven from a dead-letter queue)
    params = message_status_params()
    forwarded = attributes(sign(f"https://{API_DOMAIN}/twilio", params), route=None)

    outcome = validate(form_body(params), forwarded)

    assert isinstance(outcome, Accepted)


def test_every_reason_points_at_a_fix() -> None:
    for reason in RejectionReason:
        assert reason.remedy, reason
