"""Each stage's line of the ``verify`` report, and the AWS behaviours the run settled.

Pure: every function reads what `verify_checks` observed and returns a
`StageResult` (pass/FAIL with the likely cause and where to look) or
`Finding`\\ s. A stage a failure upstream kept probes from reaching fails by
pointing at that stage rather than guessing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from status_callbacks.domain.validation import RejectionReason
from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.discovery import DEAD_LETTER_SUFFIX
from twilio_callbacks_cli.output import mask_number
from twilio_callbacks_cli.verify_checks import (
    ACCEPTED,
    ALERTED,
    ARCHIVED,
    COMPLETED,
    FLAGGED,
    QUEUED,
    ROUTED,
    STORED,
    VALIDATED,
    AlertInbox,
    Deployment,
    Expectation,
    Observation,
)
from twilio_callbacks_cli.verify_probes import PROBE_ERROR_CODE, ProbeKind, Sent

REDRIVE = "`twilio-callbacks redrive`"
REPLAY = "`twilio-callbacks rejected list`, then `twilio-callbacks rejected replay` once fixed"
# The probes every deployment must accept; the other two test behaviours AWS leaves undocumented.
CORE_PROBES = (ProbeKind.LIFECYCLE, ProbeKind.CALL, ProbeKind.CUSTOM_PARAMS)
AccessLog = Mapping[str, str] | str


class Result(StrEnum):
    PASS = "pass"  # noqa: S105 - a result, not a password
    FAIL = "FAIL"
    SKIP = "skip"  # could not be checked here, which is not a pass


class Level(StrEnum):
    INFO = "info"
    WARN = "WARN"


@dataclass(frozen=True)
class StageResult:
    """One stage's line, with the likely cause and where to look when it did not pass."""

    name: str
    result: Result
    detail: str
    cause: str | None = None
    look_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "result": str(self.result),
            "detail": self.detail,
            "cause": self.cause,
            "look_at": self.look_at,
        }


@dataclass(frozen=True)
class Finding:
    """An AWS behaviour the documentation leaves open, as this run saw it."""

    level: Level
    topic: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"level": str(self.level), "topic": self.topic, "detail": self.detail}


def _ok(sent: Sent) -> bool:
    return sent.status is not None and 200 <= sent.status < 300


def _answer(sent: Sent) -> str:
    return str(sent.status) if sent.status is not None else f"no answer ({sent.error})"


def not_reached(name: str, upstream: str) -> StageResult:
    return StageResult(name, Result.FAIL, "no probe got this far", f"see {upstream}")


def _unreadable(name: str, observed: Observation) -> StageResult | None:
    if name not in observed.unreadable:
        return None
    return StageResult(
        name,
        Result.FAIL,
        f"could not read: {observed.unreadable[name]}",
        "the store is not readable with these credentials, or its stack is not deployed",
        "`twilio-callbacks status`",
    )


def _integration_error(sent: Sent, access: AccessLog) -> str:
    if isinstance(access, str):
        return f"access log {access}"
    return f"integrationError {access.get(sent.request_id or '', '(no access log line yet)')!r}"


def consumer_cause(deployment: Deployment, label: str, queue: str, function_key: str) -> tuple[str, str]:
    """Likely cause and where to look when a consumer's records are missing, from its queue depths."""
    counts, depths = deployment.depths(queue)
    waiting, in_flight = counts.get(queue, (0, 0))
    dead = sum(sum(count) for name, count in counts.items() if name.endswith(DEAD_LETTER_SUFFIX))
    function = deployment.pipeline.output(function_key) or label
    look_at = f"its log group (function {function}) and {queue}{DEAD_LETTER_SUFFIX}Queue, then {REDRIVE}"
    if dead or in_flight:
        return f"{label} is failing ({depths})", look_at
    if waiting:
        return f"{label} is not taking messages off {queue}Queue ({depths})", look_at
    return (
        f"nothing waits for {label} ({depths}): the topic did not deliver (subscription, filter or "
        "queue policy), or a batching window outlasted the wait (--timeout)",
        f"the subscriptions of {deployment.pipeline.output(keys.TOPIC_ARN)}",
    )


