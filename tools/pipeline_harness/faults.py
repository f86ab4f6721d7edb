"""Fault injection for the local pipeline: AWS errors and partial failures, in each service's wire format.

Each fault is a `Traffic` interceptor (``pipeline.traffic.add_interceptor``):
it picks requests by service, operation and an optional predicate, and then
either answers in moto's place with the error the real service sends
(throttling, 5xx, unavailable), or forwards a rewritten request and rewrites
moto's answer (a PublishBatch or PutEvents call that fails for some entries
only). Handlers, pollers and moto are untouched: the code under test sees
exactly the bytes AWS would send, and its SDK retries, partial-batch
responses and dead-letter queues do the rest.

Every fault counts what it saw and what it did (``matched``, ``injected``,
``entries_failed``), so a test can prove the fault really happened.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from aws_emulator.traffic import AwsRequest, Forward, Interceptor, Reply, Traffic

# How each service speaks: JSON (x-amz-target), the query protocol's XML, or S3's REST XML.
JSON = "json"
QUERY = "query"
REST_XML = "rest-xml"
_QUERY_SERVICES = frozenset({"sns", "sts", "cloudformation", "iam"})
_QUERY_NAMESPACES = {"sns": "http://sns.amazonaws.com/doc/2010-03-31/"}
# A response no SDK can parse: a handler reading it raises something it does not expect.
UNPARSEABLE_BODY = b"<<<this is not an AWS response>>>"


@dataclass(frozen=True)
class AwsError:
    """An error response: HTTP status, the service's error code and message."""

    status: int
    code: str
    message: str

    @property
    def sender_fault(self) -> bool:
        return self.status < 500


# The codes each service really answers with; the SDK's retry logic keys on them.
_THROTTLING: Mapping[str, AwsError] = {
    "dynamodb": AwsError(
        400,
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    ),
    "s3": AwsError(503, "SlowDown", "Please reduce your request rate."),
    "sns": AwsError(400, "Throttling", "Rate exceeded"),
    "sqs": AwsError(400, "RequestThrottled", "Request is throttled."),
}
_SERVER_ERROR: Mapping[str, AwsError] = {
    "dynamodb": AwsError(500, "InternalServerError", "Internal server error"),
    "s3": AwsError(500, "InternalError", "We encountered an internal error. Please try again."),
    "sns": AwsError(500, "InternalError", "Internal error"),
    "events": AwsError(500, "InternalException", "Internal service error"),
    "secretsmanager": AwsError(500, "InternalServiceError", "Internal service error"),
}


def throttling(service: str) -> AwsError:
    """The throttling error ``service`` answers with (retried by every SDK)."""
    return _THROTTLING.get(service, AwsError(400, "ThrottlingException", "Rate exceeded"))


def server_error(service: str) -> AwsError:
    """The service's 500 (retried by every SDK)."""
    return _SERVER_ERROR.get(service, AwsError(500, "InternalFailure", "Internal failure"))


def unavailable(service: str) -> AwsError:
    """503 Service Unavailable: the endpoint is up but the service is not."""
    return AwsError(503, "ServiceUnavailable", f"{service} is unavailable")


def protocol_of(request: AwsRequest) -> str:
    """Which wire protocol the request (and so its error response) uses."""
    if request.service == "s3":
        return REST_XML
    if request.json_target():
        return JSON
    if request.service in _QUERY_SERVICES or "x-www-form-urlencoded" in request.headers.get(
        "content-type", ""
    ):
        return QUERY
    return JSON


def error_reply(request: AwsRequest, error: AwsError) -> Reply:
    """``error`` encoded as the service of ``request`` encodes errors."""
    request_id = str(uuid.uuid4())
    protocol = protocol_of(request)
    if protocol == REST_XML:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(error.code)}</Code>'
            f"<Message>{escape(error.message)}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        return Reply(
            error.status,
            body.encode("utf-8"),
            "application/xml",
            (("x-amz-request-id", request_id),),
        )
    if protocol == QUERY:
        namespace = _QUERY_NAMESPACES.get(request.service, "")
        kind = "Sender" if error.sender_fault else "Receiver"
        body = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
            f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return Reply(error.status, body.encode("utf-8"), "text/xml", (("x-amzn-RequestId", request_id),))
    content_type = request.headers.get("content-type") or "application/x-amz-json-1.0"
    body = json.dumps({"__type": error.code, "message": error.message})
    return Reply(
        error.status,
        body.encode("utf-8"),
        content_type,
        (("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", error.code)),
    )


