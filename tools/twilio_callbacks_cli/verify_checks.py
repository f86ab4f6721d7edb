"""What ``verify`` reads back from AWS about its probes, poll after poll.

Reads only through the code that owns each store: the rejected store through
`rejected_store`, the archive through `status_callbacks.archive`, the status
store through the lookups ``query message`` uses, number flags through
`status_callbacks.error_routing`, and the router's publish ledger through
Powertools itself. Probe records are recognised by the run's marker, never by
time alone, so other traffic in the same stores does not count.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemNotFoundError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS
from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.adapters import dynamodb as table_io
from status_callbacks.adapters import events
from status_callbacks.domain import archive
from status_callbacks.domain.lifecycle import lifecycle_position
from status_callbacks.domain.rejected import RejectedRequest
from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.alerts_inbox import AlertsInbox
from twilio_callbacks_cli.discovery import DEAD_LETTER_SUFFIX, Pipeline
from twilio_callbacks_cli.errors import CliError
from twilio_callbacks_cli.rejected_store import RejectedStore
from twilio_callbacks_cli.status import queue_depth
from twilio_callbacks_cli.verify_probes import PROBE_ERROR_CODE, VERIFY_MARKER, Sent

TOKEN = "token"  # noqa: S105 - a stage name
ACCEPTED = "accepted by API Gateway"
QUEUED = "queued"
VALIDATED = "validated"
ARCHIVED = "archived in S3"
STORED = "stored in DynamoDB"
ROUTED = "routed to the error bus"
ALERTED = "alerted"
FLAGGED = "number flagged"
COMPLETED = STATUS_CONSTANTS["COMPLETED"]
VALIDATOR_SUMMARY = "callback batch ingested"
TEMPORARY_INBOX_PREFIX = "twilio-callbacks-verify-"
# Log delivery is eventually consistent (FilterLogEvents documents no latency): poll a while.
LOG_WAIT_SECONDS = 15.0
LOG_POLL_SECONDS = 2.0
# Alerts looked through per poll (10 a receive) and how long each stays hidden meanwhile.


def _why(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'ClientError')}: {details.get('Message', '')}".rstrip(": ")
    return str(error) if isinstance(error, CliError) else type(error).__name__


@dataclass
class Deployment:
    """The deployment under test: its outputs, AWS clients (one per service) and the run's window."""

    pipeline: Pipeline
    client: Callable[[str], Any]
    run_id: str
    since_ms: int

    def depths(self, *bases: str) -> tuple[dict[str, tuple[int, int]], str]:
        """Waiting and in-flight counts of these queues and their DLQs, and the same as text."""
        wanted = {name for base in bases for name in (base, base + DEAD_LETTER_SUFFIX)}
        counts: dict[str, tuple[int, int]] = {}
        for queue in self.pipeline.queues():
            if queue.name in wanted:
                depth = queue_depth(self.client("sqs"), queue)
                counts[queue.name] = (depth["messages"] or 0, depth["in_flight"] or 0)
        text = "; ".join(
            f"{name}Queue {waiting} waiting, {flight} in flight" for name, (waiting, flight) in counts.items()
        )
        return counts, text or "no such queues in the outputs"


@dataclass
class Observation:
    """What the stores held for this run's probes, accumulated over the polls."""

    rejected: dict[str, RejectedRequest] = field(default_factory=dict)
    archived: set[tuple[str, str]] = field(default_factory=set)
    archive_keys: set[str] = field(default_factory=set)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    current: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger: str | None = None
    alert: str | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)
    # Stage name → why its store could not be read (permissions, a stack not deployed …).
    unreadable: dict[str, str] = field(default_factory=dict)

    def events_for(self, sent: Sent) -> list[dict[str, Any]]:
        """The stored events of this callback's SID and status."""
        callback = sent.callback
        return [item for item in self.events.get(callback.sid, []) if item.get("status") == callback.status]

    def stored(self, sent: Sent) -> bool:
        return bool(self.events_for(sent))

    def landed(self, sent: Sent) -> bool:
        return sent.key in self.archived or self.stored(sent)

    def guard(self, stage: str, read: Callable[[], None]) -> None:
        try:
            read()
            self.unreadable.pop(stage, None)
        except (ClientError, BotoCoreError, CliError) as error:
            self.unreadable[stage] = _why(error)