def accepted_stage(deployment: Deployment, expected: Expectation, access: AccessLog) -> StageResult:
    core = [sent for sent in expected.sent if sent.probe.kind in CORE_PROBES]
    answers = Counter(_answer(sent) for sent in core)
    detail = f"{len(core)} signed probe callbacks: " + ", ".join(f"{a} x{n}" for a, n in answers.items())
    others = [
        f"{sent.probe.kind} {_answer(sent)}" for sent in expected.sent if sent.probe.kind not in CORE_PROBES
    ]
    detail += "; " + ", ".join(others) if others else ""
    failed = [sent for sent in core if not _ok(sent)]
    if not failed:
        return StageResult(ACCEPTED, Result.PASS, detail)
    first = failed[0]
    if first.status is None:
        cause = "no HTTP answer: the URL is wrong, the API is not deployed, or `make run` is not running"
        return StageResult(ACCEPTED, Result.FAIL, detail, cause, f"the CallbackUrl output: {first.probe.url}")
    if first.status >= 500:
        group = deployment.pipeline.output(keys.API_ACCESS_LOG_GROUP_NAME)
        return StageResult(
            ACCEPTED,
            Result.FAIL,
            f"{detail}; {_integration_error(first, access)}",
            "API Gateway could not queue the request: the integration role could not be assumed, "
            "or a mapped value is missing",
            f"access log group {group}, requestId {first.request_id}",
        )
    cause = (
        f"API Gateway answered {first.status}: the URL is not this API's route, or the route is not deployed"
    )
    return StageResult(ACCEPTED, Result.FAIL, detail, cause, f"the CallbackUrl output: {first.probe.url}")


def queued_stage(expected: Expectation) -> StageResult:
    answered = [sent for sent in expected.sent if _ok(sent)]
    if not answered:
        return not_reached(QUEUED, ACCEPTED)
    missing = [sent for sent in answered if not sent.message_id]
    if missing:
        return StageResult(
            QUEUED,
            Result.FAIL,
            f"{len(missing)} of {len(answered)} 2xx answers carry no SQS MessageId",
            "the route's integration is not SQS-SendMessage, or something in front of API Gateway answered",
            "api.yaml's x-amazon-apigateway-integration, and what serves the CallbackUrl",
        )
    return StageResult(QUEUED, Result.PASS, f"{len(answered)} SQS message ids, e.g. {answered[0].message_id}")


def _ingest_cause(deployment: Deployment) -> tuple[str, str]:
    counts, depths = deployment.depths("Ingest")
    waiting, in_flight = counts.get("Ingest", (0, 0))
    dead = sum(counts.get("Ingest" + DEAD_LETTER_SUFFIX, (0, 0)))
    group = deployment.pipeline.output(keys.VALIDATOR_LOG_GROUP_NAME) or "the validator's log group"
    look_at = f"{group} and IngestDeadLetterQueue, then {REDRIVE}"
    if dead or in_flight:
        return f"the validator is failing ({depths})", look_at
    if waiting:
        return f"the validator is not taking messages off IngestQueue ({depths})", look_at
    return (
        f"the validator took the probes, yet neither the rejected store nor a sink has them ({depths})",
        look_at,
    )


