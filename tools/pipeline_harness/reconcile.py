"""What landed where, against what was sent: the proof that nothing was lost, doubled or forged.

`expect` turns the lifecycles ``send`` posted (``scenarios.generate``) into
what the pipeline must hold: every validly signed callback archived in S3,
one DynamoDB item per (SID, status), each SID's current status (the
furthest along in its lifecycle), one alert per distinct error callback, a
number flag per flaggable error code and recipient, and nothing from a
forged or unsigned request anywhere. `collect` reads the sinks through the
stacks' outputs (the same against AWS and the local runner), and
`reconcile` compares the two into a `Reconciliation` whose ``problems`` are
empty when the pipeline did its job.

At-least-once is allowed where the contract allows it: the archive may hold
a callback twice (a Twilio retry or an SQS redelivery archived in another
batch), always with the same ``event_id``; those copies are counted, not
failed. Everything else is exact.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_harness.scenarios import Callback, Lifecycle, Signing
from status_callbacks.domain.lifecycle import lifecycle_position
from status_callbacks.domain.record import build_record
from status_callbacks.domain.routes import Action, route_for
from twilio_callbacks_cli.discovery import (
    ALERTS_INBOX_QUEUE_URL,
    ALERTS_TOPIC_ARN,
    ARCHIVE_BUCKET_NAME,
    ARCHIVE_PREFIX,
    DEAD_LETTER_SUFFIX,
    NUMBER_FLAGS_TABLE_NAME,
    QUEUE_URL_SUFFIX,
    STATUS_TABLE_NAME,
)

DEFAULT_ARCHIVE_PREFIX = "callbacks/"
CURRENT_SORT_KEY = "CURRENT"
EVENT_PREFIX = "EVENT#"
# The alert text's "Event: <id>" line (status_callbacks.alerts); older alerts said "event <id>".
_ALERT_EVENT_ID = re.compile(r"[Ee]vent:? ([0-9a-f]{32})")

ClientFactory = Callable[[str], Any]


# --- what must have landed --------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedCallback:
    """One distinct callback (by event id) and what the pipeline must make of it."""

    event_id: str
    sid: str
    status: str
    product: str
    error_code: str | None
    recipient: str | None
    position: int

    @property
    def flaggable(self) -> bool:
        return bool(self.error_code) and Action.FLAG_NUMBER in route_for(str(self.error_code)).actions


def expected_callback(callback: Callback) -> ExpectedCallback:
    """The record the validator builds from this callback, reduced to what the sinks key on."""
    record = build_record(callback.form, dict(callback.query), callback.route, received_at=0)
    return ExpectedCallback(
        event_id=record.event_id,
        sid=str(record.sid),
        status=str(record.status),
        product=record.product,
        error_code=record.error_code,
        recipient=callback.form.get("To"),
        position=lifecycle_position(record.product, record.status, record.twilio),
    )


@dataclass
class Expectation:
    """Everything a set of sent lifecycles must leave behind, and what was sent."""

    valid: dict[str, ExpectedCallback] = field(default_factory=dict)
    forged: dict[str, ExpectedCallback] = field(default_factory=dict)
    sent: int = 0
    valid_sent: int = 0
    forged_sent: int = 0
    unsigned_sent: int = 0
    duplicates_sent: int = 0
    out_of_order_lifecycles: int = 0
    lifecycles: int = 0

    @property
    def sids(self) -> set[str]:
        return {callback.sid for callback in self.valid.values()}

    @property
    def forged_only_sids(self) -> set[str]:
        return {callback.sid for callback in self.forged.values()} - self.sids

    @property
    def items(self) -> dict[tuple[str, str], str]:
        """(SID, status) → event id of the DynamoDB history item."""
        return {(callback.sid, callback.status): callback.event_id for callback in self.valid.values()}

    @property
    def current(self) -> dict[str, str]:
        """SID → the status its current view must show: the furthest along that validly arrived."""
        best: dict[str, ExpectedCallback] = {}
        for callback in self.valid.values():
            kept = best.get(callback.sid)
            if kept is None or callback.position > kept.position:
                best[callback.sid] = callback
        return {sid: callback.status for sid, callback in best.items()}

    @property
    def alerts(self) -> set[str]:
        """Event ids that must each raise exactly one alert."""
        return {callback.event_id for callback in self.valid.values() if callback.error_code}

    @property
    def flags(self) -> dict[tuple[str, str], set[str]]:
        """(number, error code) → event ids the number's flag must count."""
        flags: dict[tuple[str, str], set[str]] = {}
        for callback in self.valid.values():
            if callback.flaggable and callback.recipient:
                flags.setdefault((callback.recipient, str(callback.error_code)), set()).add(callback.event_id)
        return flags

    def add(self, lifecycles: Iterable[Lifecycle]) -> Expectation:
        """Add more sent lifecycles (e.g. a second route); returns self."""
        for lifecycle in lifecycles:
            self.lifecycles += 1
            self.out_of_order_lifecycles += lifecycle.out_of_order
            for callback in lifecycle.callbacks:
                self.sent += 1
                self.duplicates_sent += callback.attempt > 1
                expected = expected_callback(callback)
                if callback.signing is Signing.VALID:
                    self.valid_sent += 1
                    self.valid[expected.event_id] = expected
                else:
                    self.forged_sent += callback.signing is Signing.FORGED
                    self.unsigned_sent += callback.signing is Signing.UNSIGNED
                    self.forged[expected.event_id] = expected
        # A forged copy of a callback that also arrived validly is that valid callback.
        for event_id in set(self.forged) & set(self.valid):
            del self.forged[event_id]
        return self


