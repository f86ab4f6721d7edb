"""The ingest decision for one queued request: a callback record, or a rejection.

Pure domain logic: the validator handler (and ``twilio-callbacks rejected
replay``) feed it SQS message data and the auth tokens, and act on what it
returns. A rejection carries a reason that is counted and points at the fix,
and a ``detail`` safe to show people; never the body, a token or a phone number.

The reasons, in the order they are decided:

- ``MissingRouteData``: the message lacks what API Gateway forwards.
- ``UnknownDestination``: forwarded for a route this API does not serve, or a
  domain that is not this API's with a signature that does not hold for it either.
- ``Oversized``: the body cannot become a record SNS accepts.
- ``MissingSignature``: no ``X-Twilio-Signature``.
- ``MalformedBody``: not form-encoded (a JSON body, for instance).
- ``PublicBaseUrlMismatch``: the signature holds for the URL API Gateway received
  (``https://<Domain><Path>``) but not for the one configured (``PublicBaseUrl``,
  or this API's own domain when it is unset): Twilio calls another base URL than
  the stack is configured with.
- ``NotTwilioCallback``: a form without ``AccountSid`` whose signature holds for
  nothing: not a Twilio callback at all.
- ``InvalidSignature``: a Twilio-looking callback that no configured token
  signed for any URL we can rebuild (a wrong or rotated auth token, a query
  parameter that is not declared in ``api.yaml``, or a proxy that rewrote the host).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from status_callbacks.domain.forwarded import ForwardedRequest, ForwardedRequestError, parse_forwarded_request
from status_callbacks.domain.record import CallbackRecord, MalformedBodyError, build_record, parse_form_body
from status_callbacks.domain.signature import (
    TokenRole,
    base_url,
    is_raw_reading,
    match_signature,
    query_params_of,
    urls_for_root,
)
from status_callbacks.domain.tokens import AuthTokens

# SNS's limit for one message (and for one PublishBatch call in total).
MAX_RECORD_BYTES = 256 * 1024
# Room left for message attributes and the batch's other entries' framing.
MAX_RECORD_PAYLOAD_BYTES = MAX_RECORD_BYTES - 4 * 1024

# Strict base64: the alphabet, padding only at the end, whole quanta. A form-encoded Twilio
# callback always has "&" between its parameters and "=" inside them, so it never matches.
_BASE64_BODY = re.compile(r"^(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


class RejectionReason(StrEnum):
    """Why a request was not published; each is a metric, and the rejected store's key part."""

    MISSING_ROUTE_DATA = "MissingRouteData"
    UNKNOWN_DESTINATION = "UnknownDestination"
    OVERSIZED = "Oversized"
    MISSING_SIGNATURE = "MissingSignature"
    MALFORMED_BODY = "MalformedBody"
    PUBLIC_BASE_URL_MISMATCH = "PublicBaseUrlMismatch"
    NOT_TWILIO_CALLBACK = "NotTwilioCallback"
    INVALID_SIGNATURE = "InvalidSignature"

    @property
    def remedy(self) -> str:
        """What a person should check, in a few words."""
        return _REMEDIES[self]


_REMEDIES: Mapping[RejectionReason, str] = {
    RejectionReason.MISSING_ROUTE_DATA: "not sent through this API's routes; check api.yaml's forwarding",
    RejectionReason.UNKNOWN_DESTINATION: "forwarded for another route or domain; likely probing",
    RejectionReason.OVERSIZED: "body too large for one SNS message",
    RejectionReason.MISSING_SIGNATURE: "no X-Twilio-Signature; not sent by Twilio",
    RejectionReason.MALFORMED_BODY: "body is not form-encoded (Event Streams JSON goes to its own route)",
    RejectionReason.PUBLIC_BASE_URL_MISMATCH: (
        "Twilio calls another base URL than the stack expects; set PublicBaseUrl to it, then replay"
    ),
    RejectionReason.NOT_TWILIO_CALLBACK: "not a Twilio callback (no AccountSid) and not signed",
    RejectionReason.INVALID_SIGNATURE: (
        "wrong AUTH_TOKEN in the secret, an undeclared query parameter in the StatusCallback URL, "
        "or a proxy rewriting the host; fix it, then replay"
    ),
}


@dataclass(frozen=True)
class Destination:
    """Where a genuine callback can have been sent: this API's own domain and its declared routes.

    API Gateway writes the forwarded ``Domain`` and ``Route`` into a JSON template
    next to query values it does not escape, so a crafted query value can
    replace them. A request that names any other route, or another domain whose
    URL its signature does not hold for, is refused: a callback Twilio signed for
    another webhook of the same account must not validate here. Routes are route
    keys (``POST /twilio``). An empty set checks nothing.
    """

    domains: frozenset[str] = frozenset()
    routes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, domains: str = "", routes: str = "") -> Destination:
        """From comma-separated lists (the validator's environment); domains compare case-insensitively."""
        return cls(
            frozenset(domain.strip().lower() for domain in domains.split(",") if domain.strip()),
            frozenset(" ".join(route.split()) for route in routes.split(",") if route.strip()),
        )

    def admits_route(self, route: str) -> bool:
        return not self.routes or route in self.routes

    def admits_domain(self, domain: str) -> bool:
        return not self.domains or domain.lower() in self.domains


@dataclass(frozen=True)
class Accepted:
    """A valid callback, with how it was recognised (for counting what AWS actually sends)."""

    record: CallbackRecord
    token: TokenRole = TokenRole.PRIMARY
    body_was_base64: bool = False
    query_was_raw: bool = False


