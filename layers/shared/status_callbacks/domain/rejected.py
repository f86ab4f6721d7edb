"""The rejected-request store: every request the validator refused, kept for inspection and replay.

Contract (DESIGN "Rejected requests"): a refused request is never published and
never thrown away. The validator writes the requests it rejected in one
invocation as one gzip NDJSON object per UTC day and reason, under

    rejected/dt=YYYY-MM-DD/<Reason>/<first received ms>-<count>-<digest>.json.gz

so counts by day, reason and time come from listing keys alone, and a
redelivered batch maps to the same key (written create-only). Each line is a
`RejectedRequest`: the body and the forwarded message attributes exactly as
API Gateway queued them, when, and why. ``twilio-callbacks rejected replay``
re-validates them with the configuration of the day and publishes the ones
that now hold, with the record (and event id) they would have had.

Pure: no AWS calls. The bucket is encrypted, private and expires objects after
the stack's ``RejectedRetentionDays``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from status_callbacks.domain.archive import partition_of
from status_callbacks.domain.validation import RejectionReason

REJECTED_PREFIX = "rejected/"
SCHEMA_VERSION = 1
OBJECT_SUFFIX = ".json.gz"
CONTENT_TYPE = "application/gzip"
_GZIP_LEVEL = 6
_KEY = re.compile(
    r"dt=(?P<day>\d{4}-\d{2}-\d{2})/(?P<reason>[A-Za-z]+)/"
    r"(?P<first>\d{13})-(?P<count>\d+)-(?P<digest>[0-9a-f]{16})\.json\.gz$"
)


@dataclass(frozen=True)
class RejectedRequest:
    """One refused request, as queued, with the reason and when it arrived."""

    message_id: str
    received_at: int
    reason: RejectionReason
    body: str
    # The forwarded message attributes: name -> StringValue exactly as queued (with the "=" marker).
    attributes: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""
    source_ip: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "message_id": self.message_id,
            "received_at": self.received_at,
            "reason": self.reason.value,
            "detail": self.detail,
            "source_ip": self.source_ip,
            "attributes": dict(self.attributes),
            "body": self.body,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RejectedRequest:
        return cls(
            message_id=str(data["message_id"]),
            received_at=int(data["received_at"]),
            reason=RejectionReason(data["reason"]),
            body=str(data.get("body") or ""),
            attributes={str(k): str(v) for k, v in (data.get("attributes") or {}).items()},
            detail=str(data.get("detail") or ""),
            source_ip=data.get("source_ip"),
        )

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """The attributes in the shape Lambda's SQS event gives them (what validation reads)."""
        return {name: {"stringValue": value, "dataType": "String"} for name, value in self.attributes.items()}


def string_attributes(message_attributes: Mapping[str, Any]) -> dict[str, str]:
    """Forwarded attributes as name -> StringValue, from Lambda's event shape or the SQS API's."""
    values: dict[str, str] = {}
    for name, attribute in message_attributes.items():
        if isinstance(attribute, Mapping):
            value = attribute.get("stringValue", attribute.get("StringValue"))
            if isinstance(value, str):
                values[str(name)] = value
    return values


@dataclass(frozen=True)
class RejectedKey:
    """What a rejected-store key says without reading the object."""

    key: str
    day: str
    reason: RejectionReason
    first_received_at: int
    count: int


def parse_key(key: str) -> RejectedKey | None:
    """The day, reason, first arrival and count an object key names; None for other keys."""
    match = _KEY.search(key)
    if match is None:
        return None
    try:
        reason = RejectionReason(match["reason"])
    except ValueError:
        return None
    return RejectedKey(key, match["day"], reason, int(match["first"]), int(match["count"]))


def day_prefix(day: str, prefix: str = REJECTED_PREFIX) -> str:
    """Key prefix of one UTC day's rejected requests."""
    return f"{prefix}dt={day}/"


@dataclass(frozen=True)
class RejectedObject:
    """One object to write: a day's requests rejected for one reason."""

    key: str
    requests: tuple[RejectedRequest, ...]

    def body(self) -> bytes:
        return encode_requests(self.requests)

    @property
    def message_ids(self) -> tuple[str, ...]:
        return tuple(request.message_id for request in self.requests)


def object_key(
    day: str, reason: RejectionReason, requests: Iterable[RejectedRequest], prefix: str = REJECTED_PREFIX
) -> str:
    """The same requests always get the same key; the key carries their count and first arrival."""
    kept = list(requests)
    digest = hashlib.sha256("\n".join(sorted(r.message_id for r in kept)).encode("utf-8")).hexdigest()
    first = min(request.received_at for request in kept)
    return f"{day_prefix(day, prefix)}{reason.value}/{first:013d}-{len(kept)}-{digest[:16]}{OBJECT_SUFFIX}"


def plan_rejected_objects(
    requests: Iterable[RejectedRequest], prefix: str = REJECTED_PREFIX
) -> list[RejectedObject]:
    """Group requests into one object per UTC day and reason, in a stable order."""
    groups: dict[tuple[str, RejectionReason], list[RejectedRequest]] = {}
    for request in requests:
        groups.setdefault((partition_of(max(request.received_at, 0)), request.reason), []).append(request)
    objects = []
    for (day, reason), members in sorted(groups.items()):
        ordered = tuple(sorted(members, key=lambda r: (r.received_at, r.message_id)))
        objects.append(RejectedObject(object_key(day, reason, ordered, prefix), ordered))
    return objects


def encode_requests(requests: Iterable[RejectedRequest]) -> bytes:
    """Gzip NDJSON, one request per line; byte-identical for identical input."""
    lines = "".join(
        json.dumps(request.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        for request in requests
    )
    return gzip.compress(lines.encode("utf-8"), compresslevel=_GZIP_LEVEL, mtime=0)


def decode_requests(body: bytes) -> list[RejectedRequest]:
    """Read a rejected-store object back."""
    text = gzip.decompress(body).decode("utf-8")
    return [RejectedRequest.from_dict(json.loads(line)) for line in text.split("\n") if line]