def expect(*batches: Iterable[Lifecycle]) -> Expectation:
    """The expectation for every lifecycle in ``batches``."""
    expectation = Expectation()
    for lifecycles in batches:
        expectation.add(lifecycles)
    return expectation


# --- where things land --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sinks:
    """The pipeline's stores and queues, by the stacks' output keys."""

    bucket: str
    status_table: str
    flags_table: str
    archive_prefix: str = DEFAULT_ARCHIVE_PREFIX
    alerts_topic_arn: str | None = None
    queues: Mapping[str, str] = field(default_factory=dict)
    dead_letter_queues: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str], extra_queues: Mapping[str, str] | None = None) -> Sinks:
        """From all stacks' outputs merged (``<Name>QueueUrl`` keys name the queues).

        The alerts inbox is not one of them: people read it, nothing drains it.
        """
        queues = {
            key.removesuffix(QUEUE_URL_SUFFIX): url
            for key, url in outputs.items()
            if key.endswith(QUEUE_URL_SUFFIX) and key not in (QUEUE_URL_SUFFIX, ALERTS_INBOX_QUEUE_URL)
        }
        return cls(
            bucket=outputs[ARCHIVE_BUCKET_NAME],
            status_table=outputs[STATUS_TABLE_NAME],
            flags_table=outputs[NUMBER_FLAGS_TABLE_NAME],
            archive_prefix=outputs.get(ARCHIVE_PREFIX) or DEFAULT_ARCHIVE_PREFIX,
            alerts_topic_arn=outputs.get(ALERTS_TOPIC_ARN),
            queues={
                name: url
                for name, url in {**queues, **(extra_queues or {})}.items()
                if not name.endswith(DEAD_LETTER_SUFFIX)
            },
            dead_letter_queues={
                name: url for name, url in queues.items() if name.endswith(DEAD_LETTER_SUFFIX)
            },
        )


def alert_event_id(text: str) -> str | None:
    """The event id an alert's text names."""
    match = _ALERT_EVENT_ID.search(text)
    return match[1] if match else None


class AlertObserver:
    """A queue subscribed to the alerts topic, as an operator's inbox; counts alerts by event id."""

    def __init__(self, client: ClientFactory, alerts_topic_arn: str, name: str) -> None:
        self._sqs = client("sqs")
        self.queue_url = str(self._sqs.create_queue(QueueName=name)["QueueUrl"])
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        client("sns").subscribe(
            TopicArn=alerts_topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        self.alerts: Counter[str] = Counter()
        self.unreadable = 0

    def drain(self) -> Counter[str]:
        """Read (and delete) every alert waiting; return the running count by event id."""
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return self.alerts
            for message in messages:
                event_id = alert_event_id(message.get("Body", ""))
                if event_id:
                    self.alerts[event_id] += 1
                else:
                    self.unreadable += 1
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(messages)
                ],
            )


