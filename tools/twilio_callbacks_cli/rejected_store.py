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

from status_callbacks.adapters.s3 import put_new_object
from status_callbacks.domain.forwarded import ForwardedRequestError, parse_forwarded_request
from status_callbacks.domain.record import MalformedBodyError, build_record, parse_form_body
from status_callbacks.domain.rejected import (
    CONTENT_TYPE,
    REJECTED_PREFIX,
    RejectedKey,
    RejectedRequest,
    day_prefix,
    decode_requests,
    parse_key,
    plan_rejected_objects,
)
from status_callbacks.domain.validation import RejectionReason, decode_body
from twilio_callbacks_cli.discovery import INGEST, REJECTED_BUCKET_NAME, REJECTED_PREFIX_OUTPUT, Pipeline

HOUR_MS = 3_600_000
REPLAY_COMMAND = "twilio-callbacks rejected replay"


def _days(since_ms: int, until_ms: int) -> list[str]:
    start = datetime.fromtimestamp(since_ms / 1000, tz=UTC).date()
    end = datetime.fromtimestamp(until_ms / 1000, tz=UTC).date()
    days = []
    while start <= end:
        days.append(start.isoformat())
        start += timedelta(days=1)
    return days


# S3's clock (LastModified) against SQS's (SentTimestamp): a minute covers any skew.
_CLOCK_SKEW_MS = 60_000


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def replay_command(since: str, reasons: Iterable[RejectionReason] = ()) -> str:
    """The command that replays these rejections once their cause is fixed."""
    return " ".join([REPLAY_COMMAND, "--since", since, *(f"--reason {reason.value}" for reason in reasons)])


def form_params(request: RejectedRequest) -> dict[str, str]:
    """The request's form parameters as the validator reads them (empty when the body is not a form)."""
    try:
        return parse_form_body(decode_body(request.body)[0])
    except MalformedBodyError:
        return {}


def callback_sid(request: RejectedRequest) -> str | None:
    """The resource SID (MessageSid, CallSid …) the body names, if it is a form naming one."""
    params = form_params(request)
    return build_record(params, {}, "", request.received_at).sid if params else None


def route_of(request: RejectedRequest) -> str | None:
    """The route path (``/twilio``) the request was forwarded for, if API Gateway's data is there."""
    try:
        return parse_forwarded_request(request.body, request.message_attributes()).route_path
    except ForwardedRequestError:
        return None


@dataclass(frozen=True)
class SidSearch:
    """A bounded search of the store for one SID: what was found and how much was read."""

    requests: list[RejectedRequest]
    objects_read: int
    objects_total: int

    @property
    def truncated(self) -> bool:
        return self.objects_read < self.objects_total


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
                for key, written_ms in self._list(prefix):
                    parsed = parse_key(key)
                    # An object is written after every request in it arrived: one written before
                    # `since` holds nothing that arrived since.
                    if (
                        parsed is not None
                        and parsed.first_received_at <= until
                        and written_ms >= since_ms - _CLOCK_SKEW_MS
                    ):
                        found.append(parsed)
        return sorted(found, key=lambda key: (key.first_received_at, key.key))

    def counts(
        self,
        since_ms: int,
        until_ms: int | None = None,
        reasons: Collection[RejectionReason] = (),
    ) -> Counter[RejectionReason]:
        """Requests by reason, from the keys alone (objects whose first request is in the range)."""
        counts: Counter[RejectionReason] = Counter()
        for key in self._counted_keys(since_ms, until_ms, reasons):
            counts[key.reason] += key.count
        return counts

    def hourly(
        self,
        since_ms: int,
        until_ms: int | None = None,
        reasons: Collection[RejectionReason] = (),
    ) -> Counter[int]:
        """Requests by the UTC hour (epoch ms of its start) of their object's first request, from the keys."""
        counts: Counter[int] = Counter()
        for key in self._counted_keys(since_ms, until_ms, reasons):
            counts[key.first_received_at - key.first_received_at % HOUR_MS] += key.count
        return counts

    def _counted_keys(
        self, since_ms: int, until_ms: int | None, reasons: Collection[RejectionReason]
    ) -> list[RejectedKey]:
        return [key for key in self.keys(since_ms, until_ms, reasons) if key.first_received_at >= since_ms]

    def read(self, key: RejectedKey) -> list[RejectedRequest]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key.key)["Body"].read()
        return decode_requests(body)

    def requests(
        self,
        since_ms: int,
        until_ms: int | None = None,
        reasons: Collection[RejectionReason] = (),
        *,
        newest_first: bool = False,
    ) -> Iterator[tuple[RejectedKey, RejectedRequest]]:
        """Every kept request that arrived in [since, until], with the object holding it."""
        until = until_ms if until_ms is not None else _now_ms()
        keys = self.keys(since_ms, until, reasons)
        for key in reversed(keys) if newest_first else keys:
            requests = self.read(key)
            for request in reversed(requests) if newest_first else requests:
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

    def for_sid(self, sid: str, since_ms: int, max_objects: int) -> SidSearch:
        """Requests naming ``sid``, reading at most ``max_objects`` objects, newest first."""
        keys = self.keys(since_ms)
        read = keys[-max_objects:] if max_objects > 0 else []
        found = [
            request
            for key in read
            for request in self.read(key)
            if request.received_at >= since_ms and callback_sid(request) == sid
        ]
        return SidSearch(sorted(found, key=lambda r: r.received_at), len(read), len(keys))

    def settle(self, key: RejectedKey, remaining: Sequence[RejectedRequest]) -> list[str]:
        """After a replay: keep only ``remaining`` of an object's requests; the keys that hold them now.

        A request whose reason changed moves to its new reason's prefix. The
        remainder is written first (create-only, under its own keys), then the
        old object is deleted, so an interrupted replay never loses a request:
        at worst both objects exist and the next replay settles them.
        """
        planned = plan_rejected_objects(remaining, self.prefix)
        for kept in planned:
            if kept.key != key.key:
                put_new_object(self.s3, self.bucket, kept.key, kept.body(), CONTENT_TYPE)
        new_keys = [kept.key for kept in planned]
        if key.key not in new_keys:
            self.s3.delete_object(Bucket=self.bucket, Key=key.key)
        return new_keys

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Keys under ``prefix`` with when each object was written (epoch ms)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield str(item["Key"]), int(item["LastModified"].timestamp() * 1000)