RequestPredicate = Callable[[AwsRequest], bool]


def body_contains(*needles: str) -> RequestPredicate:
    """Select requests whose body mentions any of ``needles`` (as sent, or form-encoded)."""
    encoded = [needle.encode("utf-8") for needle in needles]
    encoded += [urlencode({"": needle})[1:].encode("ascii") for needle in needles]

    def matches(request: AwsRequest) -> bool:
        return any(needle in request.body for needle in encoded)

    return matches


class Fault:
    """Selects requests to fault: by service and operation, a predicate, a count and a probability.

    ``times`` caps how many requests are faulted (None: every selected request
    until removed); ``probability`` faults a seeded-random share of them.
    """

    def __init__(
        self,
        service: str,
        operation: str,
        *,
        times: int | None = None,
        probability: float = 1.0,
        match: RequestPredicate | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if times is not None and times < 0:
            raise ValueError("times must not be negative")
        self.service = service
        self.operation = operation
        self.times = times
        self.probability = probability
        self.match = match
        self._random = random.Random(seed)  # noqa: S311 - fault scheduling, not security
        self._lock = threading.Lock()
        self.matched = 0
        self.injected = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.service}.{self.operation}, "
            f"matched={self.matched}, injected={self.injected})"
        )

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.injected >= self.times

    def selects(self, request: AwsRequest) -> bool:
        """Whether this request is one this fault is about (counted in ``matched``)."""
        if request.service != self.service or request.operation != self.operation:
            return False
        if self.match is not None and not self.match(request):
            return False
        with self._lock:
            self.matched += 1
        return True

    def __call__(self, request: AwsRequest) -> Reply | Forward | None:
        if not self.selects(request):
            return None
        with self._lock:
            if self.exhausted or self._random.random() >= self.probability:
                return None
            # Reserved before deciding, so concurrent requests never exceed `times`.
            self.injected += 1
        decision = self.decide(request)
        if decision is None:
            with self._lock:
                self.injected -= 1
        return decision

    def decide(self, request: AwsRequest) -> Reply | Forward | None:
        raise NotImplementedError


class FailRequests(Fault):
    """Answer selected requests with an AWS error instead of performing them."""

    def __init__(self, service: str, operation: str, error: AwsError | None = None, **selection: Any) -> None:
        super().__init__(service, operation, **selection)
        self.error = error or server_error(service)

    def decide(self, request: AwsRequest) -> Reply:
        return error_reply(request, self.error)


def throttle(service: str, operation: str, **selection: Any) -> FailRequests:
    """Selected requests are throttled, with the service's own throttling error."""
    return FailRequests(service, operation, throttling(service), **selection)


def fail_with_5xx(service: str, operation: str, **selection: Any) -> FailRequests:
    """Selected requests fail with the service's 500."""
    return FailRequests(service, operation, server_error(service), **selection)


def secrets_unavailable(**selection: Any) -> FailRequests:
    """Secrets Manager answers GetSecretValue with 503 Service Unavailable."""
    return FailRequests("secretsmanager", "GetSecretValue", unavailable("secretsmanager"), **selection)


class UnparseableResponse(Fault):
    """The caller gets a response no SDK can parse, so it raises an error handlers do not catch.

    With ``take_effect`` the request is performed first (moto applies it), as
    when a function dies after its call succeeded; without, nothing happens.
    For protocols whose error parsing tolerates any body (JSON), and for
    calls whose result has no body (S3 PutObject), this raises nothing:
    use it on XML responses with a payload, such as SNS PublishBatch.
    """

    def __init__(self, service: str, operation: str, *, take_effect: bool = True, **selection: Any) -> None:
        super().__init__(service, operation, **selection)
        self.take_effect = take_effect

    def decide(self, request: AwsRequest) -> Reply | Forward:
        if self.take_effect:
            return Forward(request.body, lambda _response: UNPARSEABLE_BODY)
        return Reply(200, UNPARSEABLE_BODY, "text/xml")


# --- partial batch failures -------------------------------------------------------------------


EntryPredicate = Callable[[Mapping[str, str]], bool]


EntryKey = Callable[[Mapping[str, str]], str]


def whole_entry(entry: Mapping[str, str]) -> str:
    """An entry's identity: all of its content."""
    return json.dumps(dict(entry), sort_keys=True)


