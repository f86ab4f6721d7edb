"""``rejected``: the requests the validator refused, kept in the ingest stack's store.

- ``list``: counts by reason (each with its remedy) and by hour, from the
  object keys alone, then the latest requests as samples.
- ``replay``: once the cause is fixed, validate every kept request again with
  the configuration of now (tokens read fresh from the secret, the ingest
  stack's PublicBaseUrl, API domain and routes), exactly as the validator
  does, and publish the ones that now hold with the layer's publish code: the
  same request gives the same record and event id, so sinks never duplicate.
  Published requests leave the store; the others stay, under their new
  reason if it changed. A second run finds nothing new to do.
"""

from __future__ import annotations

import argparse
import re
import textwrap
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from status_callbacks.domain.rejected import RejectedRequest
from status_callbacks.domain.validation import (
    RejectionReason,
)
from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import INGEST, discover
from twilio_callbacks_cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from twilio_callbacks_cli.output import iso_ms, masked, print_json, table
from twilio_callbacks_cli.rejected_store import (
    RejectedStore,
    callback_sid,
    form_params,
    replay_command,
    route_of,
)
from twilio_callbacks_cli.replay import Configuration, Replay, ReplayResult, render_replay
from twilio_callbacks_cli.send import name_value
from twilio_callbacks_cli.timeframes import epoch_ms, parse_time

DEFAULT_SINCE = "24h"
DEFAULT_SAMPLES = 20
# What api.yaml can declare as a query parameter name (forwarded as Query.<position>.<name>).
_QUERY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_REASONS = [reason.value for reason in RejectionReason]


def _hour(epoch_ms_value: int) -> str:
    return datetime.fromtimestamp(epoch_ms_value / 1000, tz=UTC).strftime("%Y-%m-%dT%H:00Z")


# --- list ------------------------------------------------------------------------------


def sample(request: RejectedRequest, show_numbers: bool) -> dict[str, Any]:
    """One kept request as people see it: never the signature, numbers masked unless asked."""
    params = masked(form_params(request), show_numbers)
    return {
        "received_at": iso_ms(request.received_at),
        "route": route_of(request),
        "sid": callback_sid(request),
        "to": params.get("To"),
        "reason": request.reason.value,
        "detail": request.detail or None,
        "source_ip": request.source_ip,
        "message_id": request.message_id,
        "params": params,
    }


def list_report(
    store: RejectedStore,
    since: datetime,
    until: datetime,
    *,
    since_text: str,
    reasons: Sequence[RejectionReason] = (),
    limit: int = DEFAULT_SAMPLES,
    show_numbers: bool = False,
) -> dict[str, Any]:
    """Counts by reason and hour from the keys, then the latest ``limit`` requests."""
    since_ms, until_ms = epoch_ms(since), epoch_ms(until)
    counts = store.counts(since_ms, until_ms, reasons)
    hourly = store.hourly(since_ms, until_ms, reasons)
    samples: list[dict[str, Any]] = []
    for _, request in store.requests(since_ms, until_ms, reasons, newest_first=True):
        if len(samples) >= limit:
            break
        samples.append(sample(request, show_numbers))
    total = counts.total()
    return {
        "bucket": store.bucket,
        "since": iso_ms(since_ms),
        "until": iso_ms(until_ms),
        "total": total,
        "by_reason": {
            reason.value: {"count": count, "remedy": reason.remedy} for reason, count in counts.most_common()
        },
        "by_hour": {_hour(hour): hourly[hour] for hour in sorted(hourly)},
        "samples": samples,
        "replay_command": replay_command(since_text, reasons) if total else None,
    }


def render_list(report: Mapping[str, Any]) -> str:
    heading = f"rejected requests since {report['since']}"
    if not report["total"]:
        return f"{heading}: none"
    reasons = table(
        ["reason", "requests", "remedy"],
        [[reason, entry["count"], entry["remedy"]] for reason, entry in report["by_reason"].items()],
    )
    hours = table(["hour (UTC)", "requests"], list(report["by_hour"].items()))
    rows = [
        [s["received_at"], s["route"], s["sid"], s["to"], s["reason"], s["detail"], s["source_ip"]]
        for s in report["samples"]
    ]
    samples = table(["received at", "route", "sid", "to", "reason", "detail", "source ip"], rows)
    return "\n\n".join(
        [
            f"{heading}: {report['total']} (s3://{report['bucket']})",
            reasons,
            hours,
            f"latest {len(rows)}:\n{samples}",
            f"once the cause is fixed: {report['replay_command']}  (add --dry-run to preview)",
        ]
    )


# --- replay ----------------------------------------------------------------------------


# --- command ---------------------------------------------------------------------------


def _query_parameter(text: str) -> tuple[str, str]:
    name, value = name_value(text)
    if not _QUERY_NAME.match(name):
        raise argparse.ArgumentTypeError(f"{name!r} is not a query parameter name api.yaml can declare")
    return name, value