@dataclass
class Landed:
    """What the sinks hold (restricted to the SIDs asked about) and how full the queues are."""

    archive: Counter[str] = field(default_factory=Counter)
    archive_sids: dict[str, str] = field(default_factory=dict)
    archive_objects: int = 0
    items: dict[tuple[str, str], str] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)
    flags: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    flag_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)
    queues: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        """No message waiting or in flight in any work queue."""
        return not any(self.queues.values())


def _queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _scan(dynamodb: Any, table: str) -> Iterable[dict[str, Any]]:
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        yield from page.get("Items", [])


class ArchiveReader:
    """Reads the archive's records; objects are create-only, so each is fetched once and remembered."""

    def __init__(self) -> None:
        self._records: dict[str, list[tuple[str | None, str]]] = {}

    def records(self, s3: Any, bucket: str, prefix: str) -> Iterable[tuple[str | None, str]]:
        """(sid, event id) of every archived line, object by object."""
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key not in self._records:
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    # NDJSON lines end at "\n" only: a record may hold U+2028 or U+0085 unescaped.
                    lines = gzip.decompress(body).decode("utf-8").split("\n")
                    self._records[key] = [
                        (record.get("sid"), record["event_id"])
                        for record in (json.loads(line) for line in lines if line)
                    ]
                yield from self._records[key]

    @property
    def objects(self) -> int:
        return len(self._records)


def collect(
    client: ClientFactory,
    sinks: Sinks,
    sids: set[str],
    *,
    alerts: AlertObserver | None = None,
    flagged_numbers: set[str] | None = None,
    archive: ArchiveReader | None = None,
) -> Landed:
    """Read every sink, keeping what belongs to ``sids`` (and flags of ``flagged_numbers``)."""
    s3, dynamodb, sqs = client("s3"), client("dynamodb"), client("sqs")
    archive = archive or ArchiveReader()
    landed = Landed()
    for sid, event_id in archive.records(s3, sinks.bucket, sinks.archive_prefix):
        if sid in sids:
            landed.archive[event_id] += 1
            landed.archive_sids[event_id] = str(sid)
    landed.archive_objects = archive.objects
    for item in _scan(dynamodb, sinks.status_table):
        sid = item["sid"]["S"]
        if sid not in sids:
            continue
        sort_key = item["sk"]["S"]
        if sort_key == CURRENT_SORT_KEY:
            landed.current[sid] = item.get("status", {}).get("S", "")
        elif sort_key.startswith(EVENT_PREFIX):
            landed.items[(sid, item.get("status", {}).get("S", ""))] = item["event_id"]["S"]
    numbers = flagged_numbers or set()
    for item in _scan(dynamodb, sinks.flags_table):
        key = (item["phone_number"]["S"], item["error_code"]["S"])
        if key[0] in numbers:
            landed.flags[key] = {value["S"] for value in item.get("recent_event_ids", {}).get("L", [])}
            landed.flag_counts[key] = int(item.get("callback_count", {}).get("N", "0"))
    if alerts is not None:
        landed.alerts = Counter(alerts.drain())
    landed.queues = {name: _queue_depth(sqs, url) for name, url in sinks.queues.items()}
    landed.dead_letters = {name: _queue_depth(sqs, url) for name, url in sinks.dead_letter_queues.items()}
    return landed


# --- the comparison -------------------------------------------------------------------------------


