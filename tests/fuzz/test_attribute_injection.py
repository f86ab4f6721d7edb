"""Known gap: a custom query value can rewrite the request data API Gateway forwards.

api.yaml builds the SQS MessageAttributes by substituting header and query
values into a JSON template, unescaped. A value holding ``"`` and ``}`` can
close its own attribute and add keys; the declared query parameters come
last in the template, so keys injected through them replace ``Domain`` and
``Path`` (JSON parsers keep the last duplicate key, as Python's does). The
validator then checks the signature against a URL the attacker chose.

These tests state the behaviour the pipeline must have and are marked
``xfail(strict=True)`` until it does: when a fix lands they pass, strict
xfail turns that into a failure, and the marker must be removed. They run
the real mapping from api.yaml (``tests.support.api_gateway``) and the real
validator, without ``PublicBaseUrl`` (the template's default), so the
validator rebuilds URLs from the forwarded ``Domain``.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from status_callbacks.record import CallbackRecord
from status_callbacks.tokens import AuthTokens
from status_callbacks.validation import Rejection, validate_callback
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
GAP = (
    "api.yaml substitutes query values into the MessageAttributes JSON unescaped, so a query value can "
    "replace Domain/Path; the validator trusts them (see tests/reliability/README-section.md, findings)"
)


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
    return validate_callback(message.body, message.attributes, AuthTokens(primary=TOKEN), RECEIVED_AT)


@pytest.mark.xfail(strict=True, reason=GAP)
def test_a_request_signed_for_another_url_cannot_be_replayed_by_injecting_domain_and_path() -> None:
    # Given a request Twilio really signed, but for another webhook of the same account
    params = message_status_params("received")
    elsewhere = signed_callback("https://other.example.com/sms", params, TOKEN)
    # When someone posts it to this API with a query value that rewrites Domain and Path
    hostile = posted_with_id(elsewhere, attribute_injection(Domain="other.example.com", Path="/sms"))

    # Then it is rejected: this API never received it from Twilio
    assert isinstance(validate(hostile), Rejection)


@pytest.mark.xfail(strict=True, reason=GAP)
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
