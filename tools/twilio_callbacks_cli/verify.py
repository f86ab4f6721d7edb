"""``verify``: send signed probe callbacks and follow them through every stage of the pipeline.

The one command to run after ``sam deploy`` (or against ``make run``). It
signs a few probe callbacks (`verify_probes`), posts them to the deployed
URLs, reads every store they should reach through the AWS APIs
(`verify_checks`) and prints one line per stage: pass, or FAIL with the likely
cause and where to look (`verify_stages`). It also reports, as findings, the
AWS behaviours the documentation leaves open that this run settled.

It waits as long as the deployed batching windows need (each stack's
``MaximumBatchingWindowInSeconds``, from DescribeStacks), plus a margin, and
stops as soon as everything is in. Exit 0 only when every stage passes.
"""

from __future__ import annotations

import argparse
import functools
import hmac
import importlib.util
import json
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from pipeline_harness.sender import HttpSender
from status_callbacks.domain.tokens import AuthTokens, AuthTokenSecretError
from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import INGEST, Pipeline, discover
from twilio_callbacks_cli.errors import EXIT_FAILED, EXIT_OK, PipelineUnavailableError
from twilio_callbacks_cli.output import print_json
from twilio_callbacks_cli.verify_checks import (
    TOKEN,
    AlertInbox,
    Deployment,
    Expectation,
    Observation,
    alert_inbox,
    integration_errors,
    refresh,
    validator_summaries,
)
from twilio_callbacks_cli.verify_probes import VERIFY_MARKER, Probe, Sent, build_probes, send_probes
from twilio_callbacks_cli.verify_stages import (
    Finding,
    Result,
    StageResult,
    accepted_stage,
    alerted_stage,
    archived_stage,
    findings,
    flagged_stage,
    queued_stage,
    routed_stage,
    stored_stage,
    validated_stage,
)

# Used for a stack whose DescribeStacks lists no MaximumBatchingWindowInSeconds (an older local
# runner, a stack without the parameter): the longest default any stack declares (the archive's).
DEFAULT_BATCHING_WINDOW_SECONDS = 60
# Beyond the batching windows: cold starts, SNS and EventBridge deliveries, the alerter and flagger.
MARGIN_SECONDS = 30
POLL_SECONDS = 2.0
# Allowance for the difference between this machine's clock and AWS's (stores are read "since").
CLOCK_SKEW_MS = 60_000
# api.yaml declares the custom query parameters; these are the original project's, if it is absent.
FALLBACK_PARAMETERS = ("id", "category")
INGEST_STACK_FOLDER = Path("aws_stacks") / "StatusCallbackHandler"
_ROLE_LABELS = {
    keys.INGEST: "ingest",
    keys.ARCHIVE: "archive",
    keys.STATUS_STORE: "status store",
    keys.ERROR_ROUTER: "errors",
}


@dataclass(frozen=True)
class Wait:
    """How long the run waits for its probes, and why."""

    seconds: float
    windows: Mapping[str, float]
    assumed: tuple[str, ...] = ()
    timeout: float | None = None

    @property
    def slowest_consumer(self) -> str | None:
        consumers = [role for role in self.windows if role != keys.INGEST]
        return max(consumers, key=lambda role: self.windows[role]) if consumers else None

    @property
    def suggested(self) -> float:
        """The ingest window, then the slowest consumer's, plus the margin."""
        slowest = self.slowest_consumer
        consumer = self.windows[slowest] if slowest else 0
        return self.windows.get(keys.INGEST, 0) + consumer + MARGIN_SECONDS

    def describe(self) -> str:
        slowest = self.slowest_consumer
        basis = f"batching windows: ingest {self.windows.get(keys.INGEST, 0):g} s"
        if slowest:
            basis += f" + slowest consumer {self.windows[slowest]:g} s ({_ROLE_LABELS[slowest]})"
        basis += f" + {MARGIN_SECONDS} s margin"
        if self.timeout is None:
            text = f"waiting up to {self.seconds:g} s ({basis}); stops once every probe is in"
        else:
            text = f"waiting up to {self.seconds:g} s (--timeout; {basis} = {self.suggested:g} s)"
        if self.assumed:
            stacks = "any stack" if len(self.assumed) == len(self.windows) else ", ".join(self.assumed)
            text += (
                f"\n({keys.BATCHING_WINDOW_PARAMETER} is not among the Parameters of {stacks}: "
                f"assumed {DEFAULT_BATCHING_WINDOW_SECONDS} s)"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "batching_windows": {_ROLE_LABELS[role]: value for role, value in self.windows.items()},
            "assumed_for": list(self.assumed),
            "timeout": self.timeout,
        }


