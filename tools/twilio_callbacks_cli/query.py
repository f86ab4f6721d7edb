"""``query``: what analysts and on-call ask, answered from the stores.

- ``message SID``: a resource's callbacks and its current, lifecycle-aware status
  (the status store), and any request for it the validator rejected in the last
  7 days (the rejected-request store, a bounded number of objects read).
- ``errors``: error callbacks by code over a time range (the status store's
  sparse error index), for one code or every code in the routing table.
- ``number +E164``: the flags kept for a phone number (the error router's table).
- ``archive``: records read back from one day's S3 partition.
- ``alerts``: the alerts inbox, each alert as a person receives it, left in
  place unless ``--clear`` is given.

Lookups are the layer's own (`status_store`, `error_routing`, `archive`), so
the CLI never restates a key layout. Phone numbers inside callbacks are masked
unless ``--show-numbers`` is given; ``query number`` shows the number asked about.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from status_callbacks.adapters import dynamodb
from status_callbacks.domain import archive, routes
from status_callbacks.domain.lifecycle import lifecycle_position
from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.alerts_inbox import AlertsInbox
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import ARCHIVE, ERROR_ROUTER, INGEST, STATUS_STORE, Pipeline, discover
from twilio_callbacks_cli.errors import EXIT_OK, NotFoundError, UsageError
from twilio_callbacks_cli.output import E164, iso_ms, key_values, masked, print_json, table
from twilio_callbacks_cli.rejected import message_rejections, render_rejections
from twilio_callbacks_cli.rejected_store import RejectedStore
from twilio_callbacks_cli.timeframes import epoch_ms, parse_time

DEFAULT_SINCE = "24h"
DEFAULT_ARCHIVE_LIMIT = 20


# --- message -----------------------------------------------------------------------


def message_report(client: Any, table_name: str, sid: str, show_numbers: bool = False) -> dict[str, Any]:
    """A SID's history and current status; raises NotFoundError when nothing is stored."""
    events = dynamodb.events_of(client, table_name, sid)
    current = dynamodb.current_of(client, table_name, sid)
    if not events and current is None:
        raise NotFoundError(f"no callbacks stored for {sid}")
    if current is not None:
        status, product = current.get("status"), current.get("product")
    else:
        # The current view is written after the event items; until then the furthest event is current.
        furthest = max(
            events,
            key=lambda item: lifecycle_position(
                str(item.get("product")), item.get("status"), item.get("twilio") or {}
            ),
        )
        status, product = furthest.get("status"), furthest.get("product")
    return {
        "sid": sid,
        "product": product,
        "status": status,
        "error_code": current.get("error_code") if current else None,
        "updated_at": iso_ms(current.get("received_at")) if current else None,
        "events": [
            {
                "status": item.get("status"),
                "received_at": iso_ms(item.get("received_at")),
                "error_code": item.get("error_code"),
                "sequence_number": (item.get("twilio") or {}).get("SequenceNumber"),
                "route": item.get("route"),
                "event_id": item.get("event_id"),
                "custom": item.get("custom") or {},
                "twilio": masked(item.get("twilio") or {}, show_numbers),
            }
            for item in events
        ],
    }


def render_message(report: Mapping[str, Any]) -> str:
    header = key_values(
        [
            ("sid", report["sid"]),
            ("product", report["product"]),
            ("current status", report["status"]),
            ("error code", report["error_code"]),
            ("updated at", report["updated_at"]),
            ("callbacks", len(report["events"])),
        ]
    )
    rows = [
        [
            event["received_at"],
            event["status"],
            event["error_code"],
            event["sequence_number"],
            event["route"],
            event["custom"],
        ]
        for event in report["events"]
    ]
    text = header + "\n\n" + table(["received at", "status", "error", "seq", "route", "custom"], rows)
    rejected = render_rejections(report["rejected"], report["sid"]) if report.get("rejected") else None
    return f"{text}\n\n{rejected}" if rejected else text


# --- errors ------------------------------------------------------------------------