@dataclass(frozen=True)
class Rejection:
    """A request that is not a valid Twilio callback, with what may be logged about it."""

    reason: RejectionReason
    source_ip: str | None = None
    # For people: which URL the signature held for, and the like. Never a body, token or number.
    detail: str = ""


def decode_body(body: str) -> tuple[str, bool]:
    """The form body, and whether it arrived base64-encoded.

    AWS does not document whether an HTTP API's SQS integration passes a form
    body as text or base64-encoded (as it does for Lambda proxy integrations,
    which treat form bodies as binary). A body that is strict base64 of a form is
    decoded; anything else is taken as it is.
    """
    if "=" in body[:-2] or not _BASE64_BODY.match(body):
        return body, False
    try:
        decoded = base64.b64decode(body, validate=True).decode("utf-8")
        parse_form_body(decoded)
    except (binascii.Error, UnicodeDecodeError, MalformedBodyError):
        return body, False
    return decoded, True


def signed_url_root(request: ForwardedRequest, public_base_url: str | None) -> str:
    """Scheme, host and path Twilio called, before the query string.

    ``PublicBaseUrl`` (a custom domain with any base path, a proxy, a tunnel),
    else this API's own domain, followed by the matched route's path. The
    forwarded ``Path`` never decides it: a query value can rewrite it.
    """
    return base_url(request.domain, public_base_url) + request.route_path


def received_url_root(request: ForwardedRequest, public_base_url: str | None = None) -> str | None:
    """The URL API Gateway received, when it is this route under another base path.

    A custom domain's API mapping puts its base path before the route
    (``/hooks/twilio``); a forwarded path that does not end with the route's
    path was not produced by API Gateway for this route. The scheme is
    ``PublicBaseUrl``'s when set (a local tunnel may be http), else https.
    """
    if not request.path.endswith(request.route_path):
        return None
    scheme = urlsplit(public_base_url).scheme if public_base_url else "https"
    return f"{scheme}://{request.domain}{request.path}"


def validate_callback(
    body: str | None,
    attributes: Mapping[str, Any],
    tokens: AuthTokens,
    received_at: int,
    public_base_url: str | None = None,
    *,
    destination: Destination | None = None,
) -> Accepted | Rejection:
    """Check one forwarded request's signature and normalise it into a record.

    With ``destination``, a request forwarded for another route, or (unless
    ``public_base_url`` replaces the forwarded domain) another domain, is refused.
    """
    try:
        request = parse_forwarded_request(body, attributes)
    except ForwardedRequestError:
        return Rejection(RejectionReason.MISSING_ROUTE_DATA)
    destination = destination or Destination()
    if not destination.admits_route(request.route):
        return Rejection(RejectionReason.UNKNOWN_DESTINATION, request.source_ip, f"route {request.route}")
    if len(request.body.encode("utf-8", errors="surrogatepass")) > MAX_RECORD_PAYLOAD_BYTES:
        return Rejection(RejectionReason.OVERSIZED, request.source_ip)
    if not request.signature:
        return Rejection(RejectionReason.MISSING_SIGNATURE, request.source_ip)
    form, was_base64 = decode_body(request.body)
    try:
        params = parse_form_body(form)
    except MalformedBodyError:
        return Rejection(RejectionReason.MALFORMED_BODY, request.source_ip)
    account_tokens = tokens.roles_for_account(params.get("AccountSid"))
    expected_root = signed_url_root(request, public_base_url)
    match = None
    if public_base_url or destination.admits_domain(request.domain):
        urls = urls_for_root(expected_root, request.query)
        match = match_signature(request.signature, urls, params, account_tokens)
    if match is None:
        return _diagnose(
            request,
            params,
            tokens=account_tokens,
            expected_root=expected_root,
            destination=destination,
            public_base_url=public_base_url,
        )
    record = build_record(params, query_params_of(match.url), request.route_path, received_at)
    if len(record.to_json().encode("utf-8")) > MAX_RECORD_PAYLOAD_BYTES:
        return Rejection(RejectionReason.OVERSIZED, request.source_ip)
    return Accepted(
        record,
        token=match.token,
        body_was_base64=was_base64,
        query_was_raw=is_raw_reading(match.url, request.query),
    )


def _diagnose(
    request: ForwardedRequest,
    params: Mapping[str, str],
    *,
    tokens: list[tuple[TokenRole, str]],
    expected_root: str,
    destination: Destination,
    public_base_url: str | None,
) -> Rejection:
    """Why no expected URL validated: another base URL, not a callback, or a bad signature."""
    received_root = received_url_root(request, public_base_url)
    # Not yet tried: a URL other than the expected one, or the expected one on a domain not ours.
    untried = not public_base_url and not destination.admits_domain(request.domain)
    if received_root is not None and (received_root != expected_root or untried):
        urls = urls_for_root(received_root, request.query)
        if match_signature(request.signature, urls, params, tokens) is not None:
            configured = public_base_url or "unset"
            return Rejection(
                RejectionReason.PUBLIC_BASE_URL_MISMATCH,
                request.source_ip,
                f"signed for {received_root} (PublicBaseUrl is {configured})",
            )
    if untried:
        return Rejection(RejectionReason.UNKNOWN_DESTINATION, request.source_ip, f"domain {request.domain}")
    if not params.get("AccountSid"):
        return Rejection(RejectionReason.NOT_TWILIO_CALLBACK, request.source_ip)
    return Rejection(RejectionReason.INVALID_SIGNATURE, request.source_ip, f"expected {expected_root}")