def wait_for(pipeline: Pipeline, timeout: float | None = None) -> Wait:
    """The wait the deployed batching windows need: ingest's, then the slowest consumer's, plus a margin."""
    windows: dict[str, float] = {}
    assumed: list[str] = []
    for role, stack in pipeline.stacks.items():
        try:
            windows[role] = float(stack.parameters[keys.BATCHING_WINDOW_PARAMETER])
        except (KeyError, ValueError):
            windows[role] = DEFAULT_BATCHING_WINDOW_SECONDS
            assumed.append(stack.name)
    suggested = Wait(0, windows).suggested
    return Wait(timeout if timeout is not None else suggested, windows, tuple(assumed), timeout)


@dataclass(frozen=True)
class Token:
    """The token probes are signed with, and the token stage's line."""

    value: str = field(repr=False)
    stage: StageResult

    @property
    def mismatch(self) -> bool:
        return self.stage.result is Result.FAIL


def _same(one: str, other: str) -> bool:
    return hmac.compare_digest(one.encode("utf-8"), other.encode("utf-8"))


def resolve_token(given: str | None, secret_name: str | None, secretsmanager: Any) -> Token:
    """``--auth-token``, compared with the secret's AUTH_TOKEN when both exist; else the secret's."""
    tokens, unreadable = None, "the ingest stack names no secret"
    if secret_name:
        try:
            value = secretsmanager.get_secret_value(SecretId=secret_name)["SecretString"]
            tokens = AuthTokens.from_secret(json.loads(value))
        except (ClientError, BotoCoreError, KeyError, ValueError, AuthTokenSecretError) as error:
            # Only the error's type: a message could quote the secret.
            unreadable = f"secret {secret_name} not readable ({type(error).__name__})"
    if given is None:
        if tokens is None:
            raise PipelineUnavailableError(f"no auth token: {unreadable}; pass --auth-token")
        return Token(tokens.primary, StageResult(TOKEN, Result.PASS, f"AUTH_TOKEN of secret {secret_name}"))
    if tokens is None:
        return Token(given, StageResult(TOKEN, Result.PASS, f"--auth-token ({unreadable}: not compared)"))
    if _same(given, tokens.primary):
        detail = f"--auth-token, the same as AUTH_TOKEN of secret {secret_name}"
        return Token(given, StageResult(TOKEN, Result.PASS, detail))
    if tokens.secondary and _same(given, tokens.secondary):
        detail = f"--auth-token is AUTH_TOKEN_SECONDARY of secret {secret_name}: finish the rotation"
        return Token(given, StageResult(TOKEN, Result.PASS, detail))
    return Token(
        given,
        StageResult(
            TOKEN,
            Result.FAIL,
            f"--auth-token differs from AUTH_TOKEN of secret {secret_name}",
            "the secret's AUTH_TOKEN is not the token Twilio signs with",
            f"secret {secret_name} (AUTH_TOKEN) and the Auth Token in the Twilio console",
        ),
    )


