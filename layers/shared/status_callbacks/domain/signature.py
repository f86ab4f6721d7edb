"""Rebuild the URL Twilio signed and check `X-Twilio-Signature` against it.

API Gateway hands over the domain, the path and the custom query values, so
the exact query string Twilio signed is gone. AWS does not document whether
``${request.querystring.name}`` is substituted percent-decoded or as sent, so
both readings are tried: the value exactly as forwarded (the raw reading), and
the decoded value re-encoded the few ways a StatusCallback URL is plausibly
written (RFC 3986 ``%20``, form ``+``, JavaScript's ``encodeURIComponent`` and
a literal ``+`` kept as is) and, for up to three parameters, in any order.
Each candidate is checked with the official ``twilio`` RequestValidator, which
compares in constant time.

API Gateway percent-decodes query values but leaves ``+`` alone, so in a URL
written with ``+`` for spaces a decoded ``+`` is either a space or a literal
``+`` (sent as ``%2B``). When a request has a few such pluses, every mix of the
two is tried as well. API Gateway also forwards an absent parameter and an
empty one (``id=``) alike, so for a few empty ones both spellings are tried.

The URL that matched is the truth about what the user wrote: the custom
parameter values on the record are read back from it with form decoding.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from twilio.request_validator import RequestValidator

# Query-value encoders, most common first. Each maps a forwarded value back to a URL form.
_ENCODERS = (
    lambda value: quote(value, safe=""),  # RFC 3986: space as %20
    lambda value: quote_plus(value, safe=""),  # HTML form: space as +
    lambda value: quote(value, safe="!'()*"),  # JavaScript encodeURIComponent
    lambda value: quote(value, safe="+"),  # a literal + that arrived undecoded
    lambda value: value,  # API Gateway forwarded the value raw, exactly as Twilio sent it
)
_MAX_PERMUTED_PARAMS = 3
# Each ambiguous "+" doubles the form-encoded candidates (8 → 256 URLs, a few ms of HMACs);
# beyond this many, only the uniform encodings are tried.
_MAX_AMBIGUOUS_PLUSES = 8
# Each empty parameter doubles the candidates (absent, or written as "name=").
_MAX_OPTIONAL_EMPTY = 3


def base_url(domain: str, public_base_url: str | None = None) -> str:
    """Scheme and host (plus any path prefix) Twilio called."""
    if public_base_url:
        return public_base_url.rstrip("/")
    return f"https://{domain}"


class TokenRole(StrEnum):
    """Which of the configured auth tokens signed a callback."""

    ACCOUNT = "account"  # the subaccount's own token, keyed by its AccountSid
    PRIMARY = "primary"
    SECONDARY = "secondary"  # AUTH_TOKEN_SECONDARY, while a token is rotated


@dataclass(frozen=True)
class SignatureMatch:
    """The URL and the token a signature was computed with."""

    url: str
    token: TokenRole


def _orders(query: Sequence[tuple[str, str]]) -> Iterator[Sequence[tuple[str, str]]]:
    yield query
    if 1 < len(query) <= _MAX_PERMUTED_PARAMS:
        for order in itertools.permutations(query):
            if list(order) != list(query):
                yield order


def _spellings_of_empty_params(query: Sequence[tuple[str, str]]) -> Iterator[Sequence[tuple[str, str]]]:
    """The query with each empty parameter left out or kept as ``name=``; left out first."""
    empty = [index for index, (_, value) in enumerate(query) if not value]
    if not empty:
        yield query
        return
    if len(empty) > _MAX_OPTIONAL_EMPTY:
        yield [pair for pair in query if pair[1]]
        yield query
        return
    for kept in itertools.product((False, True), repeat=len(empty)):
        dropped = {index for index, keep in zip(empty, kept, strict=True) if not keep}
        yield [pair for index, pair in enumerate(query) if index not in dropped]


def candidate_urls(
    domain: str,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    public_base_url: str | None = None,
) -> list[str]:
    """Every plausible URL Twilio could have signed for this request, without repeats."""
    return urls_for_root(base_url(domain, public_base_url) + path, query)


def urls_for_root(root: str, query: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Every plausible URL under ``root`` (scheme, host and path) for these query values."""
    urls: list[str] = []
    for spelling in _spellings_of_empty_params(query):
        for url in _encoded_urls(root, spelling):
            if url not in urls:
                urls.append(url)
    return urls


def _encoded_urls(root: str, query: Sequence[tuple[str, str]]) -> Iterator[str]:
    if not query:
        yield root
        return
    for order in _orders(query):
        for encode in _ENCODERS:
            yield f"{root}?" + "&".join(f"{name}={encode(value)}" for name, value in order)
    for order in _orders(query):
        for query_string in _mixed_plus_query_strings(order):
            yield f"{root}?{query_string}"


_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def is_raw_reading(url: str, query: Sequence[tuple[str, str]]) -> bool:
    """True when ``url`` signs the query values exactly as forwarded, and only that reading explains it.

    Values without percent-escapes read the same raw or decoded, so they say nothing.
    """
    if not any(_PERCENT_ESCAPE.search(value) for _, value in query):
        return False
    signed = url.partition("?")[2]
    return any(
        signed == "&".join(f"{name}={value}" for name, value in spelling)
        for spelling in _spellings_of_empty_params(query)
    )


def _mixed_plus_forms(value: str) -> list[str]:
    """Form encodings of a decoded value where each "+" was a space (+) or a literal plus (%2B)."""
    first, *rest = [quote_plus(segment, safe="") for segment in value.split("+")]
    return [
        first + "".join(plus + segment for plus, segment in zip(pluses, rest, strict=True))
        for pluses in itertools.product(("+", "%2B"), repeat=len(rest))
    ]


def _mixed_plus_query_strings(query: Sequence[tuple[str, str]]) -> Iterator[str]:
    pluses = sum(value.count("+") for _, value in query)
    if not 0 < pluses <= _MAX_AMBIGUOUS_PLUSES:
        return
    names = [name for name, _ in query]
    for values in itertools.product(*(_mixed_plus_forms(value) for _, value in query)):
        yield "&".join(f"{name}={value}" for name, value in zip(names, values, strict=True))


def match_signature(
    signature: str | None,
    urls: Iterable[str],
    params: Mapping[str, str],
    tokens: Iterable[tuple[TokenRole, str]],
) -> SignatureMatch | None:
    """The candidate URL, and the token, that signed these form parameters, if any."""
    if not signature:
        return None
    url_list = list(urls)
    for role, token in tokens:
        validator = RequestValidator(token)
        for url in url_list:
            try:
                valid = validator.validate(url, dict(params), signature)
            except ValueError:
                # The library parses the URL (its port, for one); a forwarded domain an attacker
                # wrote can be unparseable, and no such URL was signed.
                continue
            if valid:
                return SignatureMatch(url, role)
    return None


def matching_url(
    signature: str | None,
    urls: Iterable[str],
    params: Mapping[str, str],
    tokens: Iterable[str],
) -> str | None:
    """The candidate URL some token signed with these form parameters, if any."""
    match = match_signature(signature, urls, params, ((TokenRole.PRIMARY, token) for token in tokens))
    return match.url if match else None


def is_valid_signature(
    signature: str | None,
    urls: Iterable[str],
    params: Mapping[str, str],
    tokens: Iterable[str],
) -> bool:
    """True when any token signed any candidate URL with these form parameters."""
    return matching_url(signature, urls, params, tokens) is not None


def query_params_of(url: str) -> dict[str, str]:
    """The custom parameters as the signed URL spells them, form-decoded (``+`` is a space)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
