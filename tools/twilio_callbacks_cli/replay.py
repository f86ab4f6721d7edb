"""``rejected replay``: validate kept requests again with the configuration of now, publish what holds.

Tokens are read fresh from the secret (no cache), PublicBaseUrl, the API's
domain and routes from the ingest stack's outputs; validation and publishing
are the validator's own (`status_callbacks`), so a replayed request gives the
record, and event id, it would have had the first time and no sink doubles it.
Published requests leave the store; the others stay, under their new reason
if it changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from twilio_callbacks_cli.discovery import INGEST, Pipeline
from twilio_callbacks_cli.output import table
from twilio_callbacks_cli.rejected_store import (
    RejectedStore,
)
from twilio_callbacks_cli.send import read_auth_tokens

# How api.yaml's custom query parameters are forwarded: Query.<position>.<name>.
QUERY_ATTRIBUTE_PREFIX = "Query."


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
