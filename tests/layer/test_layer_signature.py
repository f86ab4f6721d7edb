"""URL reconstruction and signature checks with the official twilio RequestValidator."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from status_callbacks.domain.signature import candidate_urls, is_valid_signature

TOKEN = "12345"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_twilio_published_vector_validates():
    urls = candidate_urls("mycompany.com", "/myapp.php", [("foo", "1"), ("bar", "2")])
    assert is_valid_signature("0/KCTR6DLpKmkAf8muzZqo1nDgQ=", urls, VECTOR_PARAMS, [TOKEN])


def test_wrong_token_or_tampered_param_fails():
    urls = candidate_urls("mycompany.com", "/myapp.php", [("foo", "1"), ("bar", "2")])
    assert not is_valid_signature("0/KCTR6DLpKmkAf8muzZqo1nDgQ=", urls, VECTOR_PARAMS, ["other"])
    tampered = {**VECTOR_PARAMS, "Digits": "9999"}
    assert not is_valid_signature("0/KCTR6DLpKmkAf8muzZqo1nDgQ=", urls, tampered, [TOKEN])
    assert not is_valid_signature(None, urls, VECTOR_PARAMS, [TOKEN])


@pytest.mark.parametrize(
    "written_query",
    [
        "id=order%2042&category=a%26b%3Dc",
        "id=order+42&category=a%26b%3Dc",
        "id=caf%C3%A9%20%27quoted%27&category=x%2By",
        "id=it's&category=x",
        "category=second&id=first",
    ],
)
def test_user_written_urls_validate_after_api_gateway_decoding(written_query):
    # Given a StatusCallback URL as a user writes it, signed by Twilio over exactly that text
    written_url = f"https://api.example.com/twilio-params?{written_query}"
    signature = RequestValidator(TOKEN).compute_signature(written_url, VECTOR_PARAMS)
    # When API Gateway hands over decoded values (declared order id, category)
    decoded = dict(parse_qsl(urlsplit(written_url).query))
    declared = [(name, decoded[name]) for name in ("id", "category") if name in decoded]
    # Then one of the rebuilt candidates matches
    urls = candidate_urls("api.example.com", "/twilio-params", declared)
    assert is_valid_signature(signature, urls, VECTOR_PARAMS, [TOKEN])


def test_public_base_url_overrides_domain():
    signature = RequestValidator(TOKEN).compute_signature(
        "https://hooks.example.org/prod/twilio", VECTOR_PARAMS
    )
    urls = candidate_urls(
        "abc.execute-api.us-east-1.amazonaws.com", "/twilio", (), "https://hooks.example.org/prod/"
    )
    assert urls == ["https://hooks.example.org/prod/twilio"]
    assert is_valid_signature(signature, urls, VECTOR_PARAMS, [TOKEN])


def test_candidates_are_few():
    # Three params, every order, four uniform encodings, one ambiguous "+" (space or %2B)
    urls = candidate_urls("d", "/p", [("a", "x y'z+"), ("b", "é"), ("c", "&")])
    assert len(urls) == len(set(urls)) <= 6 * 4 + 6 * 2


def test_ambiguous_pluses_are_bounded():
    urls = candidate_urls("d", "/p", [("a", "+" * 20)])
    assert len(urls) <= 4


@pytest.mark.parametrize(
    ("written_query", "expected_custom"),
    [
        ("category=x", {"category": "x"}),
        ("id=&category=x", {"id": "", "category": "x"}),
        ("id=order+42&category=C%2B%2B+devs", {"id": "order 42", "category": "C++ devs"}),
        ("id=order%2042&category=a%2Bb", {"id": "order 42", "category": "a+b"}),
    ],
)
def test_custom_values_come_from_the_url_that_matched(written_query, expected_custom):
    # Given a URL as the user wrote it and the attributes API Gateway forwards for it
    from urllib.parse import unquote, urlencode

    from status_callbacks.domain.signature import query_params_of
    from status_callbacks.domain.tokens import AuthTokens
    from status_callbacks.domain.validation import validate_callback

    url = f"https://api.example.com/twilio-params?{written_query}"
    signature = RequestValidator(TOKEN).compute_signature(url, VECTOR_PARAMS)
    raw = dict(pair.split("=", 1) for pair in written_query.split("&"))
    attributes = {
        "Domain": {"stringValue": "=api.example.com"},
        "Path": {"stringValue": "=/twilio-params"},
        "Signature": {"stringValue": "=" + signature},
    }
    for position, name in enumerate(("id", "category"), start=1):
        # API Gateway percent-decodes but leaves "+" alone; absent and empty look the same
        attributes[f"Query.{position}.{name}"] = {"stringValue": "=" + unquote(raw.get(name, ""))}
    # When it is validated
    outcome = validate_callback(
        urlencode(VECTOR_PARAMS), attributes, AuthTokens(primary=TOKEN), received_at=1
    )
    # Then it is accepted and the custom values are what the user meant
    record = getattr(outcome, "record", None)
    assert getattr(record, "custom", None) == expected_custom, outcome
    assert query_params_of(url) == expected_custom
