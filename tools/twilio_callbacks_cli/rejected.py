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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from status_callbacks.adapters.sns import publish_entries
from status_callbacks.domain.forwarded import VALUE_MARKER
from status_callbacks.domain.publishing import merge_duplicates
from status_callbacks.domain.rejected import RejectedKey, RejectedRequest
from status_callbacks.domain.tokens import AuthTokens
from status_callbacks.domain.validation import (
    Accepted,
    Destination,
    Rejection,
    RejectionReason,
    validate_callback,
)
from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import INGEST, Pipeline, discover
from twilio_callbacks_cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from twilio_callbacks_cli.output import iso_ms, print_json, table
from twilio_callbacks_cli.query import epoch_ms, masked, parse_time
from twilio_callbacks_cli.rejected_store import (
    RejectedStore,
    callback_sid,
    form_params,
    replay_command,
    route_of,
)
from twilio_callbacks_cli.send import name_value, read_auth_tokens

DEFAULT_SINCE = "24h"
DEFAULT_SAMPLES = 20
QUERY_ATTRIBUTE_PREFIX = "Query."
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


@dataclass(frozen=True)
class Configuration:
    """What the validator decides with, as deployed now."""

    tokens: AuthTokens
    destination: Destination
    public_base_url: str | None = None
    # Query parameters the StatusCallback URL carried that API Gateway did not forward.
    extra_query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def current(
        cls, pipeline: Pipeline, target: AwsTarget, extra_query: Sequence[tuple[str, str]] = ()
    ) -> Configuration:
        """Tokens read from the secret now (no cache); the rest from the ingest stack's outputs."""
        secret_name = pipeline.require(keys.AUTH_TOKEN_SECRET_NAME, INGEST)
        domain = pipeline.require(keys.EXECUTE_API_DOMAIN, INGEST)
        routes = pipeline.require(keys.CALLBACK_ROUTES, INGEST)
        return cls(
            tokens=read_auth_tokens(target.client("secretsmanager"), secret_name),
            destination=Destination.of(domain, routes),
            public_base_url=pipeline.output(keys.PUBLIC_BASE_URL) or None,
            extra_query=tuple(extra_query),
        )