@dataclass
class Reconciliation:
    """Sent against landed: figures, and every way the two disagree."""

    expectation: Expectation
    landed: Landed
    check_alerts: bool = True
    check_flags: bool = True

    @property
    def archive_missing(self) -> set[str]:
        return set(self.expectation.valid) - set(self.landed.archive)

    @property
    def archive_unexpected(self) -> set[str]:
        return set(self.landed.archive) - set(self.expectation.valid)

    @property
    def archive_duplicate_lines(self) -> int:
        """Extra at-least-once copies in the archive (each has the same event id as its original)."""
        return sum(
            count - 1 for event_id, count in self.landed.archive.items() if event_id in self.expectation.valid
        )

    @property
    def items_missing(self) -> dict[tuple[str, str], str]:
        expected = self.expectation.items
        return {key: event_id for key, event_id in expected.items() if self.landed.items.get(key) != event_id}

    @property
    def items_unexpected(self) -> set[tuple[str, str]]:
        return set(self.landed.items) - set(self.expectation.items)

    @property
    def current_wrong(self) -> dict[str, tuple[str, str | None]]:
        """SID → (expected current status, found)."""
        return {
            sid: (status, self.landed.current.get(sid))
            for sid, status in self.expectation.current.items()
            if self.landed.current.get(sid) != status
        }

    @property
    def current_unexpected(self) -> set[str]:
        return set(self.landed.current) - set(self.expectation.current)

    @property
    def alerts_missing(self) -> set[str]:
        return self.expectation.alerts - set(self.landed.alerts)

    @property
    def alerts_unexpected(self) -> set[str]:
        """Alerts for these callbacks that should not exist (an inbox may also hold others' alerts)."""
        known = set(self.expectation.valid) | set(self.expectation.forged)
        return (set(self.landed.alerts) & known) - self.expectation.alerts

    @property
    def alerts_duplicated(self) -> int:
        return sum(count - 1 for count in self.landed.alerts.values() if count > 1)

    @property
    def flags_missing(self) -> dict[tuple[str, str], set[str]]:
        """Flag → event ids it should count but does not (within its recent-ids window)."""
        missing = {}
        for key, event_ids in self.expectation.flags.items():
            found = self.landed.flags.get(key)
            if found is None:
                missing[key] = event_ids
            elif not event_ids <= found and self.landed.flag_counts.get(key, 0) < len(event_ids):
                missing[key] = event_ids - found
        return missing

    @property
    def flags_unexpected(self) -> dict[tuple[str, str], set[str]]:
        """Flag → event ids of these callbacks it counts but should not (other runs' ids are ignored)."""
        known = set(self.expectation.valid) | set(self.expectation.forged)
        unexpected = {}
        for key, event_ids in self.landed.flags.items():
            extra = (event_ids & known) - self.expectation.flags.get(key, set())
            if extra:
                unexpected[key] = extra
        return unexpected

    @property
    def forged_accepted(self) -> set[str]:
        """Event ids of forged or unsigned callbacks found in any sink."""
        forged = set(self.expectation.forged)
        found = set(self.landed.archive) | set(self.landed.items.values()) | set(self.landed.alerts)
        for event_ids in self.landed.flags.values():
            found |= event_ids
        return forged & found

    @property
    def dead_lettered(self) -> dict[str, int]:
        return {name: depth for name, depth in self.landed.dead_letters.items() if depth}

    def problems(self) -> list[str]:
        """Every disagreement, one line each; empty when the pipeline held."""
        checks: list[tuple[str, Any]] = [
            ("callbacks not archived", self.archive_missing),
            ("unexpected callbacks archived", self.archive_unexpected),
            ("DynamoDB items missing or wrong", self.items_missing),
            ("unexpected DynamoDB items", self.items_unexpected),
            ("wrong current status", self.current_wrong),
            ("unexpected current-status items", self.current_unexpected),
            ("forged or unsigned callbacks accepted", self.forged_accepted),
            ("messages in dead-letter queues", self.dead_lettered),
        ]
        if self.check_alerts:
            checks += [
                ("error callbacks without an alert", self.alerts_missing),
                ("alerts for no expected error callback", self.alerts_unexpected),
                ("duplicate alerts", self.alerts_duplicated),
            ]
        if self.check_flags:
            checks += [
                ("number flags missing", self.flags_missing),
                ("unexpected number flags", self.flags_unexpected),
            ]
        return [f"{label}: {_sample(value)}" for label, value in checks if value]

    @property
    def ok(self) -> bool:
        return not self.problems()

    def figures(self) -> dict[str, Any]:
        """The counts a report (or a benchmark) prints."""
        expectation, landed = self.expectation, self.landed
        return {
            "lifecycles": expectation.lifecycles,
            "callbacks_sent": expectation.sent,
            "valid_sent": expectation.valid_sent,
            "distinct_valid_callbacks": len(expectation.valid),
            "duplicates_sent": expectation.duplicates_sent,
            "forged_sent": expectation.forged_sent,
            "unsigned_sent": expectation.unsigned_sent,
            "out_of_order_lifecycles": expectation.out_of_order_lifecycles,
            "archived_distinct": len(set(landed.archive) & set(expectation.valid)),
            "archive_lines": sum(landed.archive.values()),
            "archive_duplicate_lines": self.archive_duplicate_lines,
            "archive_objects": landed.archive_objects,
            "dynamodb_items": len(landed.items),
            "current_status_items": len(landed.current),
            "expected_alerts": len(expectation.alerts),
            "alerts": sum(landed.alerts.values()),
            "number_flags": len(landed.flags),
            "expected_number_flags": len(expectation.flags),
            "lost": len(self.archive_missing) + len(self.items_missing),
            "forged_accepted": len(self.forged_accepted),
            "dead_lettered": sum(landed.dead_letters.values()),
        }


