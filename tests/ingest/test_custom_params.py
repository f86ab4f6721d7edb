"""/twilio-params: custom query values survive signing, API Gateway decoding and URL rebuilding."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, quote_plus, urlencode

import pytest

from tests.support.api_gateway import API_BASE_URL
from tests.support.signing import message_status_params, signed_callback, unsigned_callback

PARAMS_URL = f"{API_BASE_URL}/twilio-params"

# Every character the contract names: space, &, =, +, ' and non-ASCII.
AWKWARD_VALUES = {"id": "order 42 & co=1+1", "category": "O'Brien café ☕"}


def _encoder(quote_via: Callable[..., str], safe: str = "") -> Callable[[dict[str, str]], str]:
    return lambda params: urlencode(params, safe=safe, quote_via=quote_via)


# How a user plausibly writes the query string of their StatusCallback URL.
URL_ENCODINGS = {
    "percent-20": _encoder(quote),  # RFC 3986, e.g. Python quote / most SDKs
    "plus-for-space": _encoder(quote_plus),  # HTML forms, Python urlencode default, Java URLEncoder
    "encodeURIComponent": _encoder(quote, safe="!'()*"),  # JavaScript
}


@pytest.mark.parametrize("plus_as_space", [False, True], ids=["gateway-keeps-plus", "gateway-decodes-plus"])
@pytest.mark.parametrize("encoding", list(URL_ENCODINGS))
@pytest.mark.parametrize(
    "custom",
    [
        pytest.param(AWKWARD_VALUES, id="id-and-category"),
        pytest.param(
            {"category": AWKWARD_VALUES["category"], "id": AWKWARD_VALUES["id"]}, id="swapped-order"
        ),
        pytest.param({"id": "+15555550123"}, id="leading-plus-only-id"),
    ],
)
def test_awkward_custom_values_validate_however_the_url_was_written(
    ingest_stack, encoding, plus_as_space, custom
):
    # Given a StatusCallback URL with custom values written in one common encoding, signed by Twilio
    url = f"{PARAMS_URL}?{URL_ENCODINGS[encoding](custom)}"
    request = signed_callback(url, message_status_params())
    # When API Gateway decodes the query and forwards it, and the validator rebuilds the URL
    _, response = ingest_stack.deliver([request], plus_as_space=plus_as_space)
    # Then the signature validates; the record carries the values the user meant, apart from Twilio's
    assert response["batchItemFailures"] == []
    [record] = ingest_stack.published()
    assert dict(record.custom) == custom
    assert record.route == "/twilio-params"
    assert "id" not in record.twilio


def test_values_written_with_percent_encoding_arrive_exactly(ingest_stack):
    # Given a URL written with %20 for spaces
    url = f"{PARAMS_URL}?{URL_ENCODINGS['percent-20'](AWKWARD_VALUES)}"
    # When it is delivered
    ingest_stack.deliver([signed_callback(url, message_status_params())])
    # Then the record holds the user's values character for character
    [record] = ingest_stack.published()
    assert dict(record.custom) == AWKWARD_VALUES


def test_missing_custom_params_are_tolerated(ingest_stack):
    # Given /twilio-params called with only one of the declared parameters, and with none
    only_id = signed_callback(f"{PARAMS_URL}?id=42", message_status_params())
    none = signed_callback(PARAMS_URL, message_status_params(MessageSid="SM" + "5" * 32))
    # When both are delivered
    _, response = ingest_stack.deliver([only_id, none])
    # Then both validate; absent parameters are simply absent from `custom`
    assert response["batchItemFailures"] == []
    customs = sorted((dict(r.custom) for r in ingest_stack.published()), key=len)
    assert customs == [{}, {"id": "42"}]


def test_custom_value_cannot_be_changed_without_breaking_the_signature(ingest_stack):
    # Given a request signed for id=42 whose query an attacker changed to id=43
    signed = signed_callback(f"{PARAMS_URL}?id=42&category=a", message_status_params())
    tampered = type(signed)(f"{PARAMS_URL}?id=43&category=a", signed.body, signed.headers)
    # When it is delivered
    _, response = ingest_stack.deliver([tampered])
    # Then it is rejected (final), not published
    assert response["batchItemFailures"] == []
    assert ingest_stack.published() == []


def test_undeclared_query_parameter_is_not_forwarded(ingest_stack):
    # Given Twilio signed a URL with a parameter api.yaml does not declare
    request = signed_callback(f"{PARAMS_URL}?id=42&campaign=spring", message_status_params())
    # When it is delivered
    _, response = ingest_stack.deliver([request])
    # Then API Gateway never forwards `campaign`, the URL cannot be rebuilt and the callback is rejected
    assert response["batchItemFailures"] == []
    assert ingest_stack.published() == []


def test_unsigned_request_on_params_route_is_rejected(ingest_stack):
    # Given a POST without X-Twilio-Signature
    _, response = ingest_stack.deliver([unsigned_callback(f"{PARAMS_URL}?id=1", "MessageSid=SM1")])
    # Then it is dropped, not retried
    assert response["batchItemFailures"] == []
    assert ingest_stack.published() == []