def sns_entry_id(entry: Mapping[str, str]) -> str:
    """A PublishBatch entry's identity: its ``Id`` (the validator uses the callback's event id)."""
    return entry.get("Id", "")


def error_event_id(entry: Mapping[str, str]) -> str:
    """A PutEvents entry's identity: the event id of the callback record in its detail.

    Copies of one callback (a Twilio retry received later) differ in ``Time``
    and ``received_at`` but share this id, as the router's ledger sees them.
    """
    try:
        detail = json.loads(entry.get("Detail", ""))
        return str(detail["record"]["event_id"])
    except (ValueError, KeyError, TypeError):
        return whole_entry(entry)


def fraction_of_entries(fraction: float, key: EntryKey = whole_entry, salt: str = "") -> EntryPredicate:
    """A stable choice of about ``fraction`` of entries, by a hash of their identity.

    Stable, so a retried entry is chosen again (combine with ``attempts_per_entry``).
    """

    def chosen(entry: Mapping[str, str]) -> bool:
        digest = hashlib.sha256((salt + key(entry)).encode("utf-8")).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < fraction

    return chosen


class _EntryFailures(Fault):
    """Shared bookkeeping of the batch faults: which entries fail, and how often each has."""

    def __init__(
        self,
        service: str,
        operation: str,
        *,
        fail_entry: EntryPredicate | None = None,
        entry_key: EntryKey = whole_entry,
        attempts_per_entry: int | None = None,
        code: str = "InternalFailure",
        message: str = "Injected partial failure",
        **selection: Any,
    ) -> None:
        super().__init__(service, operation, **selection)
        self.fail_entry = fail_entry or (lambda _entry: True)
        self.entry_key = entry_key
        self.attempts_per_entry = attempts_per_entry
        self.code = code
        self.message = message
        self.entries_failed = 0
        self._failures: Counter[str] = Counter()

    def _choose(self, entries: Sequence[Mapping[str, str]]) -> set[int]:
        """Indexes of the entries to fail in this call."""
        failed: set[int] = set()
        with self._lock:
            for index, entry in enumerate(entries):
                key = self.entry_key(entry)
                if not self.fail_entry(entry):
                    continue
                if self.attempts_per_entry is not None and self._failures[key] >= self.attempts_per_entry:
                    continue
                self._failures[key] += 1
                failed.add(index)
            self.entries_failed += len(failed)
        return failed

    @property
    def failed_keys(self) -> dict[str, int]:
        """How many times each entry (by key) was failed."""
        with self._lock:
            return dict(self._failures)


_SNS_ENTRY = re.compile(r"^PublishBatchRequestEntries\.member\.(\d+)\.(.+)$")
_SNS_FAILED_EMPTY = "<Failed/>"
_SNS_FAILED_CLOSE = "</Failed>"


def split_publish_batch(body: bytes) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """A PublishBatch query body as (other parameters, entries in order, each {field path: value})."""
    others: list[tuple[str, str]] = []
    members: dict[int, dict[str, str]] = {}
    for name, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        match = _SNS_ENTRY.match(name)
        if match:
            members.setdefault(int(match[1]), {})[match[2]] = value
        else:
            others.append((name, value))
    return others, [members[index] for index in sorted(members)]


def join_publish_batch(others: Sequence[tuple[str, str]], entries: Sequence[Mapping[str, str]]) -> bytes:
    """The query body for ``entries`` (renumbered from 1) and the other parameters."""
    pairs = list(others)
    for number, entry in enumerate(entries, start=1):
        prefix = f"PublishBatchRequestEntries.member.{number}."
        pairs += [(prefix + path, value) for path, value in entry.items()]
    return urlencode(pairs).encode("utf-8")


def _sns_failed_members(ids: Sequence[str], code: str, message: str) -> str:
    return "".join(
        f"<member><Id>{escape(entry_id)}</Id><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message><SenderFault>false</SenderFault></member>"
        for entry_id in ids
    )


def add_sns_failures(response: bytes, ids: Sequence[str], code: str, message: str) -> bytes:
    """A PublishBatch response with ``ids`` added to its ``Failed`` list."""
    text = response.decode("utf-8")
    members = _sns_failed_members(ids, code, message)
    if _SNS_FAILED_EMPTY in text:
        text = text.replace(_SNS_FAILED_EMPTY, f"<Failed>{members}</Failed>", 1)
    elif _SNS_FAILED_CLOSE in text:
        text = text.replace(_SNS_FAILED_CLOSE, f"{members}{_SNS_FAILED_CLOSE}", 1)
    else:
        text = text.replace("</PublishBatchResult>", f"<Failed>{members}</Failed></PublishBatchResult>", 1)
    return text.encode("utf-8")


