"""``send``: act as Twilio, posting signed status callbacks to the API.

Scenario generation lives in `scenarios` (pure); this module only sends. Each
lifecycle is one unit of work: its callbacks go out in their (possibly
shuffled) order from one worker, while ``--concurrency`` workers send
different lifecycles at once over kept-alive connections.

Against the local pipeline (an emulator endpoint), ``send`` then waits for the
ingest queue to drain and reports which of the requests it sent the validator
rejected, and why: the SQS message ids API Gateway answered with are looked up
in the rejected-request store. (On AWS that store is read by ``rejected list``.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline_harness.scenarios import (
    KNOWN_ERROR_CODES,
    Kind,
    Lifecycle,
    ScenarioOptions,
    generate,
    sign,
)
from pipeline_harness.sender import DEFAULT_TIMEOUT_SECONDS, HttpSender, Outcome, Summary, send_lifecycles
from status_callbacks.domain.tokens import AuthTokens, AuthTokenSecretError
from status_callbacks.domain.validation import RejectionReason
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import API_BASE_URL, AUTH_TOKEN_SECRET_NAME, INGEST, Pipeline, discover
from twilio_callbacks_cli.errors import EXIT_FAILED, EXIT_OK, PipelineUnavailableError, UsageError
from twilio_callbacks_cli.output import key_values, print_json, table
from twilio_callbacks_cli.progress import ProgressBar
from twilio_callbacks_cli.rejected_store import RejectedStore
from twilio_callbacks_cli.status import queue_depth

TOKEN_VARIABLE = "TWILIO_AUTH_TOKEN"  # noqa: S105 - a variable name, not a secret
ACCOUNT_SID_VARIABLE = "TWILIO_ACCOUNT_SID"
# How long the local validator gets to work through what was sent before rejections are counted.
DRAIN_SECONDS = 15.0
_DRAIN_POLL_SECONDS = 0.25
# SentTimestamp is the emulator's clock, this machine's: a minute covers any skew between the two reads.
_CLOCK_MARGIN_MS = 60_000


@dataclass(frozen=True)
class Rejections:
    """What the validator rejected among the requests sent (local pipeline only)."""

    checked: int
    by_reason: Counter[RejectionReason]
    # False when the ingest queue still held messages at the deadline: more may follow.
    drained: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.by_reason.total(),
            "by_reason": {reason.value: count for reason, count in self.by_reason.most_common()},
            "checked": self.checked,
            "ingest_queue_drained": self.drained,
        }


def read_auth_tokens(secretsmanager: Any, secret_name: str, hint: str = "") -> AuthTokens:
    """The tokens in the secret as it is now (GetSecretValue, no cache)."""
    try:
        secret = json.loads(secretsmanager.get_secret_value(SecretId=secret_name)["SecretString"])
        if not isinstance(secret, Mapping):
            raise AuthTokenSecretError("secret is not a JSON object")
        return AuthTokens.from_secret(secret)
    except (ClientError, BotoCoreError, KeyError, ValueError, AuthTokenSecretError) as error:
        # The token itself never appears in the message.
        raise PipelineUnavailableError(
            f"cannot read the auth token from secret {secret_name!r} ({type(error).__name__}){hint}"
        ) from error


def resolve_auth_token(args: argparse.Namespace, target: AwsTarget, secret_name: str | None) -> str:
    """``--auth-token``, else ``TWILIO_AUTH_TOKEN``, else the stack's Secrets Manager secret."""
    if args.auth_token:
        return str(args.auth_token)
    if os.environ.get(TOKEN_VARIABLE):
        return os.environ[TOKEN_VARIABLE]
    if not secret_name:
        raise UsageError(
            f"no auth token: pass --auth-token, set {TOKEN_VARIABLE}, or deploy the ingest stack"
        )
    hint = f"; pass --auth-token or set {TOKEN_VARIABLE}"
    return read_auth_tokens(target.client("secretsmanager"), secret_name, hint).primary


def validator_rejections(
    pipeline: Pipeline,
    target: AwsTarget,
    outcomes: Sequence[Outcome],
    since_ms: int,
) -> Rejections:
    """Wait (bounded) for the ingest queue to drain, then find the sent requests the validator kept."""
    sqs = target.client("sqs")
    ingest = [queue for queue in pipeline.work_queues() if queue.stack == pipeline.stacks[INGEST].name]
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        depths = [queue_depth(sqs, queue) for queue in ingest]
        drained = all(depth["messages"] == 0 and depth["in_flight"] == 0 for depth in depths)
        if drained or time.monotonic() >= deadline:
            break
        time.sleep(_DRAIN_POLL_SECONDS)
    message_ids = [outcome.message_id for outcome in outcomes if outcome.message_id]
    found = RejectedStore.of(pipeline, target.client("s3")).find(message_ids, since_ms - _CLOCK_MARGIN_MS)
    return Rejections(len(message_ids), Counter(request.reason for request in found.values()), drained)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a fraction between 0 and 1")
    return value