@dataclass(frozen=True)
class Expectation:
    """What this run's answers from API Gateway mean the stores must hold."""

    sent: tuple[Sent, ...]

    @property
    def signed(self) -> list[Sent]:
        """Signed probe callbacks in the ingest queue."""
        return [sent for sent in self.sent if sent.probe.signed and sent.queued]

    @property
    def unsigned(self) -> list[Sent]:
        return [sent for sent in self.sent if not sent.probe.signed and sent.queued]

    def landing(self, observed: Observation) -> list[Sent]:
        """Signed callbacks not rejected: each must reach every sink."""
        return [sent for sent in self.signed if sent.message_id not in observed.rejected]

    def finals(self, observed: Observation) -> dict[str, str]:
        """SID → the status its current view must show (the furthest landing callback)."""
        furthest: dict[str, Sent] = {}
        for sent in self.landing(observed):
            previous = furthest.get(sent.callback.sid)
            if previous is None or _position(sent) > _position(previous):
                furthest[sent.callback.sid] = sent
        return {sid: sent.callback.status for sid, sent in furthest.items()}

    def error(self, observed: Observation) -> Sent | None:
        """The flaggable error callback, if it is on its way to the error bus."""
        for sent in self.landing(observed):
            if sent.callback.error_code == PROBE_ERROR_CODE:
                return sent
        return None

    def settled(self, observed: Observation, alerts_readable: bool) -> bool:
        """Everything that should be in is in (polling stops early)."""
        landing = self.landing(observed)
        if any(sent.key not in observed.archived or not observed.stored(sent) for sent in landing):
            return False
        finals = self.finals(observed)
        if any((observed.current.get(sid) or {}).get("status") != status for sid, status in finals.items()):
            return False
        if any(sent.message_id not in observed.rejected for sent in self.unsigned):
            return False
        if self.error(observed) is not None:
            return (
                observed.ledger == COMPLETED
                and bool(observed.flags)
                and (bool(observed.alert) or not alerts_readable)
            )
        return True


def _position(sent: Sent) -> int:
    callback = sent.callback
    return lifecycle_position(str(callback.product), callback.status, callback.form)


# --- reading the stores ----------------------------------------------------------------------


def publish_ledger_status(dynamodb: Any, table: str, event_id: str) -> str | None:
    """The router's publish-ledger record status for an error callback (COMPLETED once on the bus).

    Read with Powertools configured as the router configures it (`PublishLedger`), so
    Powertools computes the key: the one place to change when the router's idempotency does.
    """
    persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)
    events.PublishLedger(persistence, dedupe_window_seconds=1)
    try:
        record = persistence.get_record({"event_id": event_id})
    except IdempotencyItemNotFoundError:
        return None
    return record.status if record is not None else None


def _days(since_ms: int) -> list[str]:
    day = datetime.fromtimestamp(since_ms / 1000, tz=UTC).date()
    days = []
    while day <= datetime.now(UTC).date():
        days.append(day.strftime(archive.PARTITION_DATE_FORMAT))
        day += timedelta(days=1)
    return days


def _read_archive(deployment: Deployment, observed: Observation) -> None:
    """Probe records in the run's day partition(s), from objects written since the run started."""
    s3 = deployment.client("s3")
    bucket = deployment.pipeline.require(keys.ARCHIVE_BUCKET_NAME, keys.ARCHIVE)
    prefix = deployment.pipeline.output(keys.ARCHIVE_PREFIX) or archive.ARCHIVE_PREFIX
    since = datetime.fromtimestamp(deployment.since_ms / 1000, tz=UTC)
    for day in _days(deployment.since_ms):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=archive.partition_prefix(day, prefix)
        )
        for summary in (item for page in pages for item in page.get("Contents", [])):
            if summary["Key"] in observed.archive_keys or summary["LastModified"] < since:
                continue
            body = s3.get_object(Bucket=bucket, Key=summary["Key"])["Body"].read()
            observed.archive_keys.add(summary["Key"])
            try:
                records = archive.decode_records(body)
            except (OSError, ValueError):
                continue  # not an archive object: nothing of this run's
            for record in records:
                if (record.get("twilio") or {}).get(VERIFY_MARKER) == deployment.run_id:
                    observed.archived.add((str(record.get("sid")), str(record.get("status"))))