def _sync_api_mapping() -> ModuleType | None:
    """The ingest stack's api.yaml reader, from this checkout (the working directory's first)."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = root / INGEST_STACK_FOLDER / "sync_api_mapping.py"
        if path.exists():
            spec = importlib.util.spec_from_file_location("sync_api_mapping", path)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module
    return None


def declared_parameters(params_url: str) -> tuple[tuple[str, ...], str]:
    """The query parameter names of the route CallbackWithParamsUrl names, and where they come from.

    The output URL names the route but carries no query string (its description
    says to append the names api.yaml declares), so the names come from
    api.yaml, the one place they are written; the run then checks what the
    deployed API really forwarded (a stale deploy differs).
    """
    route = "/" + urlsplit(params_url).path.rstrip("/").rsplit("/", 1)[-1]
    module = _sync_api_mapping()
    if module is not None:
        try:
            return tuple(module.declared_query_parameters(module.load_api(), route)), f"api.yaml, {route}"
        except (KeyError, ValueError, OSError):
            pass
    return FALLBACK_PARAMETERS, f"api.yaml not found for {route}: assumed"


@dataclass
class Report:
    """Everything one run found."""

    run_id: str
    probes: Sequence[Probe]
    wait: Wait
    stages: list[StageResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(stage.result is Result.PASS for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "marker": {VERIFY_MARKER: self.run_id},
            "urls": sorted({probe.url for probe in self.probes}),
            "wait": self.wait.to_dict(),
            "elapsed_seconds": round(self.elapsed, 1),
            "stages": [stage.to_dict() for stage in self.stages],
            "findings": [finding.to_dict() for finding in self.findings],
            "probes": [sent.to_dict() for sent in self.sent],
        }


def exit_code(report: Report) -> int:
    return EXIT_OK if report.ok else EXIT_FAILED


def heading(report: Report) -> str:
    callbacks = sum(len(probe.callbacks) for probe in report.probes)
    urls = " and ".join(sorted({probe.url for probe in report.probes}))
    return (
        f"run {report.run_id}: {len(report.probes)} probes ({callbacks} callbacks, form parameter "
        f"{VERIFY_MARKER}={report.run_id}) to {urls}\n{report.wait.describe()}"
    )


def render(report: Report) -> str:
    """One line per stage (then cause and where to look), the findings, and the verdict."""
    width = max(len(stage.name) for stage in report.stages)
    lines = []
    for stage in report.stages:
        lines.append(f"{stage.name:<{width}}  {stage.result:<4}  {stage.detail}")
        pad = " " * (width + 8)
        if stage.cause:
            lines.append(f"{pad}cause: {stage.cause}")
        if stage.look_at:
            lines.append(f"{pad}look at: {stage.look_at}")
    for finding in report.findings:
        lines.append(f"{'finding':<{width}}  {finding.level:<4}  {finding.topic}: {finding.detail}")
    failed = [stage for stage in report.stages if stage.result is not Result.PASS]
    verdict = (
        f"all {len(report.stages)} stages pass"
        if not failed
        else f"{len(failed)} of {len(report.stages)} stages did not pass: "
        + ", ".join(s.name for s in failed)
    )
    lines.append(f"verify: {verdict} ({report.elapsed:.1f} s)")
    return "\n".join(lines)


def _observe(
    deployment: Deployment, expected: Expectation, inbox: AlertInbox | str, seconds: float
) -> Observation:
    """Poll the stores until everything expected is in, or the wait is over."""
    observed = Observation()
    deadline = time.monotonic() + seconds
    readable_inbox = inbox if not isinstance(inbox, str) else None
    while True:
        refresh(deployment, expected, observed, readable_inbox)
        if expected.settled(observed, readable_inbox is not None) or time.monotonic() >= deadline:
            return observed
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def run(
    pipeline: Pipeline,
    client: Any,
    *,
    auth_token: str | None = None,
    timeout: float | None = None,
    announce: Callable[[str], None] | None = None,
    sender: HttpSender | None = None,
) -> Report:
    """Send the probes, follow them and judge every stage."""
    started = time.time()
    run_id = secrets.token_hex(6)
    callback_url = pipeline.require(keys.CALLBACK_URL, INGEST)
    params_url = pipeline.require(keys.CALLBACK_WITH_PARAMS_URL, INGEST)
    declared, source = declared_parameters(params_url)
    token = resolve_token(auth_token, pipeline.output(keys.AUTH_TOKEN_SECRET_NAME), client("secretsmanager"))
    report = Report(
        run_id, build_probes(run_id, callback_url, params_url, declared), wait_for(pipeline, timeout)
    )
    if announce is not None:
        announce(heading(report))
    deployment = Deployment(pipeline, client, run_id, int(started * 1000) - CLOCK_SKEW_MS)
    with alert_inbox(deployment) as inbox:
        report.sent = send_probes(report.probes, token.value, (sender or HttpSender()).exchange)
        expected = Expectation(tuple(report.sent))
        observed = _observe(deployment, expected, inbox, report.wait.seconds)
        access = integration_errors(deployment, report.sent)
        report.stages = [
            token.stage,
            accepted_stage(deployment, expected, access),
            queued_stage(expected),
            validated_stage(deployment, expected, observed, token.mismatch),
            archived_stage(deployment, expected, observed),
            stored_stage(deployment, expected, observed),
            routed_stage(deployment, expected, observed),
            alerted_stage(deployment, expected, observed, inbox),
            flagged_stage(deployment, expected, observed),
        ]
    summaries = validator_summaries(deployment) if expected.signed else "no probe reached the validator"
    report.findings = findings(expected, observed, access, summaries, declared=declared, source=source)
    report.elapsed = time.time() - started
    return report


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def register(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify",
        parents=list(parents),
        help="send probe callbacks and check every stage: API, queue, validator, S3, DynamoDB, errors",
        description=(
            "Sign a few probe callbacks as Twilio does, post them to the deployed URLs and follow each "
            "through every stage with the AWS APIs: one line per stage, pass or FAIL with the likely "
            "cause and where to look. Probes carry the form parameter "
            f"{VERIFY_MARKER}=<run id>; leave them out in Athena with "
            f"element_at(twilio, '{VERIFY_MARKER}') IS NULL. Exits 0 only when every stage passes."
        ),
    )
    parser.add_argument(
        "--auth-token",
        help="token Twilio signs with (default: AUTH_TOKEN of the stack's secret, which it is compared with)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="longest wait for the probes (default: the stacks' batching windows plus a margin)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(command=command)


def command(args: argparse.Namespace, target: AwsTarget) -> int:
    """Run ``verify`` against the stacks the options name."""
    pipeline = discover(target, args.stack_names)
    stream = sys.stderr if args.json else sys.stdout

    def announce(text: str) -> None:
        print(text, file=stream, flush=True)

    client = functools.cache(target.client)
    report = run(pipeline, client, auth_token=args.auth_token, timeout=args.timeout, announce=announce)
    if args.json:
        print_json(report.to_dict())
    else:
        print(render(report))
    return exit_code(report)