def name_value(text: str) -> tuple[str, str]:
    """An argparse type for NAME=VALUE options (the value may hold anything, "=" included)."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def _fraction_flag(group: Any, flag: str, help_text: str) -> None:
    """An option taking a fraction of callbacks: 0 when absent, all when given without a value."""
    group.add_argument(flag, type=_fraction, nargs="?", const=1.0, default=0.0, metavar="F", help=help_text)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``send`` subcommand."""
    parser = subparsers.add_parser(
        "send",
        parents=list(parents),
        help="act as Twilio: post signed status callbacks (lifecycles, errors, load)",
        description=textwrap.fill(
            "Post form-encoded status callbacks signed like Twilio's (X-Twilio-Signature over the exact "
            "URL). Each simulated message or call sends its whole lifecycle: messages queued -> sent -> "
            "delivered (or undelivered/failed with an ErrorCode), calls initiated -> ringing -> "
            "in-progress -> completed with SequenceNumber. The URL and auth token are discovered from "
            "the stacks unless given."
        ),
        epilog=(
            "examples:\n"
            "  twilio-callbacks send\n"
            "  twilio-callbacks send --kind call --count 5 --out-of-order --duplicates 0.2\n"
            '  twilio-callbacks send --param id=42 --param "category=alerts & more"\n'
            "  twilio-callbacks send --count 10000 --concurrency 32 --error-rate 0.05 --seed 7 --json\n"
            "  twilio-callbacks send --forged   # the validator rejects (and keeps) them\n\n"
            "Against the local pipeline the summary adds what the validator rejected\n"
            '(--json: "rejected"). "transport errors" (--json: "errors", "error_counts") are\n'
            "requests that got no HTTP response."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("where to send")
    target.add_argument(
        "--url", help="API base URL, or a full StatusCallback URL (default: stack output ApiBaseUrl)"
    )
    target.add_argument(
        "--auth-token", help=f"token to sign with (default: ${TOKEN_VARIABLE}, else the stack's secret)"
    )
    target.add_argument(
        "--account-sid", help=f"AccountSid to send (default: ${ACCOUNT_SID_VARIABLE}, else generated)"
    )
    scenario = parser.add_argument_group("what to send")
    scenario.add_argument(
        "--kind",
        choices=[kind.value for kind in Kind],
        default=Kind.MESSAGE.value,
        help="message (default), call, or mixed (about 70%% messages)",
    )
    scenario.add_argument(
        "--count", type=_positive, default=1, metavar="N", help="messages/calls to simulate (default 1)"
    )
    scenario.add_argument("--seed", type=int, help="make SIDs, numbers, outcomes and order reproducible")
    scenario.add_argument(
        "--error-rate",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="fraction ending undelivered/failed (messages) or busy/no-answer (calls)",
    )
    scenario.add_argument(
        "--error-code",
        action="append",
        dest="error_codes",
        metavar="CODE",
        help=f"error code(s) to use (repeatable; default {', '.join(KNOWN_ERROR_CODES)})",
    )
    _fraction_flag(
        scenario, "--out-of-order", "fraction of lifecycles whose callbacks arrive shuffled (flag alone: all)"
    )
    _fraction_flag(
        scenario,
        "--duplicates",
        "fraction of callbacks Twilio retries, sent twice identically (flag alone: all)",
    )
    scenario.add_argument(
        "--route",
        choices=["/twilio", "/twilio-params"],
        help="route to post to (default /twilio, or /twilio-params when --param is given)",
    )
    scenario.add_argument(
        "--param",
        action="append",
        type=name_value,
        default=[],
        metavar="NAME=VALUE",
        help="custom query parameter for /twilio-params (repeatable; any characters)",
    )
    _fraction_flag(scenario, "--forged", "fraction signed with a wrong token (flag alone: all)")
    _fraction_flag(scenario, "--unsigned", "fraction sent without X-Twilio-Signature (flag alone: all)")
    load = parser.add_argument_group("how to send")
    load.add_argument(
        "--concurrency", type=_positive, default=1, metavar="C", help="parallel senders (default 1)"
    )
    load.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds per request")
    load.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    load.add_argument(
        "--dry-run", action="store_true", help="print the signed requests as JSON lines instead of sending"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(command=command)


def scenario_options(args: argparse.Namespace) -> ScenarioOptions:
    """The scenario the options describe."""
    try:
        return ScenarioOptions(
            count=args.count,
            kind=Kind(args.kind),
            seed=args.seed,
            error_rate=args.error_rate,
            error_codes=tuple(args.error_codes or KNOWN_ERROR_CODES),
            out_of_order=args.out_of_order,
            duplicates=args.duplicates,
            forged=args.forged,
            unsigned=args.unsigned,
            route=args.route,
            custom_params=tuple(args.param),
            account_sid=args.account_sid or os.environ.get(ACCOUNT_SID_VARIABLE) or None,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error


def _print_summary(summary: Summary, rejections: Rejections | None, base_url: str, as_json: bool) -> None:
    report = {**summary.to_dict(), "rejected": rejections.to_dict() if rejections else None}
    if as_json:
        print_json({"url": base_url, **report})
        return
    latency = report["latency_ms"]
    print(
        key_values(
            [
                ("url", base_url),
                ("lifecycles", report["lifecycles"]),
                ("callbacks sent", report["sent"]),
                ("duplicates", report["duplicates"]),
                ("forged", report["forged"]),
                ("unsigned", report["unsigned"]),
                ("transport errors", report["errors"]),
                *_rejection_lines(rejections),
                ("elapsed", f"{report['elapsed_seconds']} s"),
                ("rate", f"{report['rate_per_second']} callbacks/s"),
                ("latency p50", f"{latency['p50']} ms"),
                ("latency p99", f"{latency['p99']} ms"),
            ]
        )
    )
    rows = [[status, count] for status, count in report["http_status_counts"].items()]
    rows += [[error, count] for error, count in report["error_counts"].items()]
    if rows:
        print()
        print(table(["response", "count"], rows))


def _rejection_lines(rejections: Rejections | None) -> list[tuple[str, str]]:
    if rejections is None:
        return []
    reasons = ", ".join(f"{reason.value} {count}" for reason, count in rejections.by_reason.most_common())
    line = f"{rejections.by_reason.total()} of {rejections.checked}" + (f" ({reasons})" if reasons else "")
    if not rejections.drained:
        line += f"; the ingest queue was not drained within {DRAIN_SECONDS:g} s, more may follow"
    lines = [("rejected by validator", line)]
    if rejections.by_reason:
        lines.append(("see", "twilio-callbacks rejected list --since 1h"))
    return lines


def _dry_run(lifecycles: Iterable[Lifecycle], base_url: str, token: str) -> None:
    for lifecycle in lifecycles:
        for callback in lifecycle.callbacks:
            request = sign(callback, base_url, token)
            line = {"url": request.url, "headers": dict(request.headers), "body": request.body}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")


def _local_rejections(
    pipeline: Pipeline | None, target: AwsTarget, args: argparse.Namespace, summary: Summary, started_ms: int
) -> Rejections | None:
    """The validator's rejections of what was sent, when the emulator runs the ingest stack.

    None when it does not: ``--url`` may point at something else entirely.
    """
    try:
        pipeline = pipeline or discover(target, args.stack_names, roles=[INGEST])
        if INGEST not in pipeline.stacks:
            return None
        return validator_rejections(pipeline, target, summary.outcomes, started_ms)
    except PipelineUnavailableError:
        return None


def command(args: argparse.Namespace, target: AwsTarget) -> int:
    """Run ``send``: discover URL and token unless given, send, summarise."""
    options = scenario_options(args)
    base_url = args.url
    secret_name = None
    pipeline = None
    needs_stack = not base_url or not (args.auth_token or os.environ.get(TOKEN_VARIABLE))
    if needs_stack:
        pipeline = discover(target, args.stack_names, roles=[INGEST])
        base_url = base_url or pipeline.require(API_BASE_URL, INGEST)
        secret_name = pipeline.output(AUTH_TOKEN_SECRET_NAME)
    token = resolve_auth_token(args, target, secret_name)
    lifecycles = list(generate(options))
    if args.dry_run:
        _dry_run(lifecycles, base_url, token)
        return EXIT_OK
    total = sum(len(lifecycle.callbacks) for lifecycle in lifecycles)
    started_ms = int(time.time() * 1000)
    show_progress = not args.no_progress and sys.stderr.isatty()
    with ProgressBar(total, "callbacks", enabled=show_progress) as progress:
        summary = send_lifecycles(
            lifecycles,
            base_url,
            token,
            concurrency=args.concurrency,
            on_sent=progress.advance,
            sender=HttpSender(timeout=args.timeout).send,
        )
    rejections = None
    if target.configured_endpoint_url is not None:
        rejections = _local_rejections(pipeline, target, args, summary, started_ms)
    _print_summary(summary, rejections, base_url, args.json)
    if summary.sent and summary.failures == summary.sent and all(o.status is None for o in summary.outcomes):
        raise PipelineUnavailableError(f"no callback reached {base_url}: is the API running?")
    return EXIT_OK if summary.failures == 0 else EXIT_FAILED
