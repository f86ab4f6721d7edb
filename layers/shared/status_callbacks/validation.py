"""The ingest decision for one queued request: a callback record, or a rejection.

Pure domain logic: the validator handler feeds it SQS message data and the
auth tokens, and publishes what it returns. Rejections are final (a forged or
malformed request cannot become valid by retrying) and carry a reason that is
counted in metrics; they never carry the body, the token or phone numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from status_callbacks.forwarded import ForwardedRequestError, parse_forwarded_request
from status_callbacks.record import CallbackRecord, MalformedBodyError, build_record, parse_form_body
from status_callbacks.signature import candidate_urls, matching_url, query_params_of
from status_callbacks.tokens import AuthTokens

# SNS's limit for one message (and for one PublishBatch call in total).
MAX_RECORD_BYTES = 256 * 1024
# Room left for message attributes and the batch's other entries' framing.
MAX_RECORD_PAYLOAD_BYTES = MAX_RECORD_BYTES - 4 * 1024


class RejectionReason(StrEnum):
    """Why a request was dropped from the pipeline; each is a metric."""

    MISSING_SIGNATURE = "MissingSignature"
    INVALID_SIGNATURE = "InvalidSignature"
    MALFORMED_BODY = "MalformedBody"
    MISSING_ROUTE_DATA = "MissingRouteData"
    OVERSIZED = "Oversized"
    UNKNOWN_DESTINATION = "UnknownDestination"


@dataclass(frozen=True)
class Destination:
    """Where a genuine callback can have been sent: this API's own domain and its declared routes.

    API Gateway writes the forwarded ``Domain`` and ``Path`` into a JSON template
    next to query values it does not escape, so a crafted query value can
    replace them. A request that names any other destination is refused before
    its signature is checked: a callback Twilio signed for another webhook of
    the same account must not validate here. An empty set checks nothing.
    """

    domains: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()

    @classmethod
    def of(cls, domains: str = "", paths: str = "") -> Destination:
        """From comma-separated lists (the validator's environment); domains compare case-insensitively."""
        return cls(
            frozenset(domain.strip().lower() for domain in domains.split(",") if domain.strip()),
            frozenset(path.strip() for path in paths.split(",") if path.strip()),
        )

    def admits(self, domain: str, path: str, *, check_domain: bool = True) -> bool:
        if self.paths and path not in self.paths:
            return False
        return not (check_domain and self.domains and domain.lower() not in self.domains)


@dataclass(frozen=True)
class Rejection:
    """A request that is not a valid Twilio callback, with what may be logged about it."""

    reason: RejectionReason
    source_ip: str | None = None


def validate_callback(
    body: str | None,
    attributes: Mapping[str, Any],
    tokens: AuthTokens,
    received_at: int,
    public_base_url: str | None = None,
    *,
    destination: Destination | None = None,
) -> CallbackRecord | Rejection:
    """Check one forwarded request's signature and normalise it into a record.

    With ``destination``, a request forwarded for another route, or (unless
    ``public_base_url`` replaces the forwarded domain) another domain, is
    refused as ``UnknownDestination``.
    """
    try:
        request = parse_forwarded_request(body, attributes)
    except ForwardedRequestError:
        return Rejection(RejectionReason.MISSING_ROUTE_DATA)
    if destination and not destination.admits(request.domain, request.path, check_domain=not public_base_url):
        return Rejection(RejectionReason.UNKNOWN_DESTINATION, request.source_ip)
    if len(request.body.encode("utf-8", errors="surrogatepass")) > MAX_RECORD_PAYLOAD_BYTES:
        return Rejection(RejectionReason.OVERSIZED, request.source_ip)
    if not request.signature:
        return Rejection(RejectionReason.MISSING_SIGNATURE, request.source_ip)
    try:
        params = parse_form_body(request.body)
    except MalformedBodyError:
        return Rejection(RejectionReason.MALFORMED_BODY, request.source_ip)
    urls = candidate_urls(request.domain, request.path, request.query, public_base_url)
    account_tokens = tokens.for_account(params.get("AccountSid"))
    signed_url = matching_url(request.signature, urls, params, account_tokens)
    if signed_url is None:
        return Rejection(RejectionReason.INVALID_SIGNATURE, request.source_ip)
    record = build_record(params, query_params_of(signed_url), request.path, received_at)
    if len(record.to_json().encode("utf-8")) > MAX_RECORD_PAYLOAD_BYTES:
        return Rejection(RejectionReason.OVERSIZED, request.source_ip)
    return record
