"""Nothing lost even when misconfigured: rejected callbacks are visible, kept and replayable.

The local pipeline starts with the wrong auth token in its secret. Twilio (the
sender, signing with the account's real token) posts messages and calls on
both routes, custom values with awkward characters included, and a few forged
and unsigned requests arrive too. Every request is rejected, and ``status``
says how many and why. Once the secret is corrected through the Secrets
Manager API, ``rejected replay`` brings every genuine callback into the
archive, the status table, the error bus (number flags) and the alerts inbox
exactly once; the forgeries stay rejected and land nowhere; a second replay
changes nothing.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from aws_emulator import LocalPipeline
from aws_emulator.aws import Clients
from pipeline_harness.reconcile import (
    AlertObserver,
    Sinks,
    alert_event_id,
    collect,
    expect,
    wait_for_reconciliation,
)
from pipeline_harness.scenarios import Kind, Product, ScenarioOptions, SignedRequest, generate
from pipeline_harness.sender import HttpSender, Outcome, send_lifecycles
from twilio_callbacks_cli.main import main

pytestmark = pytest.mark.e2e

WRONG_TOKEN = "e2e-wrong-token-not-a-secret"
TWILIO_TOKEN = "e2e-account-token-not-a-secret"
AWKWARD = (("id", "order 42 & more"), ("category", "café 'quoted' + 2+2 = 4"))
FORGED_OPTIONS = ScenarioOptions(count=2, seed=31, forged=1.0)
UNSIGNED_OPTIONS = ScenarioOptions(count=1, seed=32, unsigned=1.0)
# A loaded 2-core machine: every wait is generous.
DEADLINE_SECONDS = 240

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, seconds: float = DEADLINE_SECONDS) -> T:
    deadline = time.monotonic() + seconds
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s: {what} (last: {last!r})")


@pytest.fixture
def misconfigured() -> Iterator[LocalPipeline]:
    """The whole pipeline, its secret holding a token Twilio does not sign with."""
    with LocalPipeline(aws_port=0, http_port=0, token=WRONG_TOKEN) as running:
        yield running


def cli(capsys: pytest.CaptureFixture[str], pipeline: LocalPipeline, *arguments: str) -> tuple[int, Any]:
    """Run the command against the local pipeline; its exit code and JSON document."""
    capsys.readouterr()
    code = main(["--endpoint-url", pipeline.endpoint_url, *arguments, "--json"])
    out = capsys.readouterr().out
    # The handlers run in this process and log one-line JSON to the same stdout; the command's
    # document is the indented one, starting on a line of its own.
    start = out.find("{\n") if out.startswith("{\n") else out.find("\n{\n") + 1
    assert start >= 0, out
    document, _ = json.JSONDecoder().raw_decode(out, start)
    return code, document


def test_rejected_callbacks_are_counted_kept_and_replayed_exactly_once(
    misconfigured: LocalPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = misconfigured
    clients = Clients(pipeline.endpoint_url, pipeline.region)
    stacks = pipeline.deployment.stacks if pipeline.deployment else []
    outputs = {key: value for stack in stacks for key, (value, _, _) in stack.outputs.items()}
    sinks = Sinks.from_outputs(outputs)
    # Given messages and calls on both routes (errors, retries, shuffles), signed with the account's token
    arrival = {"duplicates": 0.3, "out_of_order": 0.5}
    plain = list(generate(ScenarioOptions(count=6, kind=Kind.MIXED, seed=21, error_rate=0.5, **arrival)))
    custom = list(
        generate(ScenarioOptions(count=4, kind=Kind.MIXED, seed=22, error_rate=0.5, custom_params=AWKWARD))
    )
    expectation = expect(plain, custom)
    assert {lifecycle.product for lifecycle in plain + custom} == {Product.MESSAGE, Product.CALL}
    assert expectation.alerts and expectation.duplicates_sent
    # When they are sent while the secret holds the wrong token, with forged and unsigned requests too
    for lifecycles in (plain, custom):
        summary = send_lifecycles(lifecycles, pipeline.api_base_url, TWILIO_TOKEN, concurrency=2)
        assert summary.failures == 0
    sender = ["send", "--no-progress", "--auth-token", TWILIO_TOKEN]
    code, forged = cli(capsys, pipeline, *sender, "--count", "2", "--seed", "31", "--forged")
    assert code == 0
    code, unsigned = cli(capsys, pipeline, *sender, "--count", "1", "--seed", "32", "--unsigned")
    assert code == 0
    # Then send itself reports the validator's rejections of its requests
    assert forged["rejected"]["by_reason"] == {"InvalidSignature": forged["sent"]}
    assert unsigned["rejected"]["by_reason"] == {"MissingSignature": unsigned["sent"]}
    forged_sids = {lc.sid for options in (FORGED_OPTIONS, UNSIGNED_OPTIONS) for lc in generate(options)}
    # And status counts every request rejected, by reason
    genuine = expectation.valid_sent
    expected_reasons = {"InvalidSignature": genuine + forged["sent"], "MissingSignature": unsigned["sent"]}

    def rejected_counts() -> dict[str, Any] | None:
        _, status = cli(capsys, pipeline, "status")
        return status["rejected"] if status["rejected"]["by_reason"] == expected_reasons else None

    rejected = eventually(rejected_counts, "status counting every rejection")
    assert rejected["total"] == genuine + forged["sent"] + unsigned["sent"]
    assert rejected["window"] == "24h"
    # And nothing reached any sink
    landed = collect(clients.client, sinks, expectation.sids | forged_sids)
    assert not landed.archive and not landed.items and not landed.current
    # When the secret is corrected through the Secrets Manager API, and the rejections replayed
    clients.client("secretsmanager").put_secret_value(
        SecretId=outputs["AuthTokenSecretName"], SecretString=json.dumps({"AUTH_TOKEN": TWILIO_TOKEN})
    )
    observer = AlertObserver(clients.client, outputs["AlertsTopicArn"], "e2e-replay-alerts")
    code, replay = cli(capsys, pipeline, "rejected", "replay")
    # Then every genuine request is published, each distinct callback once, and the forgeries stay rejected
    assert code == 0
    assert replay["published"] == genuine
    assert replay["callbacks_published"] == len(expectation.valid)
    assert replay["still_rejected"] == forged["sent"] + unsigned["sent"]
    assert replay["by_reason"]["InvalidSignature"]["still_rejected"] == forged["sent"]
    assert replay["by_reason"]["MissingSignature"]["still_rejected"] == unsigned["sent"]
    # And every sink holds each genuine callback exactly once: archive, status table, flags, alerts
    result = wait_for_reconciliation(
        clients.client,
        sinks,
        expectation,
        alerts=observer,
        deadline_seconds=DEADLINE_SECONDS,
        extra_sids=sorted(forged_sids),
    )
    assert result.ok, result.problems()
    assert result.archive_duplicate_lines == 0
    assert sum(result.landed.alerts.values()) == len(expectation.alerts)
    # And the forged and unsigned ones are nowhere
    assert not forged_sids & set(result.landed.archive_sids.values())
    assert not forged_sids & {sid for sid, _ in result.landed.items}
    assert not forged_sids & set(result.landed.current)

    # And the alerts inbox holds one alert per error callback, as a person receives it
    def inbox() -> Counter[str] | None:
        _, report = cli(capsys, pipeline, "query", "alerts")
        found = Counter(alert_event_id(alert["text"]) for alert in report["alerts"])
        return found if sum(found.values()) >= len(expectation.alerts) else None

    in_inbox = eventually(inbox, "every alert in the inbox")
    assert in_inbox == Counter(expectation.alerts)
    # When replayed a second time
    code, again = cli(capsys, pipeline, "rejected", "replay")
    # Then nothing is published and nothing changes
    assert code == 0
    assert (again["published"], again["objects_rewritten"], again["objects_deleted"]) == (0, 0, 0)
    assert again["still_rejected"] == replay["still_rejected"]
    time.sleep(2)
    settled = wait_for_reconciliation(
        clients.client, sinks, expectation, alerts=observer, deadline_seconds=DEADLINE_SECONDS
    )
    assert settled.ok, settled.problems()
    assert sum(settled.landed.archive.values()) == len(expectation.valid)
    _, status = cli(capsys, pipeline, "status")
    assert status["rejected"]["by_reason"] == {
        "InvalidSignature": forged["sent"],
        "MissingSignature": unsigned["sent"],
    }


PROXY_BASE_URL = "https://hooks.example.com"


@pytest.fixture
def behind_a_proxy() -> Iterator[LocalPipeline]:
    """The whole pipeline, deployed without the PublicBaseUrl of the proxy Twilio calls."""
    with LocalPipeline(aws_port=0, http_port=0, token=TWILIO_TOKEN) as running:
        yield running


def test_callbacks_rejected_for_a_wrong_public_base_url_are_replayed_once_it_is_fixed(
    behind_a_proxy: LocalPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = behind_a_proxy
    clients = Clients(pipeline.endpoint_url, pipeline.region)
    outputs = {
        key: value for stack in pipeline.deployment.stacks for key, (value, _, _) in stack.outputs.items()
    }
    sinks = Sinks.from_outputs(outputs)
    # Given Twilio calls https://hooks.example.com, a proxy that forwards to the API under its own host
    lifecycles = list(
        generate(ScenarioOptions(count=5, kind=Kind.MIXED, seed=41, error_rate=0.6, custom_params=AWKWARD))
    )
    expectation = expect(lifecycles)
    assert expectation.alerts
    http = HttpSender()

    def through_the_proxy(request: SignedRequest) -> Outcome:
        forwarded = request.url.replace(PROXY_BASE_URL, pipeline.api_base_url, 1)
        return http.send(replace(request, url=forwarded))

    # When the callbacks arrive while the stack's PublicBaseUrl is not the proxy's
    summary = send_lifecycles(lifecycles, PROXY_BASE_URL, TWILIO_TOKEN, sender=through_the_proxy)
    assert summary.failures == 0

    # Then every one is rejected as an invalid signature (the proxy's host is nowhere in the request) and kept
    def counted() -> dict[str, Any] | None:
        _, status = cli(capsys, pipeline, "status")
        by_reason = status["rejected"]["by_reason"]
        return by_reason if by_reason.get("InvalidSignature") == expectation.valid_sent else None

    assert eventually(counted, "status counting the rejections") == {
        "InvalidSignature": expectation.valid_sent
    }
    assert not collect(clients.client, sinks, expectation.sids).archive

    # When the stack is updated with the proxy's URL as PublicBaseUrl, and the rejections replayed
    pipeline.update_parameters("StatusCallbackHandler", {"PublicBaseUrl": PROXY_BASE_URL})
    observer = AlertObserver(clients.client, outputs["AlertsTopicArn"], "e2e-proxy-alerts")
    code, replay = cli(capsys, pipeline, "rejected", "replay")

    # Then every genuine callback reaches every sink exactly once
    assert code == 0
    assert (replay["published"], replay["still_rejected"]) == (expectation.valid_sent, 0)
    result = wait_for_reconciliation(
        clients.client, sinks, expectation, alerts=observer, deadline_seconds=DEADLINE_SECONDS
    )
    assert result.ok, result.problems()
    assert result.archive_duplicate_lines == 0
    assert sum(result.landed.alerts.values()) == len(expectation.alerts)
    # And a second replay finds nothing left to do
    code, again = cli(capsys, pipeline, "rejected", "replay")
    assert (code, again["checked"], again["published"]) == (0, 0, 0)
    # And callbacks arriving through the proxy from now on validate straight away
    later = list(generate(ScenarioOptions(count=2, kind=Kind.MESSAGE, seed=42)))
    assert send_lifecycles(later, PROXY_BASE_URL, TWILIO_TOKEN, sender=through_the_proxy).failures == 0
    settled = wait_for_reconciliation(
        clients.client, sinks, expect(lifecycles, later), alerts=observer, deadline_seconds=DEADLINE_SECONDS
    )
    assert settled.ok, settled.problems()