def validated_stage(
    deployment: Deployment, expected: Expectation, observed: Observation, token_mismatch: bool
) -> StageResult:
    signed = expected.signed
    if not signed and not expected.unsigned:
        return not_reached(VALIDATED, QUEUED)
    rejected = [observed.rejected[s.message_id] for s in signed if s.message_id in observed.rejected]
    if rejected:
        reasons = Counter(str(request.reason) for request in rejected)
        detail = f"{len(rejected)} of {len(signed)} signed probe callbacks rejected: " + ", ".join(
            f"{reason} x{count}" for reason, count in reasons.items()
        )
        detail += f" ({rejected[0].detail})" if rejected[0].detail else ""
        cause = rejected[0].reason.remedy
        if token_mismatch and RejectionReason.INVALID_SIGNATURE in reasons:
            cause = "the secret's AUTH_TOKEN is not the token Twilio signs with (see token); " + cause
        return StageResult(VALIDATED, Result.FAIL, detail, cause, REPLAY)
    unreadable = _unreadable(VALIDATED, observed)
    lost = [sent for sent in signed if not observed.landed(sent)]
    if lost:
        if unreadable:
            return unreadable
        cause, look_at = _ingest_cause(deployment)
        detail = f"{len(lost)} of {len(signed)} signed probe callbacks neither rejected nor in any sink"
        return StageResult(VALIDATED, Result.FAIL, detail, cause, look_at)
    if any(observed.landed(sent) for sent in expected.sent if not sent.probe.signed):
        return StageResult(
            VALIDATED,
            Result.FAIL,
            "the unsigned probe reached the sinks",
            "the validator accepted a request without X-Twilio-Signature",
            "the validator's Settings and api.yaml's Signature mapping",
        )
    unsigned_text = "unsigned probe answered " + ", ".join(
        _answer(sent) for sent in expected.sent if not sent.probe.signed
    )
    for sent in expected.unsigned:
        request = observed.rejected.get(str(sent.message_id))
        if request is None:
            if unreadable:
                return unreadable
            cause, look_at = _ingest_cause(deployment)
            return StageResult(
                VALIDATED, Result.FAIL, "the unsigned probe is not in the rejected store", cause, look_at
            )
        if request.reason is not RejectionReason.MISSING_SIGNATURE:
            return StageResult(
                VALIDATED,
                Result.FAIL,
                f"the unsigned probe was rejected as {request.reason}, not MissingSignature",
                "API Gateway forwarded a signature the probe did not send",
                "api.yaml's Signature mapping",
            )
        unsigned_text = "unsigned probe rejected as MissingSignature"
    return StageResult(VALIDATED, Result.PASS, f"{len(signed)} signed probe callbacks valid; {unsigned_text}")


def archived_stage(deployment: Deployment, expected: Expectation, observed: Observation) -> StageResult:
    landing = expected.landing(observed)
    if not landing:
        return not_reached(ARCHIVED, VALIDATED)
    found = [sent for sent in landing if sent.key in observed.archived]
    bucket = deployment.pipeline.output(keys.ARCHIVE_BUCKET_NAME)
    detail = f"{len(found)} of {len(landing)} probe records in s3://{bucket}"
    if len(found) == len(landing):
        return StageResult(ARCHIVED, Result.PASS, detail)
    unreadable = _unreadable(ARCHIVED, observed)
    if unreadable:
        return unreadable
    cause, look_at = consumer_cause(deployment, "the archiver", "Archive", keys.ARCHIVER_FUNCTION_NAME)
    return StageResult(ARCHIVED, Result.FAIL, detail, cause, look_at)


def stored_stage(deployment: Deployment, expected: Expectation, observed: Observation) -> StageResult:
    landing = expected.landing(observed)
    if not landing:
        return not_reached(STORED, VALIDATED)
    unreadable = _unreadable(STORED, observed)
    if unreadable:
        return unreadable
    missing = [sent for sent in landing if not observed.stored(sent)]
    finals = expected.finals(observed)
    if missing:
        cause, look_at = consumer_cause(deployment, "the status writer", "Status", keys.WRITER_FUNCTION_NAME)
        detail = f"{len(landing) - len(missing)} of {len(landing)} probe events stored"
        return StageResult(STORED, Result.FAIL, detail, cause, look_at)
    for sid, status in finals.items():
        current = (observed.current.get(sid) or {}).get("status")
        if current != status:
            return StageResult(
                STORED,
                Result.FAIL,
                f"current status of {sid} is {current}, expected {status}",
                "the writer stored the events but did not advance the current view",
                f"the log group of function {deployment.pipeline.output(keys.WRITER_FUNCTION_NAME)}",
            )
    for sent in landing:
        if sent.probe.kind is ProbeKind.CUSTOM_PARAMS:
            items = observed.events_for(sent)
            if items and items[0].get("custom") != dict(sent.callback.query):
                return StageResult(
                    STORED,
                    Result.FAIL,
                    f"custom values stored as {items[0].get('custom')!r}, sent {dict(sent.callback.query)!r}",
                    "the query values were read differently from the URL Twilio signed",
                    "the query-values finding below",
                )
    currents = ", ".join(sorted(set(finals.values())))
    return StageResult(
        STORED, Result.PASS, f"{len(landing)} probe events stored; current status right ({currents})"
    )