def with_query(attributes: Mapping[str, str], extra: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Forwarded attributes plus query parameters API Gateway did not forward, after the declared ones."""
    declared = [name.split(".", 2) for name in attributes if name.startswith(QUERY_ATTRIBUTE_PREFIX)]
    forwarded = {parts[2] for parts in declared if len(parts) == 3}
    position = max((int(parts[1]) for parts in declared if len(parts) == 3 and parts[1].isdigit()), default=0)
    widened = dict(attributes)
    for name, value in extra:
        if name not in forwarded:
            position += 1
            widened[f"{QUERY_ATTRIBUTE_PREFIX}{position}.{name}"] = VALUE_MARKER + value
    return widened


def revalidate(request: RejectedRequest, configuration: Configuration) -> Accepted | Rejection:
    """The validator's decision on this request under the current configuration.

    The request is read as it was queued first; only if that fails are the
    extra query parameters tried, so they never change a request they do not
    belong to (a signature holds for one URL only).
    """

    def decide(kept: RejectedRequest) -> Accepted | Rejection:
        return validate_callback(
            kept.body,
            kept.message_attributes(),
            configuration.tokens,
            received_at=kept.received_at,
            public_base_url=configuration.public_base_url,
            destination=configuration.destination,
        )

    result = decide(request)
    if isinstance(result, Rejection) and configuration.extra_query:
        attributes = with_query(request.attributes, configuration.extra_query)
        widened = decide(replace(request, attributes=attributes))
        if isinstance(widened, Accepted):
            return widened
    return result


@dataclass
class ReasonTally:
    """Requests kept for one reason: what a replay made of them."""

    checked: int = 0
    published: int = 0
    still_rejected: int = 0
    not_published: int = 0
    # Reasons of the still-rejected ones whose reason changed.
    now: Counter[RejectionReason] = field(default_factory=Counter)


@dataclass
class ReplayResult:
    """What one replay did (or, dry, would do)."""

    since: str
    dry_run: bool
    tallies: dict[RejectionReason, ReasonTally] = field(default_factory=dict)
    objects_read: int = 0
    objects_rewritten: int = 0
    objects_deleted: int = 0
    callbacks_published: int = 0
    publish_errors: Counter[str] = field(default_factory=Counter)

    def tally(self, reason: RejectionReason) -> ReasonTally:
        return self.tallies.setdefault(reason, ReasonTally())

    def total(self, name: str) -> int:
        return sum(int(getattr(tally, name)) for tally in self.tallies.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "dry_run": self.dry_run,
            "checked": self.total("checked"),
            "published": self.total("published"),
            "callbacks_published": self.callbacks_published,
            "still_rejected": self.total("still_rejected"),
            "not_published": self.total("not_published"),
            "publish_errors": dict(self.publish_errors),
            "by_reason": {
                reason.value: {
                    "checked": tally.checked,
                    "published": tally.published,
                    "still_rejected": tally.still_rejected,
                    "not_published": tally.not_published,
                    "now": {now.value: count for now, count in tally.now.most_common()},
                }
                for reason, tally in sorted(self.tallies.items())
            },
            "objects_read": self.objects_read,
            "objects_rewritten": self.objects_rewritten,
            "objects_deleted": self.objects_deleted,
        }


class Replay:
    """Re-validates kept requests object by object, publishes what now holds, settles each object.

    Callbacks are published once per run whatever object holds them (by event
    id), and a request kept twice (an interrupted settle) is decided once (by
    SQS message id). Each object is settled right after its publish, so an
    interrupted run leaves every request either published or still kept.
    """

    def __init__(
        self,
        store: RejectedStore,
        sns: Any,
        topic_arn: str,
        configuration: Configuration,
        result: ReplayResult,
    ) -> None:
        self.store = store
        self.sns = sns
        self.topic_arn = topic_arn
        self.configuration = configuration
        self.result = result
        self._outcomes: dict[str, Accepted | Rejection] = {}
        self._published_events: set[str] = set()
        self._published_messages: set[str] = set()

    def run(self, since_ms: int, until_ms: int, reasons: Sequence[RejectionReason] = ()) -> ReplayResult:
        for key in self.store.keys(since_ms, until_ms, reasons):
            self._replay(key, since_ms, until_ms)
        return self.result

    def _replay(self, key: RejectedKey, since_ms: int, until_ms: int) -> None:
        requests = self.store.read(key)
        self.result.objects_read += 1
        fresh = [
            request
            for request in requests
            if since_ms <= request.received_at <= until_ms and request.message_id not in self._outcomes
        ]
        for request in fresh:
            self._outcomes[request.message_id] = revalidate(request, self.configuration)
            self.result.tally(request.reason).checked += 1
        self._publish(fresh)
        for request in fresh:
            self._count(request)
        remaining = [kept for kept in (self._kept(request) for request in requests) if kept is not None]
        if remaining == requests or self.result.dry_run:
            return
        self.store.settle(key, remaining)
        if remaining:
            self.result.objects_rewritten += 1
        else:
            self.result.objects_deleted += 1

    def _publish(self, fresh: list[RejectedRequest]) -> None:
        accepted = [
            (request.message_id, decision.record)
            for request in fresh
            if isinstance(decision := self._outcomes[request.message_id], Accepted)
        ]
        done = self._published_events
        entries = merge_duplicates((mid, record) for mid, record in accepted if record.event_id not in done)
        failed: set[str] = set()
        if entries and not self.result.dry_run:
            outcome = publish_entries(self.sns, self.topic_arn, entries)
            self.result.publish_errors.update(outcome.errors)
            failed = {entry.record.event_id for entry in outcome.failed}
        for entry in entries:
            if entry.record.event_id not in failed:
                self._published_events.add(entry.record.event_id)
                self.result.callbacks_published += 1
        self._published_messages.update(
            message_id for message_id, record in accepted if record.event_id in self._published_events
        )

    def _count(self, request: RejectedRequest) -> None:
        tally = self.result.tally(request.reason)
        outcome = self._outcomes[request.message_id]
        if request.message_id in self._published_messages:
            tally.published += 1
        elif isinstance(outcome, Accepted):
            tally.not_published += 1
        else:
            tally.still_rejected += 1
            if outcome.reason is not request.reason:
                tally.now[outcome.reason] += 1

    def _kept(self, request: RejectedRequest) -> RejectedRequest | None:
        """The request as the store keeps it after this run; None once published."""
        if request.message_id in self._published_messages:
            return None
        outcome = self._outcomes.get(request.message_id)
        if isinstance(outcome, Rejection) and outcome.reason is not request.reason:
            return replace(request, reason=outcome.reason, detail=outcome.detail)
        return request


def render_replay(result: ReplayResult) -> str:
    report = result.to_dict()
    dry = " (dry run: nothing published, nothing changed)" if result.dry_run else ""
    heading = f"replay of the requests rejected since {result.since}, with the current configuration{dry}"
    if not report["checked"]:
        return f"{heading}: nothing kept"
    published = "would publish" if result.dry_run else "published"
    failures = bool(report["not_published"])
    headers = ["reason", "checked", published, "still rejected"]
    headers += ["not published"] if failures else []
    rows = [
        [
            reason,
            entry["checked"],
            entry["published"],
            entry["still_rejected"],
            *([entry["not_published"]] if failures else []),
            ", ".join(f"{now} {count}" for now, count in entry["now"].items()) or None,
        ]
        for reason, entry in report["by_reason"].items()
    ]
    lines = [
        heading,
        "",
        table([*headers, "now rejected as"], rows),
        "",
        f"{report['published']} requests {published} as {report['callbacks_published']} callbacks; "
        f"{report['still_rejected']} still rejected and kept; "
        f"{report['objects_rewritten']} objects rewritten, {report['objects_deleted']} deleted",
    ]
    if report["not_published"]:
        codes = ", ".join(f"{code} {count}" for code, count in report["publish_errors"].items())
        lines.append(
            f"{report['not_published']} valid requests were not published ({codes}); "
            "they stay kept: run replay again"
        )
    still = _still_rejected_reasons(result)
    if still:
        lines += ["", "still rejected:"] + [f"  {reason.value}: {reason.remedy}" for reason in still]
    return "\n".join(lines)


def _still_rejected_reasons(result: ReplayResult) -> list[RejectionReason]:
    reasons: Counter[RejectionReason] = Counter()
    for reason, tally in result.tallies.items():
        reasons[reason] += tally.still_rejected - tally.now.total()
        reasons.update(tally.now)
    return [reason for reason, count in reasons.most_common() if count > 0]


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
