"""Properties of the validator's domain under hostile input: defined outcomes, never a crash.

Each function the validator calls on attacker-controlled data either returns
its result or raises its own documented error — nothing else — and a request
is accepted only when it is the exact callback a token signed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from urllib.parse import quote, quote_plus, unquote, urlencode

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from status_callbacks.domain.forwarded import (
    DOMAIN_ATTRIBUTE,
    PATH_ATTRIBUTE,
    ROUTE_ATTRIBUTE,
    SIGNATURE_ATTRIBUTE,
    SOURCE_IP_ATTRIBUTE,
    ForwardedRequest,
    ForwardedRequestError,
    parse_forwarded_request,
)
from status_callbacks.domain.record import MalformedBodyError, parse_form_body
from status_callbacks.domain.signature import candidate_urls, matching_url
from status_callbacks.domain.tokens import AuthTokens
from status_callbacks.domain.validation import Accepted, Rejection, RejectionReason, validate_callback
from tests.fuzz.strategies import (
    ANY_TEXT,
    custom_values,
    domains,
    form_params,
    hostnames,
    param_names,
    paths,
    reserved_heavy_text,
    signatures,
    text,
)
from tests.support.signing import message_status_params, sign

pytestmark = pytest.mark.fuzz

TOKEN = "fuzz-auth-token-not-a-secret"
TOKENS = AuthTokens(primary=TOKEN)
RECEIVED_AT = 1_767_225_600_000
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Every candidate list stays small: each candidate costs two HMACs per token.
MAX_CANDIDATES = 2**3 * 6 * (4 + 2**8)


def forwarded(
    body: str,
    signature: str | None,
    domain: str,
    path: str,
    query: tuple[tuple[str, str], ...] = (),
    source_ip: str = "54.172.60.1",
) -> dict[str, dict[str, str]]:
    """SQS message attributes as api.yaml's mapping writes them (each value after a "=" marker)."""
    attributes = {
        SIGNATURE_ATTRIBUTE: {"stringValue": f"={signature or ''}", "dataType": "String"},
        DOMAIN_ATTRIBUTE: {"stringValue": f"={domain}", "dataType": "String"},
        PATH_ATTRIBUTE: {"stringValue": f"={path}", "dataType": "String"},
        ROUTE_ATTRIBUTE: {"stringValue": f"=POST {path}", "dataType": "String"},
        SOURCE_IP_ATTRIBUTE: {"stringValue": f"={source_ip}", "dataType": "String"},
    }
    for position, (name, value) in enumerate(query, start=1):
        attributes[f"Query.{position}.{name}"] = {"stringValue": f"={value}", "dataType": "String"}
    return attributes


# --- parse_form_body ---------------------------------------------------------------------------


@FUZZ
@given(form_params)
def test_a_form_body_round_trips_exactly(params: dict[str, str]) -> None:
    assert parse_form_body(urlencode(list(params.items()))) == params


@FUZZ
@given(st.one_of(text, reserved_heavy_text, st.text(st.sampled_from("%&=+;aZ09\x00 "), max_size=40)))
@example("A=1&A=2")
@example("%")
@example("=")
@example("&&")
@example("A=%FF%FE")
def test_any_body_is_parsed_or_malformed_never_a_crash(body: str) -> None:
    try:
        params = parse_form_body(body)
    except MalformedBodyError:
        return
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in params.items())


@FUZZ
@given(st.binary(min_size=1, max_size=40))
def test_percent_escaped_bytes_that_are_not_utf8_are_malformed(raw: bytes) -> None:
    body = "A=" + "".join(f"%{byte:02X}" for byte in raw)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(MalformedBodyError):
            parse_form_body(body)
    else:
        assert parse_form_body(body) == {"A": decoded}


@FUZZ
@given(form_params, st.data())
def test_a_repeated_parameter_is_malformed(params: dict[str, str], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(params)))
    pairs = [*params.items(), (name, data.draw(text))]
    with pytest.raises(MalformedBodyError):
        parse_form_body(urlencode(pairs))


# --- parse_forwarded_request -----------------------------------------------------------------------

_attribute_values = st.one_of(
    st.fixed_dictionaries({"stringValue": text, "dataType": st.just("String")}),
    st.fixed_dictionaries({"StringValue": text, "DataType": st.just("String")}),
    st.none(),
    st.integers(),
    text,
    st.lists(text, max_size=2),
    st.fixed_dictionaries({"stringValue": st.integers()}),
)
_attribute_names = st.one_of(
    st.sampled_from(
        [
            SIGNATURE_ATTRIBUTE,
            DOMAIN_ATTRIBUTE,
            PATH_ATTRIBUTE,
            SOURCE_IP_ATTRIBUTE,
            "Query.1.id",
            "Query.2.category",
        ]
    ),
    st.from_regex(r"\AQuery\.[0-9]{1,3}\.[A-Za-z0-9_-]{1,8}\Z"),
    text,
)