def _error_probe(expected: Expectation, observed: Observation) -> Sent | None:
    return expected.error(observed)


def routed_stage(deployment: Deployment, expected: Expectation, observed: Observation) -> StageResult:
    error = _error_probe(expected, observed)
    if error is None:
        return not_reached(ROUTED, VALIDATED)
    if observed.ledger == COMPLETED:
        detail = f"error event {error.event_id} published (publish ledger record {COMPLETED})"
        return StageResult(ROUTED, Result.PASS, detail)
    unreadable = _unreadable(ROUTED, observed)
    if unreadable:
        return unreadable
    if observed.ledger:
        return StageResult(
            ROUTED,
            Result.FAIL,
            f"publish ledger record {observed.ledger}",
            "the router claimed the callback but never confirmed its PutEvents: publishing fails or retries",
            f"the log group of function {deployment.pipeline.output(keys.ROUTER_FUNCTION_NAME)}",
        )
    cause, look_at = consumer_cause(deployment, "the error router", "Error", keys.ROUTER_FUNCTION_NAME)
    return StageResult(ROUTED, Result.FAIL, "no publish ledger record for the error probe", cause, look_at)


def alerted_stage(
    deployment: Deployment, expected: Expectation, observed: Observation, inbox: AlertInbox | str
) -> StageResult:
    """``inbox`` is where alerts were read, or why they could not be."""
    error = _error_probe(expected, observed)
    if error is None:
        return not_reached(ALERTED, VALIDATED)
    if isinstance(inbox, str):
        return StageResult(
            ALERTED,
            Result.SKIP,
            f"not checked: {inbox}",
            "alerts cannot be read back without an inbox",
            "deploy the errors stack with AlertsInbox=Enabled, or allow sqs:CreateQueue, "
            "sqs:SetQueueAttributes, sqs:DeleteQueue, sns:Subscribe and sns:Unsubscribe",
        )
    if observed.alert:
        return StageResult(ALERTED, Result.PASS, f"{observed.alert!r} in {inbox.description}")
    unreadable = _unreadable(ALERTED, observed)
    if unreadable:
        return unreadable
    if observed.ledger != COMPLETED:
        return StageResult(ALERTED, Result.FAIL, f"no alert in {inbox.description}", f"see {ROUTED}")
    _, depths = deployment.depths("ErrorTargets")
    return StageResult(
        ALERTED,
        Result.FAIL,
        f"no alert for {error.callback.sid} in {inbox.description}",
        f"the alerts rule's target (the alerter) failed, or the topic did not deliver ({depths})",
        f"the log group of function {deployment.pipeline.output(keys.ALERTER_FUNCTION_NAME)}, "
        "ErrorTargetsDeadLetterQueue, and the alerts topic's KMS key policy",
    )


def flagged_stage(deployment: Deployment, expected: Expectation, observed: Observation) -> StageResult:
    error = _error_probe(expected, observed)
    if error is None:
        return not_reached(FLAGGED, VALIDATED)
    number = mask_number(error.callback.form["To"])
    if observed.flags:
        return StageResult(FLAGGED, Result.PASS, f"{number} flagged for {PROBE_ERROR_CODE}")
    unreadable = _unreadable(FLAGGED, observed)
    if unreadable:
        return unreadable
    if observed.ledger != COMPLETED:
        return StageResult(FLAGGED, Result.FAIL, f"{number} not flagged", f"see {ROUTED}")
    _, depths = deployment.depths("Flagger", "ErrorTargets")
    return StageResult(
        FLAGGED,
        Result.FAIL,
        f"{number} not flagged for {PROBE_ERROR_CODE}",
        f"the flagger failed ({depths})",
        f"the log group of function {deployment.pipeline.output(keys.FLAGGER_FUNCTION_NAME)} "
        "and FlaggerDeadLetterQueue",
    )


# --- findings --------------------------------------------------------------------------------