def register(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``rejected list`` and ``rejected replay``."""
    parser = subparsers.add_parser(
        "rejected",
        parents=list(parents),
        help="requests the validator refused: list them, replay them once the cause is fixed",
        description=textwrap.fill(
            "The validator keeps every request it refuses (ingest stack output RejectedBucketName), with the "
            "reason. `list` shows them; `replay` validates them again with the current configuration and "
            "publishes those that now hold, exactly once."
        ),
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)

    def action(name: str, help_text: str, description: str, epilog: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name,
            parents=list(parents),
            help=help_text,
            description=textwrap.fill(description),
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "--since", default=DEFAULT_SINCE, help=f"1h, 2d, 2026-12-01 or ISO (default {DEFAULT_SINCE})"
        )
        sub.add_argument(
            "--reason",
            action="append",
            dest="reasons",
            choices=_REASONS,
            metavar="REASON",
            help="only this reason (repeatable): " + ", ".join(_REASONS),
        )
        sub.add_argument("--json", action="store_true", help="print JSON")
        return sub

    listing = action(
        "list",
        "counts by reason and hour, with remedies, and the latest requests",
        "Count the kept requests by reason (with what to fix) and by hour from the object keys alone, then "
        "show the latest ones: time, route, resource SID, reason, detail, source IP.",
        "exit codes: 0 (also when nothing was rejected, like `query errors`), 3 when the ingest stack or "
        "its store is missing.",
    )
    listing.add_argument("--limit", type=int, default=DEFAULT_SAMPLES, help="samples to show (default 20)")
    listing.add_argument("--show-numbers", action="store_true", help="do not mask phone numbers")

    replaying = action(
        "replay",
        "validate kept requests again with the current configuration; publish those that now hold",
        "Read the auth tokens from the secret now and PublicBaseUrl, the API domain and routes from the "
        "ingest stack, validate every kept request as the validator does and publish the valid ones to the "
        "topic (same record, same event id). Published requests leave the store; the rest stay, under their "
        "new reason if it changed. Running it again changes nothing.",
        "examples:\n"
        "  twilio-callbacks rejected replay --dry-run\n"
        "  twilio-callbacks rejected replay --since 3d --reason InvalidSignature\n"
        "  twilio-callbacks rejected replay --query campaign=spring   # undeclared in api.yaml\n\n"
        "exit codes: 0 (still-rejected requests are expected: forgeries stay kept), 1 when a valid request "
        "could not be published (it stays kept; run again), 3 when the ingest stack or secret is "
        "unavailable.",
    )
    replaying.add_argument("--dry-run", action="store_true", help="show what would happen; change nothing")
    replaying.add_argument(
        "--query",
        action="append",
        type=_query_parameter,
        default=[],
        metavar="NAME=VALUE",
        help=(
            "a query parameter the StatusCallback URL carried that api.yaml does not declare (so API Gateway "
            "did not forward it); tried after the forwarded ones, only for requests that fail without it"
        ),
    )
    parser.set_defaults(command=command)


def command(args: argparse.Namespace, target: AwsTarget, now: datetime | None = None) -> int:
    """Run ``rejected list`` or ``rejected replay``."""
    moment = now or datetime.fromtimestamp(time.time(), tz=UTC)
    since = parse_time(args.since, moment)
    if since > moment:
        raise UsageError("--since is in the future")
    reasons = [RejectionReason(reason) for reason in args.reasons or ()]
    pipeline = discover(target, args.stack_names, roles=[INGEST])
    store = RejectedStore.of(pipeline, target.client("s3"))
    if args.action == "list":
        if args.limit < 0:
            raise UsageError("--limit must not be negative")
        report = list_report(
            store,
            since,
            moment,
            since_text=args.since,
            reasons=reasons,
            limit=args.limit,
            show_numbers=args.show_numbers,
        )
        if args.json:
            print_json(report)
        else:
            print(render_list(report))
        return EXIT_OK
    configuration = Configuration.current(pipeline, target, args.query)
    result = Replay(
        store,
        target.client("sns"),
        pipeline.require(keys.TOPIC_ARN, INGEST),
        configuration,
        ReplayResult(str(iso_ms(epoch_ms(since))), args.dry_run),
    ).run(epoch_ms(since), epoch_ms(moment), reasons)
    if args.json:
        print_json(result.to_dict())
    else:
        print(render_replay(result))
    return EXIT_FAILED if result.total("not_published") else EXIT_OK


# --- one SID's rejected requests (``query message``) --------------------------------------

REJECTED_LOOKBACK = "7d"
# Objects read when looking a SID up in the rejected store, newest first: bounded, and said so.
MAX_REJECTED_OBJECTS = 200


def message_rejections(store: RejectedStore, sid: str, now: datetime) -> dict[str, Any]:
    """Requests for this SID the validator rejected in the last 7 days (newest objects, bounded)."""
    search = store.for_sid(sid, epoch_ms(parse_time(REJECTED_LOOKBACK, now)), MAX_REJECTED_OBJECTS)
    oldest = search.requests[0].received_at if search.requests else None
    return {
        "window": REJECTED_LOOKBACK,
        "objects_read": search.objects_read,
        "objects_in_window": search.objects_total,
        "truncated": search.truncated,
        "requests": [
            {
                "received_at": iso_ms(request.received_at),
                "route": route_of(request),
                "reason": request.reason.value,
                "detail": request.detail or None,
                "remedy": request.reason.remedy,
                "message_id": request.message_id,
            }
            for request in search.requests
        ],
        # From the day of the oldest one: the command still covers them all tomorrow.
        "replay_command": replay_command(str(iso_ms(oldest))[:10]) if oldest is not None else None,
    }


def render_rejections(rejected: Mapping[str, Any], sid: str) -> str | None:
    """The rejected requests for a SID, or None when there is nothing to say."""
    lines = []
    if rejected["requests"]:
        rows = [[r["received_at"], r["route"], r["reason"], r["detail"]] for r in rejected["requests"]]
        lines += [
            f"requests for {sid} rejected in the last 7 days: {len(rows)}",
            table(["received at", "route", "reason", "detail"], rows),
            *sorted({f"{r['reason']}: {r['remedy']}" for r in rejected["requests"]}),
            f"they are kept; once the cause is fixed: {rejected['replay_command']}",
        ]
    if rejected["truncated"]:
        lines.append(
            f"(searched the newest {rejected['objects_read']} of {rejected['objects_in_window']} "
            "rejected-request objects of the last 7 days; `twilio-callbacks rejected list --since 7d` "
            "counts them all)"
        )
    return "\n".join(lines) if lines else None
