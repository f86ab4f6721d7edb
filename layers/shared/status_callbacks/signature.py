"""Rebuild the URL Twilio signed and check `X-Twilio-Signature` against it.

API Gateway hands over the domain, the path and the *decoded* custom query
values, so the exact query string Twilio signed is gone. We re-encode it the
few ways a StatusCallback URL is plausibly written (RFC 3986 ``%20``, form
``+``, JavaScript's ``encodeURIComponent`` and a literal ``+`` kept as is) and,
for up to three parameters, in any order. Each candidate is checked with the
official ``twilio`` RequestValidator, which compares in constant time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, quote_plus

from twilio.request_validator import RequestValidator

# Query-value encoders, most common first. Each maps a decoded value back to a URL form.
_ENCODERS = (
    lambda value: quote(value, safe=""),  # RFC 3986: space as %20
    lambda value: quote_plus(value, safe=""),  # HTML form: space as +
    lambda value: quote(value, safe="!'()*"),  # JavaScript encodeURIComponent
    lambda value: quote(value, safe="+"),  # a literal + that arrived undecoded
)
_MAX_PERMUTED_PARAMS = 3


def base_url(domain: str, public_base_url: str | None = None) -> str:
    """Scheme and host (plus any path prefix) Twilio called."""
    if public_base_url:
        return public_base_url.rstrip("/")
    return f"https://{domain}"


def _orders(query: Sequence[tuple[str, str]]) -> Iterator[Sequence[tuple[str, str]]]:
    yield query
    if 1 < len(query) <= _MAX_PERMUTED_PARAMS:
        for order in itertools.permutations(query):
            if list(order) != list(query):
                yield order


def candidate_urls(
    domain: str,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    public_base_url: str | None = None,
) -> list[str]:
    """Every plausible URL Twilio could have signed for this request, without repeats."""
    root = base_url(domain, public_base_url) + path
    if not query:
        return [root]
    urls: list[str] = []
    for order in _orders(query):
        for encode in _ENCODERS:
            query_string = "&".join(f"{name}={encode(value)}" for name, value in order)
            url = f"{root}?{query_string}"
            if url not in urls:
                urls.append(url)
    return urls


def is_valid_signature(
    signature: str | None,
    urls: Iterable[str],
    params: Mapping[str, str],
    tokens: Iterable[str],
) -> bool:
    """True when any token signed any candidate URL with these form parameters."""
    if not signature:
        return False
    url_list = list(urls)
    for token in tokens:
        validator = RequestValidator(token)
        for url in url_list:
            if validator.validate(url, dict(params), signature):
                return True
    return False
