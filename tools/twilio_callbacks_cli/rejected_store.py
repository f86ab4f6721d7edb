"""The ingest stack's rejected-request store, as the command reads it (and rewrites it after a replay).

The layout is the layer's (`status_callbacks.rejected`): one gzip NDJSON object
per validator invocation, UTC day and reason, whose key carries its count and
first arrival. Counting needs only ListObjectsV2; reading a request needs the
object. Used by ``rejected list/replay``, ``status``, ``query message``,
``send`` and ``verify``, against AWS and the local runner alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from status_callbacks.rejected import (
    CONTENT_TYPE,
    REJECTED_PREFIX,
    RejectedKey,
    RejectedRequest,
    day_prefix,
    decode_requests,
    encode_requests,
    object_key,
    parse_key,
)
from status_callbacks.storage import put_new_object
from status_callbacks.validation import RejectionReason
from twilio_callbacks_cli.discovery import INGEST, REJECTED_BUCKET_NAME, REJECTED_PREFIX_OUTPUT, Pipeline


def _days(since_ms: int, until_ms: int) -> list[str]:
    start = datetime.fromtimestamp(since_ms / 1000, tz=UTC).date()
    end = datetime.fromtimestamp(until_ms / 1000, tz=UTC).date()
    days = []
    while start <= end:
        days.append(start.isoformat())
        start += timedelta(days=1)
    return days


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@dataclass(frozen=True)
class RejectedStore:
    """One deployment's rejected requests."""

    s3: Any
    bucket: str
    prefix: str = REJECTED_PREFIX

    @classmethod
    def of(cls, pipeline: Pipeline, s3: Any) -> RejectedStore:
        """The store the ingest stack's outputs name."""
        bucket = pipeline.require(REJECTED_BUCKET_NAME, INGEST)
        return cls(s3, bucket, pipeline.output(REJECTED_PREFIX_OUTPUT) or REJECTED_PREFIX)

    def keys(
        self,
        since_ms: int,
        until_ms: int | None = None,
        reasons: Collection[RejectionReason] = (),
    ) -> list[RejectedKey]:
        """Objects holding requests that may have arrived in [since, until], oldest first.

        An object is listed when its day is in the range and its first request
        arrived no later than ``until``; requests are filtered exactly on reading.
        """
        until = until_ms if until_ms is not None else _now_ms()
        found: list[RejectedKey] = []
        for day in _days(since_ms, until):
            prefixes = (
                [f"{day_prefix(day, self.prefix)}{reason.value}/" for reason in reasons]
                if reasons
                else [day_prefix(day, self.prefix)]
            )
            for prefix in prefixes:
                for key in self._list(prefix):
                    parsed = parse_key(key)
                    if parsed is not None and parsed.first_received_at <= until:
                        found.append(parsed)
        return sorted(found, key=lambda key: (key.first_received_at, key.key))

    def counts(self, since_ms: int, until_ms: int | None = None) -> Counter[RejectionReason]:
        """Requests by reason, from the keys alone (objects whose first request is in the range)."""
        counts: Counter[RejectionReason] = Counter()
        for key in self.keys(since_ms, until_ms):
            if key.first_received_at >= since_ms:
                counts[key.reason] += key.count
        return counts

    def read(self, key: RejectedKey) -> list[RejectedRequest]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key.key)["Body"].read()
        return decode_requests(body)

    def requests(
        self,
        since_ms: int,
        until_ms: int | None = None,
        reasons: Collection[RejectionReason] = (),
    ) -> Iterator[tuple[RejectedKey, RejectedRequest]]:
        """Every kept request that arrived in [since, until], with the object holding it."""
        until = until_ms if until_ms is not None else _now_ms()
        for key in self.keys(since_ms, until, reasons):
            for request in self.read(key):
                if since_ms <= request.received_at <= until:
                    yield key, request

    def find(self, message_ids: Iterable[str], since_ms: int) -> dict[str, RejectedRequest]:
        """The kept requests among these SQS message ids (e.g. the ones ``send`` got back)."""
        wanted = set(message_ids)
        found: dict[str, RejectedRequest] = {}
        for _, request in self.requests(since_ms):
            if request.message_id in wanted:
                found[request.message_id] = request
        return found

    def settle(self, key: RejectedKey, remaining: Sequence[RejectedRequest]) -> str | None:
        """After a replay: keep only ``remaining`` of an object's requests; the key that holds them now.

        The remainder is written first (create-only, under its own key), then
        the old object is deleted, so an interrupted replay never loses a
        request: at worst both objects exist and the next replay settles them.
        """
        new_key = None
        if remaining:
            new_key = object_key(key.day, key.reason, remaining, self.prefix)
            if new_key != key.key:
                put_new_object(self.s3, self.bucket, new_key, encode_requests(remaining), CONTENT_TYPE)
        if new_key != key.key:
            self.s3.delete_object(Bucket=self.bucket, Key=key.key)
        return new_key

    def _list(self, prefix: str) -> Iterator[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield str(item["Key"])
