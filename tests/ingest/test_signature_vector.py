"""Twilio's published signature example, through the library and through our URL rebuilding."""

from __future__ import annotations

from twilio.request_validator import RequestValidator

from status_callbacks.domain.signature import candidate_urls, is_valid_signature

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
EXPECTED = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_library_computes_twilios_published_signature():
    # Given Twilio's documented token, URL and parameters
    # When the official library signs them
    signature = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    # Then it is Twilio's documented signature
    assert signature == EXPECTED


def test_rebuilt_url_validates_twilios_published_signature():
    # Given what API Gateway would forward for that request: domain, path, decoded query in declared order
    urls = candidate_urls("mycompany.com", "/myapp.php", [("foo", "1"), ("bar", "2")])
    # When the validator checks the signature
    # Then it is accepted
    assert is_valid_signature(EXPECTED, urls, PARAMS, [TOKEN])


def test_rebuilt_url_validates_whatever_order_the_query_was_written_in():
    # Given the parameters declared in the other order than Twilio's URL has them
    urls = candidate_urls("mycompany.com", "/myapp.php", [("bar", "2"), ("foo", "1")])
    # Then the permutations still find the signed URL
    assert is_valid_signature(EXPECTED, urls, PARAMS, [TOKEN])


def test_any_change_breaks_the_published_signature():
    # Given the published example with one thing changed at a time
    urls = candidate_urls("mycompany.com", "/myapp.php", [("foo", "1"), ("bar", "2")])
    # Then none validates
    assert not is_valid_signature(EXPECTED, urls, {**PARAMS, "Digits": "1235"}, [TOKEN])
    assert not is_valid_signature(EXPECTED, urls, PARAMS, ["54321"])
    assert not is_valid_signature(
        EXPECTED, candidate_urls("mycompany.com", "/myapp.php", [("foo", "2"), ("bar", "2")]), PARAMS, [TOKEN]
    )
    assert not is_valid_signature(None, urls, PARAMS, [TOKEN])