class PublishBatchPartialFailure(_EntryFailures):
    """SNS PublishBatch fails some entries: they are not published and come back in ``Failed``.

    The chosen entries are dropped from the request moto receives (so moto does
    not publish them) and reported in the response's ``Failed`` list with
    ``SenderFault`` false, as SNS reports a transient failure; the others are
    published and listed in ``Successful`` by moto itself.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("entry_key", sns_entry_id)
        super().__init__("sns", "PublishBatch", **options)

    def decide(self, request: AwsRequest) -> Reply | Forward | None:
        others, entries = split_publish_batch(request.body)
        failed = self._choose(entries)
        if not failed:
            return None
        failed_ids = [entries[index].get("Id", "") for index in sorted(failed)]
        kept = [entry for index, entry in enumerate(entries) if index not in failed]
        if not kept:
            # SNS refuses an empty batch, so the all-failed answer is given here.
            request_id = str(uuid.uuid4())
            body = (
                f'<PublishBatchResponse xmlns="{_QUERY_NAMESPACES["sns"]}"><PublishBatchResult>'
                f"<Successful/><Failed>{_sns_failed_members(failed_ids, self.code, self.message)}</Failed>"
                f"</PublishBatchResult><ResponseMetadata><RequestId>{request_id}</RequestId>"
                "</ResponseMetadata></PublishBatchResponse>"
            )
            return Reply(200, body.encode("utf-8"), "text/xml")
        return Forward(
            join_publish_batch(others, kept),
            lambda response: add_sns_failures(response, failed_ids, self.code, self.message),
        )


def merge_put_events_response(
    response: bytes, total: int, failed: set[int], code: str, message: str
) -> bytes:
    """moto's answer for the kept entries, with the failed ones put back in their places."""
    document = json.loads(response.decode("utf-8"))
    kept_results = iter(document.get("Entries", []))
    results = []
    for index in range(total):
        if index in failed:
            results.append({"ErrorCode": code, "ErrorMessage": message})
        else:
            results.append(next(kept_results, {"ErrorCode": "InternalFailure", "ErrorMessage": "missing"}))
    failed_count = sum(1 for result in results if result.get("ErrorCode"))
    return json.dumps({"FailedEntryCount": failed_count, "Entries": results}).encode("utf-8")


class PutEventsPartialFailure(_EntryFailures):
    """EventBridge PutEvents fails some entries: ``FailedEntryCount`` and an ``ErrorCode`` in order.

    The chosen entries are left out of the request moto receives; the response
    has one result per original entry, in the original order, the failed ones
    carrying ``ErrorCode``/``ErrorMessage`` instead of an ``EventId``.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("entry_key", error_event_id)
        super().__init__("events", "PutEvents", **options)

    def decide(self, request: AwsRequest) -> Reply | Forward | None:
        document = json.loads(request.body.decode("utf-8"))
        entries = list(document.get("Entries", []))
        failed = self._choose([{key: str(value) for key, value in entry.items()} for entry in entries])
        if not failed:
            return None
        kept = [entry for index, entry in enumerate(entries) if index not in failed]
        if not kept:
            results = [{"ErrorCode": self.code, "ErrorMessage": self.message} for _ in entries]
            body = json.dumps({"FailedEntryCount": len(entries), "Entries": results})
            content_type = request.headers.get("content-type", "application/x-amz-json-1.1")
            return Reply(200, body.encode("utf-8"), content_type)
        forwarded = json.dumps({**document, "Entries": kept}).encode("utf-8")
        return Forward(
            forwarded,
            lambda response: merge_put_events_response(
                response, len(entries), failed, self.code, self.message
            ),
        )


@contextmanager
def injected(traffic: Traffic, *faults: Interceptor) -> Iterator[tuple[Interceptor, ...]]:
    """Install faults for the duration of a ``with`` block; they are removed even on failure."""
    for fault in faults:
        traffic.add_interceptor(fault)
    try:
        yield faults
    finally:
        for fault in faults:
            traffic.remove_interceptor(fault)