def _read_status_store(deployment: Deployment, sids: Iterable[str], observed: Observation) -> None:
    dynamodb = deployment.client("dynamodb")
    table = deployment.pipeline.require(keys.STATUS_TABLE_NAME, keys.STATUS_STORE)
    for sid in sids:
        observed.events[sid] = table_io.events_of(dynamodb, table, sid)
        observed.current[sid] = table_io.current_of(dynamodb, table, sid) or {}


def refresh(deployment: Deployment, expected: Expectation, observed: Observation, inbox: Any) -> None:
    """One poll of every store that still lacks something this run expects."""
    pipeline = deployment.pipeline
    pending = [sent for sent in expected.signed if sent.message_id not in observed.rejected]
    if any(not observed.landed(sent) for sent in pending) or any(
        sent.message_id not in observed.rejected for sent in expected.unsigned
    ):
        ids = [str(sent.message_id) for sent in expected.sent if sent.queued]
        observed.guard(
            VALIDATED,
            lambda: observed.rejected.update(
                RejectedStore.of(pipeline, deployment.client("s3")).find(ids, deployment.since_ms)
            ),
        )
    landing = expected.landing(observed)
    if any(sent.key not in observed.archived for sent in landing):
        observed.guard(ARCHIVED, lambda: _read_archive(deployment, observed))
    finals = expected.finals(observed)
    if any(not observed.stored(sent) for sent in landing) or any(
        (observed.current.get(sid) or {}).get("status") != status for sid, status in finals.items()
    ):
        sids = [*finals, *(sent.callback.sid for sent in expected.unsigned)]
        observed.guard(STORED, lambda: _read_status_store(deployment, sids, observed))
    error = expected.error(observed)
    if error is None:
        return
    dynamodb = deployment.client("dynamodb")
    if observed.ledger != COMPLETED:

        def read_ledger() -> None:
            table = pipeline.require(keys.IDEMPOTENCY_TABLE_NAME, keys.ERROR_ROUTER)
            observed.ledger = publish_ledger_status(dynamodb, table, error.event_id)

        observed.guard(ROUTED, read_ledger)
    if not observed.flags:

        def read_flags() -> None:
            table = pipeline.require(keys.NUMBER_FLAGS_TABLE_NAME, keys.ERROR_ROUTER)
            flags = table_io.flags_for_number(dynamodb, table, error.callback.form["To"])
            observed.flags = [flag for flag in flags if flag.get("error_code") == PROBE_ERROR_CODE]

        observed.guard(FLAGGED, read_flags)
    if inbox is not None and not observed.alert:

        def read_alerts() -> None:
            observed.alert = inbox.find(error.callback.sid)

        observed.guard(ALERTED, read_alerts)


# --- logs ------------------------------------------------------------------------------------


def log_lines(deployment: Deployment, group: str, pattern: str) -> list[dict[str, Any]] | str:
    """JSON log lines of a group since the run started, or why they cannot be read here."""
    logs = deployment.client("logs")
    lines: list[dict[str, Any]] = []
    request = {"logGroupName": group, "startTime": deployment.since_ms, "filterPattern": pattern}
    try:
        # Pages may be empty while a nextToken remains (FilterLogEvents API reference).
        while True:
            page = logs.filter_log_events(**request)
            for event in page.get("events", []):
                try:
                    line = json.loads(event.get("message", ""))
                except ValueError:
                    continue
                if isinstance(line, dict):
                    lines.append(line)
            if not page.get("nextToken"):
                return lines
            request["nextToken"] = page["nextToken"]
    except (ClientError, BotoCoreError) as error:
        return f"not observable here ({group}: {_why(error)})"


def poll_log_lines(
    deployment: Deployment,
    group: str | None,
    pattern: str,
    done: Callable[[list[dict[str, Any]]], bool],
    seconds: float = LOG_WAIT_SECONDS,
) -> list[dict[str, Any]] | str:
    """Log lines, polled until ``done`` says they are all there: log delivery is eventually consistent."""
    if not group:
        return "not observable here (no log group in the stack's outputs)"
    deadline = time.monotonic() + seconds
    while True:
        lines = log_lines(deployment, group, pattern)
        if isinstance(lines, str) or done(lines) or time.monotonic() >= deadline:
            return lines
        time.sleep(LOG_POLL_SECONDS)