def errors_report(
    client: Any,
    table_name: str,
    codes: Sequence[str],
    since: datetime,
    until: datetime,
) -> dict[str, Any]:
    """Error callbacks for the codes in the range, oldest first, with counts per code."""
    found: list[dict[str, Any]] = []
    for code in codes:
        found.extend(dynamodb.errors_by_code(client, table_name, code, epoch_ms(since), epoch_ms(until)))
    found.sort(key=lambda item: (item.get("received_at", 0), str(item.get("sid"))))
    counts = Counter(str(item.get("error_code")) for item in found)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "codes": list(codes),
        "counts": {
            code: {"count": counts[code], "reason": routes.route_for(code).reason} for code in sorted(counts)
        },
        "errors": [
            {
                "received_at": iso_ms(item.get("received_at")),
                "error_code": item.get("error_code"),
                "sid": item.get("sid"),
                "status": item.get("status"),
                "product": item.get("product"),
                "account_sid": item.get("account_sid"),
            }
            for item in found
        ],
    }


def render_errors(report: Mapping[str, Any]) -> str:
    summary = table(
        ["code", "count", "reason"],
        [[code, entry["count"], entry["reason"]] for code, entry in report["counts"].items()],
    )
    rows = [
        [error["received_at"], error["error_code"], error["sid"], error["status"], error["product"]]
        for error in report["errors"]
    ]
    heading = f"errors from {report['since']} to {report['until']}"
    if not rows:
        return f"{heading}: none (codes searched: {', '.join(report['codes'])})"
    detail = table(["received at", "code", "sid", "status", "product"], rows)
    return f"{heading}\n\n{summary}\n\n{detail}"


# --- number ------------------------------------------------------------------------


def number_report(client: Any, table_name: str, number: str) -> dict[str, Any]:
    """The flags kept for a number; raises NotFoundError when it has none."""
    flags = dynamodb.flags_for_number(client, table_name, number)
    if not flags:
        raise NotFoundError(f"no flags for {number}")
    return {
        "phone_number": number,
        "flags": [
            {
                "error_code": flag.get("error_code"),
                "reason": flag.get("reason"),
                "severity": flag.get("severity"),
                "callbacks": flag.get("callback_count"),
                "first_seen_at": iso_ms(flag.get("first_seen_at")),
                "last_seen_at": iso_ms(flag.get("last_seen_at")),
                "last_sid": flag.get("last_sid"),
                "last_status": flag.get("last_status"),
            }
            for flag in sorted(flags, key=lambda flag: str(flag.get("error_code")))
        ],
    }


def render_number(report: Mapping[str, Any]) -> str:
    rows = [
        [
            flag["error_code"],
            flag["severity"],
            flag["callbacks"],
            flag["first_seen_at"],
            flag["last_seen_at"],
            flag["last_sid"],
            flag["reason"],
        ]
        for flag in report["flags"]
    ]
    return f"{report['phone_number']}\n\n" + table(
        ["code", "severity", "callbacks", "first seen", "last seen", "last sid", "reason"], rows
    )


# --- archive -----------------------------------------------------------------------


def archive_report(
    s3: Any,
    bucket: str,
    day: str,
    *,
    prefix: str = archive.ARCHIVE_PREFIX,
    sid: str | None = None,
    limit: int = DEFAULT_ARCHIVE_LIMIT,
    show_numbers: bool = False,
) -> dict[str, Any]:
    """Records of one day's partition (optionally one SID's), at most ``limit``, in key order."""
    partition = archive.partition_prefix(day, prefix)
    records: list[dict[str, Any]] = []
    objects_read = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=partition):
        for summary in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=summary["Key"])["Body"].read()
            objects_read += 1
            for record in archive.decode_records(body):
                if sid and record.get("sid") != sid:
                    continue
                record["twilio"] = masked(record.get("twilio") or {}, show_numbers)
                records.append(record)
                if len(records) >= limit:
                    return _archive_document(bucket, partition, objects_read, records, truncated=True)
    return _archive_document(bucket, partition, objects_read, records, truncated=False)


def _archive_document(
    bucket: str, partition: str, objects_read: int, records: list[dict[str, Any]], truncated: bool
) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "prefix": partition,
        "objects_read": objects_read,
        "truncated": truncated,
        "records": records,
    }


def render_archive(report: Mapping[str, Any]) -> str:
    heading = f"s3://{report['bucket']}/{report['prefix']} ({report['objects_read']} objects read)"
    rows = [
        [
            iso_ms(record.get("received_at")),
            record.get("product"),
            record.get("sid"),
            record.get("status"),
            record.get("error_code"),
            record.get("route"),
            record.get("custom") or {},
        ]
        for record in report["records"]
    ]
    if not rows:
        return f"{heading}: no records"
    more = "\n(limit reached; use --limit for more)" if report["truncated"] else ""
    return (
        heading
        + "\n\n"
        + table(["received at", "product", "sid", "status", "error", "route", "custom"], rows)
        + more
    )


