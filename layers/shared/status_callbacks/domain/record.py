"""The callback record: what the validator publishes and every consumer stores.

Contract (see README "Callback record"): every Twilio form parameter exactly as
received under ``twilio``; custom query parameters apart under ``custom``; and
an envelope that is the same for every product. ``event_id`` is derived from
the content only, so Twilio's retries and SQS redeliveries of one callback
share it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

SCHEMA_VERSION = 1
# A form parameter Twilio never sends: `twilio-callbacks verify` marks its probe callbacks with it
# (value: the run id), so analysts leave probes out and alerts say they are probes.
PROBE_MARKER = "TwilioCallbacksVerify"


class MalformedBodyError(ValueError):
    """The body is not a form-encoded Twilio callback."""


@dataclass(frozen=True)
class Product:
    """How one Twilio product names its resource SID and status parameters."""

    name: str
    sid_params: tuple[str, ...]
    status_params: tuple[str, ...]


# Most specific first: recording and conference callbacks also carry a CallSid.
PRODUCTS: tuple[Product, ...] = (
    Product("recording", ("RecordingSid",), ("RecordingStatus",)),
    Product("transcription", ("TranscriptionSid",), ("TranscriptionStatus",)),
    Product("conference", ("ConferenceSid",), ("StatusCallbackEvent",)),
    Product("message", ("MessageSid", "SmsSid"), ("MessageStatus", "SmsStatus")),
    Product("call", ("CallSid",), ("CallStatus",)),
)
UNKNOWN_PRODUCT = "unknown"


def parse_form_body(body: str) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` body into single string values.

    Twilio never repeats a parameter in a status callback, so a repeated key,
    an empty body, a field without ``=`` or bytes that are not UTF-8 are all
    malformed.
    """
    if not body or not body.strip():
        raise MalformedBodyError("empty body")
    try:
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedBodyError("body is not form-encoded") from error
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise MalformedBodyError("repeated form parameter")
        params[name] = value
    return params


def _first(params: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = params.get(name)
        if value:
            return value
    return None


def identify_product(params: Mapping[str, str]) -> Product | None:
    """The product whose SID parameter the callback carries, if any."""
    for product in PRODUCTS:
        if _first(params, product.sid_params):
            return product
    return None


def error_code_of(params: Mapping[str, str]) -> str | None:
    """Twilio's ErrorCode as a string, or None when absent, empty or 0."""
    code = (params.get("ErrorCode") or "").strip()
    return code if code and code != "0" else None


def event_id_of(route: str, twilio: Mapping[str, str], custom: Mapping[str, str]) -> str:
    """Stable id from the callback's content: the same callback always gets the same id."""
    canonical = json.dumps(
        {"route": route, "twilio": dict(twilio), "custom": dict(custom)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class CallbackRecord:
    """One valid status callback, normalised."""

    event_id: str
    product: str
    sid: str | None
    status: str | None
    account_sid: str | None
    error_code: str | None
    received_at: int
    route: str
    twilio: Mapping[str, str] = field(default_factory=dict)
    custom: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def probe_run(self) -> str | None:
        """The ``verify`` run that sent this callback, when it is a probe."""
        return self.twilio.get(PROBE_MARKER) or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "event_id": self.event_id,
            "product": self.product,
            "sid": self.sid,
            "status": self.status,
            "account_sid": self.account_sid,
            "error_code": self.error_code,
            "received_at": self.received_at,
            "route": self.route,
            "twilio": dict(self.twilio),
            "custom": dict(self.custom),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallbackRecord:
        """Read a record back from its JSON form (as consumers receive it)."""
        return cls(
            event_id=str(data["event_id"]),
            product=str(data.get("product") or UNKNOWN_PRODUCT),
            sid=data.get("sid"),
            status=data.get("status"),
            account_sid=data.get("account_sid"),
            error_code=data.get("error_code"),
            received_at=int(data["received_at"]),
            route=str(data.get("route", "")),
            twilio={str(k): str(v) for k, v in (data.get("twilio") or {}).items()},
            custom={str(k): str(v) for k, v in (data.get("custom") or {}).items()},
            schema_version=int(data.get("schema_version", SCHEMA_VERSION)),
        )

    @classmethod
    def from_json(cls, text: str) -> CallbackRecord:
        return cls.from_dict(json.loads(text))


def build_record(
    twilio: Mapping[str, str],
    custom: Mapping[str, str],
    route: str,
    received_at: int,
) -> CallbackRecord:
    """Normalise parsed Twilio parameters into the record contract.

    A callback from a product we do not know is still a record: its envelope
    fields are empty and everything Twilio sent is kept.
    """
    product = identify_product(twilio)
    return CallbackRecord(
        event_id=event_id_of(route, twilio, custom),
        product=product.name if product else UNKNOWN_PRODUCT,
        sid=_first(twilio, product.sid_params) if product else None,
        status=_first(twilio, product.status_params) if product else None,
        account_sid=twilio.get("AccountSid") or None,
        error_code=error_code_of(twilio),
        received_at=received_at,
        route=route,
        twilio=dict(twilio),
        custom=dict(custom),
    )


def message_attributes(record: CallbackRecord) -> dict[str, dict[str, str]]:
    """SNS message attributes subscriptions filter on (free, unlike payload filtering).

    ``ErrorCode`` is set only when there is one, so ``{"exists": true}`` selects errors.
    """
    attributes = {"Product": {"DataType": "String", "StringValue": record.product}}
    if record.status:
        attributes["Status"] = {"DataType": "String", "StringValue": record.status}
    if record.error_code:
        attributes["ErrorCode"] = {"DataType": "String", "StringValue": record.error_code}
    return attributes