def _sample(value: Any, limit: int = 5) -> str:
    if isinstance(value, int):
        return str(value)
    items = sorted(value.items() if isinstance(value, Mapping) else value, key=str)
    shown = ", ".join(str(item) for item in items[:limit])
    more = f" … and {len(items) - limit} more" if len(items) > limit else ""
    return f"{len(items)}: {shown}{more}"


def reconcile(
    expectation: Expectation, landed: Landed, *, check_alerts: bool = True, check_flags: bool = True
) -> Reconciliation:
    """Compare; see `Reconciliation.problems`."""
    return Reconciliation(expectation, landed, check_alerts, check_flags)


def queue_depths(client: ClientFactory, queues: Mapping[str, str]) -> dict[str, int]:
    """Messages waiting, in flight or delayed, per queue."""
    sqs = client("sqs")
    return {name: _queue_depth(sqs, url) for name, url in queues.items()}


def wait_for_reconciliation(
    client: ClientFactory,
    sinks: Sinks,
    expectation: Expectation,
    *,
    alerts: AlertObserver | None = None,
    deadline_seconds: float = 60.0,
    interval_seconds: float = 0.5,
    settle_polls: int = 2,
    extra_sids: Sequence[str] = (),
) -> Reconciliation:
    """Poll until everything expected has landed and every queue is idle, or the deadline passes.

    While messages are still queued only the queue depths are read (cheap);
    the sinks are read once the queues are idle. Returns the last
    reconciliation either way: the caller asserts on its problems.
    ``settle_polls`` consecutive clean, idle polls are needed, so a late
    duplicate (a redelivery still in flight) is seen before returning.
    """
    sids = expectation.sids | expectation.forged_only_sids | set(extra_sids)
    numbers = {key[0] for key in expectation.flags} | {
        callback.recipient for callback in expectation.forged.values() if callback.recipient
    }
    check_alerts = alerts is not None
    archive = ArchiveReader()
    deadline = time.monotonic() + deadline_seconds
    clean = 0
    while True:
        backlog = sum(queue_depths(client, sinks.queues).values())
        if backlog and time.monotonic() < deadline:
            clean = 0
            # A long backlog drains slowly: look less often, and leave the endpoint to the pipeline.
            time.sleep(min(max(interval_seconds, backlog / 1000), 5.0))
            continue
        landed = collect(client, sinks, sids, alerts=alerts, flagged_numbers=numbers, archive=archive)
        result = reconcile(expectation, landed, check_alerts=check_alerts)
        clean = clean + 1 if result.ok and landed.idle else 0
        if clean >= settle_polls or time.monotonic() >= deadline:
            return result
        time.sleep(interval_seconds)
