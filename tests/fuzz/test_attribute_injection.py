"""A custom query value can rewrite the request data API Gateway forwards; the validator refuses it.

api.yaml builds the SQS MessageAttributes by substituting header and query
values into a JSON template, unescaped. A value holding ``"`` and ``}`` can
close its own attribute and add keys; the declared query parameters come
last in the template, so keys injected through them replace ``Domain``,
``Path`` and ``Route`` (JSON parsers keep the last duplicate key, as Python's
does). The validator must not then check the signature against a URL the
attacker chose: it admits only the API's own domain and declared routes, as
the handler configures it from ``API_DOMAIN`` and ``CALLBACK_ROUTES``, and
rebuilds the URL from the route, never from the forwarded path.

These tests run the real mapping from api.yaml (``tests.support.api_gateway``)
and the real validator, without ``PublicBaseUrl`` (the template's default),
so the validator rebuilds URLs from the forwarded ``Domain``.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest

from status_callbacks.domain.record import CallbackRecord
from status_callbacks.domain.tokens import AuthTokens
from status_callbacks.domain.validation import (
    Accepted,
    Destination,
    Rejection,
    RejectionReason,
    validate_callback,
)
from tests.support.api_gateway import API_BASE_URL, forward
from tests.support.signing import (
    SIGNATURE_HEADER,
    TwilioRequest,
    form_body,
    message_status_params,
    signed_callback,
)

pytestmark = pytest.mark.fuzz

TOKEN = "injection-auth-token-not-a-secret"
RECEIVED_AT = 1_767_225_600_000
# As the template configures the validator: the API's domain and api.yaml's routes.
DESTINATION = Destination.of(urlsplit(API_BASE_URL).netloc, "POST /twilio,POST /twilio-params")


def attribute_injection(**attributes: str) -> str:
    """A query value that closes its own attribute and adds these (the last one stays open)."""
    added = '"},'.join(
        f'"{name}":{{"DataType":"String","StringValue":"={value}' for name, value in attributes.items()
    )
    return '"},' + added


def posted_with_id(request: TwilioRequest, id_value: str) -> TwilioRequest:
    """The same signed request, posted to this API's /twilio-params with a hostile ``id``."""
    return TwilioRequest(
        url=f"{API_BASE_URL}/twilio-params?id={quote(id_value, safe='')}",
        body=request.body,
        headers=request.headers,
    )


def validate(request: TwilioRequest) -> CallbackRecord | Rejection:
    message = forward(request)
    outcome = validate_callback(
        message.body, message.attributes, AuthTokens(primary=TOKEN), RECEIVED_AT, destination=DESTINATION
    )
    return outcome.record if isinstance(outcome, Accepted) else outcome


def test_a_request_signed_for_another_url_cannot_be_replayed_by_injecting_domain_and_path() -> None:
    # Given a request Twilio really signed, but for another webhook of the same account
    params = message_status_params("received")
    elsewhere = signed_callback("https://other.example.com/sms", params, TOKEN)
    # When someone posts it to this API with a query value that rewrites Domain and Path
    hostile = posted_with_id(elsewhere, attribute_injection(Domain="other.example.com", Path="/sms"))

    # Then it is rejected as sent elsewhere: this API never received it from Twilio
    outcome = validate(hostile)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.UNKNOWN_DESTINATION


def test_an_injected_domain_the_url_parser_refuses_is_rejected_not_retried() -> None:
    # Given a hostile request whose query value rewrites Domain to a host with an invalid port
    request = TwilioRequest(
        url=f"{API_BASE_URL}/twilio",
        body=form_body(message_status_params()),
        headers={SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"},
    )
    hostile = posted_with_id(request, attribute_injection(Domain="example.com:99999"))

    # Then the validator rejects it (a ValueError here makes the handler retry it into the DLQ)
    assert isinstance(validate(hostile), Rejection)


def test_a_genuine_callback_with_awkward_custom_values_still_validates() -> None:
    # Given a genuine callback on /twilio-params with reserved characters in its custom values
    url = (
        f"{API_BASE_URL}/twilio-params?id={quote('order 42 & co', safe='')}&category={quote('a=b', safe='')}"
    )
    request = signed_callback(url, message_status_params(), TOKEN)

    # Then the destination check admits it and it validates with its values intact
    record = validate(request)
    assert isinstance(record, CallbackRecord)
    assert record.custom == {"id": "order 42 & co", "category": "a=b"}


def _validated_behind(public_base_url: str, request: TwilioRequest) -> CallbackRecord | Rejection:
    message = forward(request)
    outcome = validate_callback(
        message.body,
        message.attributes,
        AuthTokens(primary=TOKEN),
        RECEIVED_AT,
        public_base_url=public_base_url,
        destination=DESTINATION,
    )
    return outcome.record if isinstance(outcome, Accepted) else outcome


def test_a_route_the_api_does_not_declare_is_refused_even_with_a_public_base_url() -> None:
    # Given a request Twilio signed for https://hooks.example.com/sms (another webhook behind the same proxy)
    params = message_status_params("received")
    elsewhere = signed_callback("https://hooks.example.com/sms", params, TOKEN)
    # When a query value rewrites the forwarded Route to POST /sms, and the deployment sets PublicBaseUrl
    outcome = _validated_behind(
        "https://hooks.example.com", posted_with_id(elsewhere, attribute_injection(Route="POST /sms"))
    )

    # Then it is refused: /sms is not a route of this API
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.UNKNOWN_DESTINATION


def test_an_injected_path_does_not_change_the_url_the_signature_is_checked_against() -> None:
    # Given the same request, with only the forwarded Path rewritten to /sms
    params = message_status_params("received")
    elsewhere = signed_callback("https://hooks.example.com/sms", params, TOKEN)
    outcome = _validated_behind(
        "https://hooks.example.com", posted_with_id(elsewhere, attribute_injection(Path="/sms"))
    )

    # Then the URL is still rebuilt from the matched route (/twilio-params), so the signature fails
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.INVALID_SIGNATURE


def test_a_custom_value_holding_a_json_escape_is_altered_by_the_mapping_and_rejected_not_retried() -> None:
    # Given a genuine callback whose StatusCallback URL carries id=a\/b (percent-encoded, as Twilio sends it)
    value = "a\\/b"
    url = f"{API_BASE_URL}/twilio-params?id={quote(value, safe='')}&category=x"
    request = signed_callback(url, message_status_params(), TOKEN)

    # When API Gateway forwards it: its JSON template reads the backslash as an escape
    forwarded = forward(request).attributes["Query.1.id"]["StringValue"]
    assert forwarded == "=a/b"

    # Then the validator cannot rebuild the signed URL: a final, counted rejection (a platform
    # limit documented in the README), never a crash or a retry
    outcome = validate(request)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.INVALID_SIGNATURE