def log_findings(summaries: Sequence[Mapping[str, Any]] | str) -> list[Finding]:
    """Form bodies as text or base64, query values decoded or raw, from the validator's summaries."""
    if isinstance(summaries, str):
        return [Finding(Level.INFO, "form bodies and query values", summaries)]
    received = sum(int(line.get("received") or 0) for line in summaries)
    if not received:
        waiting = "no validator summary line since the run started yet (log delivery lags): rerun later"
        return [Finding(Level.INFO, "form bodies and query values", waiting)]
    base64 = sum(int(line.get("base64_bodies") or 0) for line in summaries)
    raw = sum(int(line.get("raw_query") or 0) for line in summaries)
    since = f"of {received} callbacks ingested since the run started"
    return [
        Finding(
            Level.INFO,
            "form bodies",
            f"reach SQS base64-encoded ({base64} {since}); the validator decodes them"
            if base64
            else f"reach SQS as text (0 base64 {since})",
        ),
        Finding(
            Level.INFO,
            "query values",
            f"are substituted raw, still percent-encoded ({raw} {since})"
            if raw
            else f"are substituted decoded (0 raw {since})",
        ),
    ]


def _probe_sent(expected: Expectation, kind: ProbeKind) -> list[Sent]:
    return [sent for sent in expected.sent if sent.probe.kind is kind]


def missing_parameter_finding(expected: Expectation, access: AccessLog) -> Finding:
    sent = _probe_sent(expected, ProbeKind.MISSING_PARAM)
    if not sent:
        return Finding(Level.INFO, "missing query parameter", "not tested: the route declares no parameters")
    probe = sent[0]
    if _ok(probe):
        return Finding(Level.INFO, "missing query parameter", f"arrives empty (HTTP {probe.status})")
    if probe.status is not None and probe.status >= 500:
        return Finding(
            Level.WARN,
            "missing query parameter",
            "AWS fails the integration when a declared parameter is missing: every StatusCallback URL "
            f"must carry every declared name, possibly empty (HTTP {probe.status}; "
            f"{_integration_error(probe, access)})",
        )
    return Finding(Level.WARN, "missing query parameter", f"answered {_answer(probe)}")


def missing_signature_finding(expected: Expectation, observed: Observation, access: AccessLog) -> Finding:
    probe = _probe_sent(expected, ProbeKind.UNSIGNED)[0]
    request = observed.rejected.get(str(probe.message_id))
    if request is not None:
        return Finding(Level.INFO, "missing X-Twilio-Signature", f"queued, then rejected as {request.reason}")
    if probe.status is not None and probe.status >= 500:
        return Finding(
            Level.INFO,
            "missing X-Twilio-Signature",
            f"AWS fails the integration (HTTP {probe.status}; {_integration_error(probe, access)}): "
            "unsigned requests never reach the queue",
        )
    return Finding(
        Level.INFO, "missing X-Twilio-Signature", f"answered {_answer(probe)}; not seen in the rejected store"
    )


def declared_names_finding(
    expected: Expectation, observed: Observation, declared: Iterable[str], source: str
) -> Finding:
    """Whether the deployed API forwards the parameter names api.yaml declares (a stale deploy does not)."""
    names = list(declared)
    for sent in _probe_sent(expected, ProbeKind.CUSTOM_PARAMS):
        items = observed.events_for(sent)
        if items and sorted((items[0].get("custom") or {}).keys()) != sorted(names):
            return Finding(
                Level.WARN,
                "declared parameters",
                f"the deployed API forwarded {sorted((items[0].get('custom') or {}).keys())}, but {source} "
                f"declares {names}: deploy the ingest stack again",
            )
    return Finding(Level.INFO, "declared parameters", f"{', '.join(names) or 'none'} ({source})")


def findings(
    expected: Expectation,
    observed: Observation,
    access: AccessLog,
    summaries: Sequence[Mapping[str, Any]] | str,
    *,
    declared: Iterable[str],
    source: str,
) -> list[Finding]:
    """Every finding of the run, in the order they are printed."""
    return [
        *log_findings(summaries),
        missing_parameter_finding(expected, access),
        missing_signature_finding(expected, observed, access),
        declared_names_finding(expected, observed, declared, source),
    ]