def integration_errors(deployment: Deployment, sent: Iterable[Sent]) -> dict[str, str] | str:
    """``integrationError`` of each 5xx probe request, by API Gateway request id, from the access log."""
    wanted = {s.request_id for s in sent if s.status is not None and s.status >= 500 and s.request_id}
    if not wanted:
        return {}
    pattern = "{ " + " || ".join(f'$.requestId = "{request_id}"' for request_id in sorted(wanted)) + " }"
    lines = poll_log_lines(
        deployment,
        deployment.pipeline.output(keys.API_ACCESS_LOG_GROUP_NAME),
        pattern,
        lambda found: wanted <= {line.get("requestId") for line in found},
    )
    if isinstance(lines, str):
        return lines
    return {
        str(line["requestId"]): str(line.get("integrationError") or "(empty)")
        for line in lines
        if line.get("requestId") in wanted
    }


def validator_summaries(deployment: Deployment) -> list[dict[str, Any]] | str:
    """The validator's per-batch summary lines since the run started."""
    lines = poll_log_lines(
        deployment,
        deployment.pipeline.output(keys.VALIDATOR_LOG_GROUP_NAME),
        f'{{ $.message = "{VALIDATOR_SUMMARY}" }}',
        bool,
    )
    if isinstance(lines, str):
        return lines
    return [line for line in lines if line.get("message") == VALIDATOR_SUMMARY]


# --- the alerts inbox ------------------------------------------------------------------------


@dataclass
class AlertInbox:
    """The queue ``verify`` reads the probe's alert from, and how a stage line names it."""

    inbox: AlertsInbox
    description: str

    def find(self, needle: str) -> str | None:
        """The subject of an alert mentioning ``needle`` (its first line when it has none)."""
        alert = self.inbox.find(needle)
        if alert is None:
            return None
        return alert.subject or (alert.text.splitlines() or ["(empty alert)"])[0]


def _create_inbox(sqs: Any, sns: Any, topic_arn: str, name: str, created: dict[str, str]) -> None:
    created["queue_url"] = sqs.create_queue(
        QueueName=name, Attributes={"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "3600"}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=created["queue_url"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AlertsTopicDelivers",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=created["queue_url"], Attributes={"Policy": json.dumps(policy)})
    created["subscription_arn"] = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]


def _delete_inbox(sqs: Any, sns: Any, created: Mapping[str, str]) -> None:
    for what, delete in (
        ("subscription_arn", lambda arn: sns.unsubscribe(SubscriptionArn=arn)),
        ("queue_url", lambda url: sqs.delete_queue(QueueUrl=url)),
    ):
        if what in created:
            try:
                delete(created[what])
            except (ClientError, BotoCoreError) as error:
                print(
                    f"twilio-callbacks verify: could not delete {created[what]}: {_why(error)}",
                    file=sys.stderr,
                )


@contextmanager
def alert_inbox(deployment: Deployment) -> Iterator[AlertInbox | str]:
    """The errors stack's alerts inbox, else a temporary queue subscribed to the alerts topic.

    The temporary queue and its subscription are deleted when the ``with`` block
    ends, however it ends (an error, Ctrl-C). Yields a reason instead of an inbox
    when there is none and one cannot be made.
    """
    pipeline, sqs = deployment.pipeline, deployment.client("sqs")
    inbox_url = pipeline.output(keys.ALERTS_INBOX_QUEUE_URL)
    if inbox_url:
        yield AlertInbox(AlertsInbox(sqs, inbox_url), f"the alerts inbox {inbox_url.rsplit('/', 1)[-1]}")
        return
    topic_arn = pipeline.output(keys.ALERTS_TOPIC_ARN)
    if not topic_arn:
        yield "the stacks name no AlertsTopicArn (is the errors stack deployed?)"
        return
    sns, name = deployment.client("sns"), f"{TEMPORARY_INBOX_PREFIX}{deployment.run_id}"
    created: dict[str, str] = {}
    try:
        try:
            _create_inbox(sqs, sns, topic_arn, name, created)
        except (ClientError, BotoCoreError) as error:
            yield f"no alerts inbox (AlertsInbox=Disabled), and no temporary one: {_why(error)}"
            return
        yield AlertInbox(AlertsInbox(sqs, created["queue_url"]), f"the temporary queue {name}")
    finally:
        _delete_inbox(sqs, sns, created)