# --- alerts ------------------------------------------------------------------------


def alerts_report(inbox: AlertsInbox, since: datetime, clear: bool = False) -> dict[str, Any]:
    """The alerts received since ``since``, oldest first; deleted when ``clear``, else left in the inbox."""
    received, truncated = inbox.receive()
    shown = [alert for alert in received if alert.sent_at >= epoch_ms(since)]
    cleared = 0
    try:
        if clear:
            cleared = inbox.delete(shown)
    finally:
        shown_ids = {alert.message_id for alert in shown} if clear else set()
        inbox.release([alert for alert in received if alert.message_id not in shown_ids])
    return {
        "queue_url": inbox.queue_url,
        "since": iso_ms(epoch_ms(since)),
        "truncated": truncated,
        "cleared": cleared,
        "alerts": [
            {
                "sent_at": iso_ms(alert.sent_at),
                "subject": alert.subject,
                "text": alert.text,
                "message_id": alert.message_id,
            }
            for alert in shown
        ],
    }


def render_alerts(report: Mapping[str, Any]) -> str:
    alerts = report["alerts"]
    heading = f"alerts since {report['since']}"
    if not alerts:
        return f"{heading}: none"
    cleared = report["cleared"]
    kept = f"{cleared} deleted from the inbox" if cleared else "left in the inbox (--clear deletes them)"
    more = "; more are waiting (limit reached)" if report["truncated"] else ""
    parts = [f"{heading}: {len(alerts)}, {kept}{more}"]
    for alert in alerts:
        subject = alert["subject"] or "(no subject)"
        parts.append(f"--- {alert['sent_at']}\n{subject}\n\n{alert['text'].rstrip()}")
    return "\n\n".join(parts)


def _alerts_inbox(pipeline: Pipeline, target: AwsTarget) -> AlertsInbox:
    url = pipeline.output(keys.ALERTS_INBOX_QUEUE_URL)
    if not url:
        stack = pipeline.stacks[ERROR_ROUTER].name if ERROR_ROUTER in pipeline.stacks else "the error stack"
        raise NotFoundError(
            f"{stack} has no alerts inbox (output {keys.ALERTS_INBOX_QUEUE_URL}): deploy it with the "
            "parameter AlertsInbox=Enabled (sam deploy --parameter-overrides AlertsInbox=Enabled), which "
            "subscribes a queue to the alerts topic; alerts sent before that are not in it"
        )
    return AlertsInbox(target.client("sqs"), url)


# --- command -----------------------------------------------------------------------


