"""The probe callbacks ``verify`` sends, and what API Gateway answered to each.

Built with `scenarios` (the lifecycles and signing ``send`` uses, the official
``twilio`` library's signature) and sent with `send.HttpSender`. SIDs are
random per run, phone numbers are in the fictional +1 555 01xx range, and
every callback carries ``TwilioCallbacksVerify=<run id>`` in its form body, so
it is kept under ``twilio`` in every record and analysts can leave probes out:
Athena ``WHERE element_at(twilio, 'TwilioCallbacksVerify') IS NULL``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pipeline_harness.scenarios import (
    CALLBACK_ROUTE,
    CALLBACK_WITH_PARAMS_ROUTE,
    Callback,
    Kind,
    ScenarioOptions,
    Signing,
    generate,
    sign,
)
from pipeline_harness.sender import Exchange, HttpSender, queued_message_id
from status_callbacks.domain.record import PROBE_MARKER, build_record

# The form parameter marking a callback as a probe (the record contract's; analysts filter on it).
VERIFY_MARKER = PROBE_MARKER
PROBE_ERROR_CODE = "30005"
REQUEST_ID_HEADER = "apigw-requestid"
# Every character a custom value can trip on: space, &, =, +, /, a non-ASCII letter and a quote.
AWKWARD_VALUE = "a b&c=d+e/f ü'g"
_GENERATED_NUMBER = re.compile(r"^\+1555\d{7}$")


class ProbeKind(StrEnum):
    """The five probes, in the order they are sent."""

    LIFECYCLE = "message lifecycle"  # queued, sent, undelivered 30005 on CallbackUrl
    CALL = "voice call"  # initiated … completed with SequenceNumber on CallbackUrl
    CUSTOM_PARAMS = "custom parameters"  # one delivered callback, awkward values, CallbackWithParamsUrl
    MISSING_PARAM = "missing parameter"  # CallbackWithParamsUrl without its last declared name
    UNSIGNED = "unsigned"  # no X-Twilio-Signature on CallbackUrl


@dataclass(frozen=True)
class Probe:
    """One probe: the callbacks it sends, in order, and the StatusCallback URL they go to."""

    kind: ProbeKind
    url: str
    callbacks: tuple[Callback, ...]

    @property
    def sid(self) -> str:
        return self.callbacks[0].sid

    @property
    def signed(self) -> bool:
        return self.kind is not ProbeKind.UNSIGNED


@dataclass(frozen=True)
class Sent:
    """One probe callback as sent, and API Gateway's answer."""

    probe: Probe
    callback: Callback
    status: int | None
    message_id: str | None = None
    request_id: str | None = None
    error: str | None = None

    @property
    def queued(self) -> bool:
        """Answered 2xx with an SQS message id: in the ingest queue."""
        return self.status is not None and 200 <= self.status < 300 and bool(self.message_id)

    @property
    def key(self) -> tuple[str, str]:
        """How the sinks know this callback: SID and status."""
        return self.callback.sid, self.callback.status

    @property
    def event_id(self) -> str:
        """The record's event id, derived from content as the validator derives it."""
        callback = self.callback
        return build_record(callback.form, dict(callback.query), callback.route, received_at=0).event_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": str(self.probe.kind),
            "sid": self.callback.sid,
            "status": self.callback.status,
            "http_status": self.status,
            "message_id": self.message_id,
            "apigw_request_id": self.request_id,
            "error": self.error,
        }


def _number(rng: random.Random) -> str:
    return f"+155501{rng.randrange(10**5):05d}"


def _marked(callbacks: Sequence[Callback], run_id: str, rng: random.Random) -> tuple[Callback, ...]:
    """Fictional numbers (one per generated number, kept across the lifecycle) and the probe marker."""
    numbers: dict[str, str] = {}
    marked = []
    for callback in callbacks:
        params = []
        for name, value in callback.params:
            fictional = numbers.setdefault(value, _number(rng)) if _GENERATED_NUMBER.match(value) else value
            params.append((name, fictional))
        params.append((VERIFY_MARKER, run_id))
        marked.append(replace(callback, params=tuple(params)))
    return tuple(marked)


def build_probes(run_id: str, callback_url: str, params_url: str, declared: Sequence[str]) -> list[Probe]:
    """The five probes of one run; everything random is drawn from the run id."""
    rng = random.Random(run_id)  # noqa: S311 - probe data, not security
    account_sid = f"AC{rng.getrandbits(128):032x}"

    def lifecycle(kind: Kind, error_rate: float = 0.0, route: str = CALLBACK_ROUTE) -> tuple[Callback, ...]:
        options = ScenarioOptions(
            kind=kind,
            seed=rng.getrandbits(64),
            error_rate=error_rate,
            error_codes=(PROBE_ERROR_CODE,),
            route=route,
            account_sid=account_sid,
        )
        return _marked(next(generate(options)).callbacks, run_id, rng)

    awkward = tuple((name, f"{name} {AWKWARD_VALUE}") for name in declared)
    partial = tuple((name, f"probe {run_id}") for name in declared[:-1])
    delivered = lifecycle(Kind.MESSAGE, route=CALLBACK_WITH_PARAMS_ROUTE)[-1]
    missing = lifecycle(Kind.MESSAGE, route=CALLBACK_WITH_PARAMS_ROUTE)[-1]
    probes = [
        Probe(ProbeKind.LIFECYCLE, callback_url, lifecycle(Kind.MESSAGE, error_rate=1.0)),
        Probe(ProbeKind.CALL, callback_url, lifecycle(Kind.CALL)),
        Probe(ProbeKind.CUSTOM_PARAMS, params_url, (replace(delivered, query=awkward),)),
    ]
    if declared:
        probes.append(Probe(ProbeKind.MISSING_PARAM, params_url, (replace(missing, query=partial),)))
    unsigned = replace(lifecycle(Kind.MESSAGE)[0], signing=Signing.UNSIGNED)
    probes.append(Probe(ProbeKind.UNSIGNED, callback_url, (unsigned,)))
    return probes


def send_probes(
    probes: Sequence[Probe], auth_token: str, post: Callable[..., Exchange] | None = None
) -> list[Sent]:
    """Send every probe's callbacks in order, one at a time; what each got back."""
    exchange = post or HttpSender().exchange
    sent = []
    for probe in probes:
        for callback in probe.callbacks:
            answer = exchange(sign(callback, probe.url, auth_token))
            status = answer.outcome.status
            sent.append(
                Sent(
                    probe,
                    callback,
                    status,
                    queued_message_id(answer.body) if answer.outcome.ok else None,
                    answer.headers.get(REQUEST_ID_HEADER),
                    answer.outcome.error,
                )
            )
    return sent