@FUZZ
@given(st.one_of(st.none(), text), st.dictionaries(_attribute_names, _attribute_values, max_size=8))
def test_any_message_attributes_give_a_request_or_a_missing_route_data_error(
    body: str | None, attributes: dict[str, object]
) -> None:
    try:
        request = parse_forwarded_request(body, attributes)
    except ForwardedRequestError:
        return
    assert isinstance(request, ForwardedRequest)
    assert request.domain and request.path.startswith("/")
    assert request.body == (body or "")
    # At most one query parameter per forwarded Query.<position>.<name> attribute
    declared = [name for name in attributes if isinstance(name, str) and name.startswith("Query.")]
    assert len(request.query) <= len(declared)


# --- candidate_urls ------------------------------------------------------------------------------------


def _query(names: list[str], values: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple(zip(names, values, strict=True))


_custom_names = st.lists(param_names, min_size=1, max_size=3, unique=True)


@FUZZ
@given(
    domains, paths, _custom_names, st.data(), st.one_of(st.none(), st.just("https://hooks.example.com/base"))
)
def test_candidates_are_unique_bounded_and_include_standard_percent_encoding(
    domain: str, path: str, names: list[str], data: st.DataObject, public_base_url: str | None
) -> None:
    values = [data.draw(custom_values) for _ in names]
    query = _query(names, values)

    urls = candidate_urls(domain, path, query, public_base_url)

    assert len(urls) == len(set(urls)) <= MAX_CANDIDATES
    base = public_base_url or f"https://{domain}"
    # Twilio signs the URL as written: RFC 3986 percent-encoding of every reserved character,
    # with an empty parameter written as "name=" or left out (API Gateway forwards both alike)
    written = "&".join(f"{name}={quote(value, safe='')}" for name, value in query)
    without_empty = "&".join(f"{name}={quote(value, safe='')}" for name, value in query if value)
    assert f"{base}{path}?{written}" in urls
    assert (f"{base}{path}?{without_empty}" if without_empty else f"{base}{path}") in urls


@FUZZ
@given(domains, _custom_names, st.data())
def test_candidates_include_form_encoding_with_plus_for_spaces(
    domain: str, names: list[str], data: st.DataObject
) -> None:
    values = [
        data.draw(st.text(st.one_of(st.sampled_from(" +&='"), ANY_TEXT), min_size=1, max_size=12))
        for _ in names
    ]
    assume(sum(value.count(" ") + value.count("+") for value in values) <= 8)
    written = "&".join(
        f"{name}={quote_plus(value, safe='')}" for name, value in zip(names, values, strict=True)
    )
    # API Gateway percent-decodes the query but keeps "+" as it is
    decoded = _query(names, [unquote(quote_plus(value, safe="")) for value in values])

    assert f"https://{domain}/twilio-params?{written}" in candidate_urls(domain, "/twilio-params", decoded)


@FUZZ
@given(domains, st.integers(min_value=9, max_value=200))
def test_many_ambiguous_pluses_cannot_blow_up_the_candidates(domain: str, pluses: int) -> None:
    query = (("id", "+" * pluses), ("category", " +" * pluses))

    assert len(candidate_urls(domain, "/twilio-params", query)) <= MAX_CANDIDATES


# --- validate_callback ---------------------------------------------------------------------------------


def signed_message(
    params: dict[str, str], domain: str, path: str, query: tuple[tuple[str, str], ...], token: str = TOKEN
) -> tuple[str, dict[str, dict[str, str]]]:
    """The SQS body and attributes of a callback Twilio signed for its URL written with %-encoding."""
    url = f"https://{domain}{path}"
    if query:
        url += "?" + "&".join(f"{name}={quote(value, safe='')}" for name, value in query)
    body = urlencode(list(params.items()))
    return body, forwarded(body, sign(url, params, token), domain, path, query)


_messages = st.builds(
    lambda status, extra: {**message_status_params(status), **extra},
    st.sampled_from(["queued", "sent", "delivered", "undelivered", "failed"]),
    # Extra form parameters; one may even be named like a Twilio parameter and replace it.
    st.dictionaries(param_names, text, max_size=3),
)


@FUZZ
@given(_messages, hostnames, st.lists(custom_values, min_size=2, max_size=2))
def test_a_signed_callback_is_accepted_with_every_parameter_and_custom_value_intact(
    params: dict[str, str], domain: str, values: list[str]
) -> None:
    query = _query(["id", "category"], values)
    body, attributes = signed_message(params, domain, "/twilio-params", query)

    accepted = validate_callback(body, attributes, TOKENS, RECEIVED_AT)

    assert isinstance(accepted, Accepted)
    record = accepted.record
    assert dict(record.twilio) == params
    assert dict(record.custom) == dict(query)
    # A replay is the same callback: same event id, whenever it arrives
    replayed = validate_callback(body, attributes, TOKENS, RECEIVED_AT + 86_400_000)
    assert isinstance(replayed, Accepted) and replayed.record.event_id == record.event_id


@dataclass(frozen=True)
class Request:
    """The parts of a forwarded callback an attacker can change."""

    body: str
    signature: str
    domain: str
    path: str
    query: tuple[tuple[str, str], ...]

    def attributes(self) -> dict[str, dict[str, str]]:
        return forwarded(self.body, self.signature, self.domain, self.path, self.query)


def _mutations(request: Request, values: list[str]) -> st.SearchStrategy[Request]:
    """One change to one part of the request."""

    def insert_into_body(position: int, inserted: str) -> Request:
        position = min(position, len(request.body))
        return replace(request, body=request.body[:position] + inserted + request.body[position:])

    return st.one_of(
        st.builds(
            insert_into_body,
            st.integers(min_value=0, max_value=500),
            st.text(ANY_TEXT, min_size=1, max_size=3),
        ),
        st.builds(lambda signature: replace(request, signature=signature), signatures),
        st.builds(lambda domain: replace(request, domain=domain), hostnames),
        st.builds(
            lambda path: replace(request, path=path),
            st.sampled_from(["/twilio", "/twilio-params/", "/Twilio-params", "/x"]),
        ),
        st.builds(
            lambda value: replace(request, query=_query(["id", "category"], [values[0], value])),
            custom_values,
        ),
    )


@FUZZ
@given(_messages, hostnames, st.lists(custom_values, min_size=2, max_size=2), st.data())
def test_any_change_to_a_signed_callback_is_rejected_or_is_the_same_callback(
    params: dict[str, str], domain: str, values: list[str], data: st.DataObject
) -> None:
    query = _query(["id", "category"], values)
    body, attributes = signed_message(params, domain, "/twilio-params", query)
    original = validate_callback(body, attributes, TOKENS, RECEIVED_AT)
    assert isinstance(original, Accepted)
    request = Request(
        body, attributes[SIGNATURE_ATTRIBUTE]["stringValue"][1:], domain, "/twilio-params", query
    )
    changed = data.draw(_mutations(request, values))
    assume(changed != request)

    result = validate_callback(changed.body, changed.attributes(), TOKENS, RECEIVED_AT)

    if isinstance(result, Accepted):
        # Only an equivalent request can pass: the same parameters and URL, so the same callback
        assert result.record.event_id == original.record.event_id
    else:
        assert result.reason in set(RejectionReason)


@FUZZ
@given(_messages, hostnames, st.text(ANY_TEXT, min_size=1, max_size=32))
def test_a_callback_signed_with_another_token_is_rejected(
    params: dict[str, str], domain: str, token: str
) -> None:
    assume(token != TOKEN)
    body, attributes = signed_message(params, domain, "/twilio", (), token=token)

    result = validate_callback(body, attributes, TOKENS, RECEIVED_AT)

    assert isinstance(result, Rejection) and result.reason is RejectionReason.INVALID_SIGNATURE


@FUZZ
@given(
    st.one_of(text, st.binary(max_size=60).map(lambda raw: raw.decode("utf-8", errors="replace"))),
    signatures,
    hostnames,
    paths,
    st.lists(custom_values, max_size=3),
)
def test_hostile_requests_get_a_rejection_never_a_crash(
    body: str, signature: str, domain: str, path: str, values: list[str]
) -> None:
    query = _query(["id", "category", "extra"][: len(values)], values)

    result = validate_callback(body, forwarded(body, signature, domain, path, query), TOKENS, RECEIVED_AT)

    assert isinstance(result, Rejection)
    # What may be logged about a rejection: the reason, the caller's IP and a detail naming at most
    # a route or a URL without its query string, never the body or a query value
    assert set(vars(result)) == {"reason", "source_ip", "detail"}
    assert "?" not in result.detail
    assert len(body) < 8 or body not in result.detail


@FUZZ
@given(signatures, st.lists(st.text(ANY_TEXT, min_size=1, max_size=20), min_size=1, max_size=3))
def test_a_hostile_signature_header_never_matches_and_never_raises(signature: str, tokens: list[str]) -> None:
    params = message_status_params()
    urls = candidate_urls("abc.execute-api.us-east-1.amazonaws.com", "/twilio")

    assert matching_url(signature, urls, params, tokens) is None


def test_every_pair_of_reserved_characters_in_custom_values_still_validates() -> None:
    # Exhaustive over pairs, as a complement to the random examples above
    params = message_status_params()
    reserved = ":/?#[]@!$&'()*+,;=% <>{}|^`~"
    for first, second in itertools.product(reserved, repeat=2):
        query = (("id", f"a{first}b"), ("category", f"{second}c{first}"))
        body, attributes = signed_message(
            params, "abc.execute-api.us-east-1.amazonaws.com", "/twilio-params", query
        )
        accepted = validate_callback(body, attributes, TOKENS, RECEIVED_AT)
        assert isinstance(accepted, Accepted), query
        assert dict(accepted.record.custom) == dict(query)