def register(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``query`` and its four questions."""
    parser = subparsers.add_parser(
        "query",
        parents=list(parents),
        help="look up a SID's history, errors by code, a number's flags, archived records",
        description="Answer on-call and analyst questions from the status store, error router and archive.",
    )
    questions = parser.add_subparsers(title="questions", metavar="QUESTION", dest="question", required=True)

    def question(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = questions.add_parser(name, parents=list(parents), help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print JSON instead of tables")
        return sub

    message = question("message", "a message's or call's callbacks and its current status")
    message.add_argument("sid", help="MessageSid (SM…/MM…), CallSid (CA…) or another resource SID")
    message.add_argument("--show-numbers", action="store_true", help="do not mask phone numbers")
    message.epilog = (
        "Requests for the SID the validator rejected in the last 7 days are shown too. Exit codes: 0, "
        "4 when no callbacks are stored for it (its rejected requests, if any, are printed first)."
    )

    errors = question("errors", "error callbacks by code over a time range")
    errors.add_argument(
        "--code",
        action="append",
        dest="codes",
        metavar="CODE",
        help="Twilio error code (repeatable; default: every code in the error routing table)",
    )
    errors.add_argument(
        "--since", default=DEFAULT_SINCE, help=f"1h, 30m, 7d, 2026-11-22 or ISO (default {DEFAULT_SINCE})"
    )
    errors.add_argument("--until", help="same forms as --since (default: now)")

    number = question("number", "the error flags kept for a phone number")
    number.add_argument("number", help="E.164 phone number, e.g. +15550100123")

    archived = question("archive", "records archived in S3 for one day")
    archived.add_argument("--date", help="UTC day YYYY-MM-DD (default: today)")
    archived.add_argument("--sid", help="only this resource's records")
    archived.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_ARCHIVE_LIMIT,
        help=f"most records to show (default {DEFAULT_ARCHIVE_LIMIT})",
    )
    archived.add_argument("--show-numbers", action="store_true", help="do not mask phone numbers")

    alerts = question("alerts", "the alerts inbox: each alert as a person receives it")
    alerts.add_argument(
        "--since", default=DEFAULT_SINCE, help=f"1h, 30m, 7d, 2026-11-22 or ISO (default {DEFAULT_SINCE})"
    )
    alerts.add_argument("--clear", action="store_true", help="delete the alerts shown from the inbox")
    alerts.epilog = "exit codes: 0 (also when there are none), 4 when the stack has no inbox (AlertsInbox)."
    parser.set_defaults(command=command)


def command(args: argparse.Namespace, target: AwsTarget, now: datetime | None = None) -> int:
    """Run one ``query`` question against the stack that owns its data."""
    moment = now or datetime.fromtimestamp(time.time(), tz=UTC)
    if args.question == "message":
        _message(args, target, moment)
    elif args.question == "alerts":
        pipeline = discover(target, args.stack_names, roles=[ERROR_ROUTER])
        inbox = _alerts_inbox(pipeline, target)
        _emit(alerts_report(inbox, parse_time(args.since, moment), args.clear), args.json, render_alerts)
    elif args.question == "errors":
        pipeline = discover(target, args.stack_names, roles=[STATUS_STORE])
        table_name = pipeline.require(keys.STATUS_TABLE_NAME, STATUS_STORE)
        since = parse_time(args.since, moment)
        until = parse_time(args.until, moment) if args.until else moment
        if since > until:
            raise UsageError("--since is after --until")
        codes = args.codes or sorted(routes.ROUTES)
        _emit(
            errors_report(target.client("dynamodb"), table_name, codes, since, until),
            args.json,
            render_errors,
        )
    elif args.question == "number":
        if not E164.match(args.number):
            raise UsageError(f"{args.number!r} is not an E.164 number like +15550100123")
        pipeline = discover(target, args.stack_names, roles=[ERROR_ROUTER])
        table_name = pipeline.require(keys.NUMBER_FLAGS_TABLE_NAME, ERROR_ROUTER)
        _emit(number_report(target.client("dynamodb"), table_name, args.number), args.json, render_number)
    else:
        pipeline = discover(target, args.stack_names, roles=[ARCHIVE])
        bucket = pipeline.require(keys.ARCHIVE_BUCKET_NAME, ARCHIVE)
        day = args.date or moment.strftime(archive.PARTITION_DATE_FORMAT)
        try:
            date.fromisoformat(day)
        except ValueError as error:
            raise UsageError(f"--date {day!r} is not YYYY-MM-DD") from error
        if args.limit < 1:
            raise UsageError("--limit must be at least 1")
        report = archive_report(
            target.client("s3"),
            bucket,
            day,
            prefix=pipeline.output(keys.ARCHIVE_PREFIX) or archive.ARCHIVE_PREFIX,
            sid=args.sid,
            limit=args.limit,
            show_numbers=args.show_numbers,
        )
        _emit(report, args.json, render_archive)
    return EXIT_OK


def _message(args: argparse.Namespace, target: AwsTarget, now: datetime) -> None:
    """A SID's history; rejected requests for it too, which answer "why is nothing stored?"."""
    pipeline = discover(target, args.stack_names, roles=[STATUS_STORE, INGEST])
    table_name = pipeline.require(keys.STATUS_TABLE_NAME, STATUS_STORE)
    rejected = None
    if pipeline.output(keys.REJECTED_BUCKET_NAME):
        rejected = message_rejections(RejectedStore.of(pipeline, target.client("s3")), args.sid, now)
    try:
        report = message_report(target.client("dynamodb"), table_name, args.sid, args.show_numbers)
    except NotFoundError:
        if not rejected or not rejected["requests"]:
            raise
        count = len(rejected["requests"])
        if args.json:
            print_json({"sid": args.sid, "status": None, "events": [], "rejected": rejected})
        else:
            print(render_rejections(rejected, args.sid))
        message = f"no callbacks stored for {args.sid}, but rejected requests for it are kept ({count})"
        raise NotFoundError(message) from None
    report["rejected"] = rejected
    _emit(report, args.json, render_message)


def _emit(report: Mapping[str, Any], as_json: bool, render: Any) -> None:
    if as_json:
        print_json(report)
    else:
        print(render(report))
