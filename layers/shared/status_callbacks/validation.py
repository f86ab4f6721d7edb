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
) -> CallbackRecord | Rejection:
    """Check one forwarded request's signature and normalise it into a record."""
    try:
        request = parse_forwarded_request(body, attributes)
    except ForwardedRequestError:
        return Rejection(RejectionReason.MISSING_ROUTE_DATA)
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
