"""``send`` against a real (local, stdlib) HTTP server: what goes over the wire, and the summary."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from moto.server import ThreadedMotoServer
from twilio.request_validator import RequestValidator

from pipeline_harness.scenarios import ScenarioOptions, generate
from pipeline_harness.sender import Outcome, Summary, send_lifecycles
from status_callbacks.domain.record import parse_form_body
from status_callbacks.domain.signature import candidate_urls, is_valid_signature
from tests.cli.builders import API_BASE_URL, keep_rejected, register_stack, rejected_by_validator
from tests.support.signing import message_status_params, signed_callback
from twilio_callbacks_cli import send
from twilio_callbacks_cli.main import main

TOKEN = "0123456789abcdef0123456789abcdef"


def run_send(capsys, *arguments):
    code = main(["send", "--no-progress", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def verifies(server_url, request, token=TOKEN):
    """The signature checks out over the URL the server was called at, both ways the pipeline checks it."""
    url = server_url + request.path
    form = parse_form_body(request.body)
    signature = request.headers.get("X-Twilio-Signature")
    official = signature is not None and RequestValidator(token).validate(url, form, signature)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    # The validator Lambda rebuilds the URL from API Gateway's decoded values and the public base URL.
    rebuilt = candidate_urls(parts.netloc, parts.path, query, public_base_url=server_url)
    return official, is_valid_signature(signature, rebuilt, form, [token])


def test_send_posts_signed_form_callbacks_and_summarises(callback_server, capsys):
    # Given a server standing in for the API
    # When ten message lifecycles are sent with four workers
    code, out, _ = run_send(
        capsys,
        "--url",
        callback_server.url,
        "--auth-token",
        TOKEN,
        "--count",
        "10",
        "--seed",
        "1",
        "--concurrency",
        "4",
        "--json",
    )
    # Then every callback arrived form-encoded, signed over its exact URL
    assert code == 0
    assert len(callback_server.requests) == 30
    for request in callback_server.requests:
        assert request.path == "/twilio"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert verifies(callback_server.url, request) == (True, True)
    # And each message's callbacks arrived in lifecycle order
    by_sid: dict[str, list[str]] = {}
    for request in callback_server.requests:
        form = parse_form_body(request.body)
        by_sid.setdefault(form["MessageSid"], []).append(form["MessageStatus"])
    assert len(by_sid) == 10
    assert all(statuses == ["queued", "sent", "delivered"] for statuses in by_sid.values())
    # And the summary counts what happened
    summary = json.loads(out)
    assert summary["lifecycles"] == 10
    assert summary["sent"] == 30
    assert summary["http_status_counts"] == {"200": 30}
    assert summary["errors"] == 0 and summary["failures"] == 0
    assert (
        summary["latency_ms"]["p50"] is not None
        and summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"]
    )
    assert summary["rate_per_second"] > 0


def test_send_custom_params_with_awkward_characters(callback_server, capsys):
    # Given custom values with spaces, &, ', + and non-ASCII
    values = {"id": "order 42/7", "category": "Tom & Jerry's +1 café"}
    # When they are sent
    code, _, _ = run_send(
        capsys,
        "--url",
        callback_server.url,
        "--auth-token",
        TOKEN,
        "--seed",
        "2",
        "--param",
        f"id={values['id']}",
        "--param",
        f"category={values['category']}",
    )
    # Then they travel percent-encoded on /twilio-params, decode to what was given, and verify
    assert code == 0
    request = callback_server.requests[0]
    parts = urlsplit(request.path)
    assert parts.path == "/twilio-params"
    assert parts.query == "id=order%2042%2F7&category=Tom%20%26%20Jerry%27s%20%2B1%20caf%C3%A9"
    assert dict(parse_qsl(parts.query)) == values
    assert all(verifies(callback_server.url, r) == (True, True) for r in callback_server.requests)


def test_send_out_of_order_and_duplicates(callback_server, capsys):
    # When calls are sent shuffled and every callback twice
    code, out, _ = run_send(
        capsys,
        "--url",
        callback_server.url,
        "--auth-token",
        TOKEN,
        "--seed",
        "3",
        "--kind",
        "call",
        "--count",
        "4",
        "--out-of-order",
        "--duplicates",
        "--json",
    )
    assert code == 0
    summary = json.loads(out)
    # Then each call's callbacks arrive out of sequence, each one twice in a row, identical
    by_sid: dict[str, list[tuple[str, str]]] = {}
    for request in callback_server.requests:
        form = parse_form_body(request.body)
        by_sid.setdefault(form["CallSid"], []).append((request.body, request.headers["X-Twilio-Signature"]))
    assert len(by_sid) == 4
    for deliveries in by_sid.values():
        assert deliveries[0::2] == deliveries[1::2]
        sequence = [int(parse_form_body(body)["SequenceNumber"]) for body, _ in deliveries[0::2]]
        assert sequence != sorted(sequence)
    assert summary["duplicates"] == summary["sent"] // 2


def test_forged_and_unsigned_requests_do_not_verify(callback_server, capsys):
    code, out, _ = run_send(
        capsys, "--url", callback_server.url, "--auth-token", TOKEN, "--seed", "4", "--forged", "--json"
    )
    assert code == 0 and json.loads(out)["forged"] == 3
    assert all(verifies(callback_server.url, r) == (False, False) for r in callback_server.requests)
    callback_server.requests.clear()
    code, out, _ = run_send(
        capsys, "--url", callback_server.url, "--auth-token", TOKEN, "--seed", "4", "--unsigned", "--json"
    )
    assert code == 0 and json.loads(out)["unsigned"] == 3
    assert all("X-Twilio-Signature" not in r.headers for r in callback_server.requests)


def test_error_responses_make_the_exit_code_non_zero(callback_server, capsys):
    # Given an API answering 500
    callback_server.status[0] = 500
    # When callbacks are sent
    code, out, _ = run_send(capsys, "--url", callback_server.url, "--auth-token", TOKEN, "--json")
    # Then the summary shows it and the command fails
    assert code == 1
    assert json.loads(out)["http_status_counts"] == {"500": 3}


def test_unreachable_api_is_reported(capsys):
    # Given nothing listens on the port
    code, _, err = run_send(capsys, "--url", "http://127.0.0.1:9", "--auth-token", TOKEN)
    # Then the command says so and exits 3
    assert code == 3
    assert "no callback reached http://127.0.0.1:9" in err


def test_human_summary_reads_as_a_table(callback_server, capsys):
    code, out, _ = run_send(capsys, "--url", callback_server.url, "--auth-token", TOKEN, "--count", "2")
    assert code == 0
    assert re.search(r"^callbacks sent +6$", out, re.MULTILINE)
    # requests that got no HTTP response, not requests the validator refused
    assert re.search(r"^transport errors +0$", out, re.MULTILINE)
    assert "response  count" in out
    assert "200       6" in out
    assert TOKEN not in out


def test_url_and_token_come_from_the_stacks_and_the_secret(pipeline, callback_server, capsys, monkeypatch):
    # Given a deployed ingest stack whose API is the local server and whose secret holds the token
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    ingest = pipeline.stacks["ingest"]
    pipeline.clients["cloudformation"].delete_stack(StackName=ingest.name)
    ingest.outputs["ApiBaseUrl"] = callback_server.url
    register_stack(pipeline.clients["cloudformation"], ingest)
    # When send is given neither URL nor token
    code, out, err = run_send(capsys, "--seed", "5")
    # Then it posted to the discovered API, signed with the secret's token, and never printed it
    assert code == 0, err
    assert len(callback_server.requests) == 3
    assert all(verifies(callback_server.url, r) == (True, True) for r in callback_server.requests)
    assert TOKEN not in out + err


def test_token_from_the_environment(callback_server, capsys, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token-from-env")
    code, _, _ = run_send(capsys, "--url", callback_server.url)
    assert code == 0
    assert all(
        verifies(callback_server.url, r, "token-from-env") == (True, True) for r in callback_server.requests
    )


def test_missing_ingest_stack_without_url_fails_clearly(aws, capsys, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    code, _, err = run_send(capsys)
    assert code == 3
    assert "StatusCallbackHandler" in err and "twilio-callbacks local" in err


def test_dry_run_prints_requests_without_sending(callback_server, capsys):
    code, out, _ = run_send(
        capsys,
        "--url",
        callback_server.url,
        "--auth-token",
        TOKEN,
        "--dry-run",
        "--count",
        "2",
        "--seed",
        "6",
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 6 and not callback_server.requests
    first = lines[0]
    assert RequestValidator(TOKEN).validate(
        first["url"], parse_form_body(first["body"]), first["headers"]["X-Twilio-Signature"]
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["--error-rate", "2"],
        ["--count", "0"],
        ["--param", "novalue"],
        ["--route", "/twilio", "--param", "id=1"],
    ],
)
def test_bad_options_exit_2(arguments, capsys, callback_server):
    try:
        code = main(["send", "--url", callback_server.url, "--auth-token", TOKEN, *arguments])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    assert "error:" in capsys.readouterr().err
    assert not callback_server.requests


def test_send_lifecycles_is_reusable_with_any_sender():
    # Given a sender that records requests instead of posting them (as a benchmark might)
    lifecycles = list(generate(ScenarioOptions(count=3, seed=7)))
    seen = []

    def sender(request):
        seen.append(request)
        return Outcome(202 if len(seen) % 2 else 503, 0.001 * len(seen))

    # When they are sent
    summary = send_lifecycles(lifecycles, "https://example.test", TOKEN, concurrency=2, sender=sender)
    # Then outcomes are totalled and percentiles come from the latencies
    assert len(seen) == 9
    report = summary.to_dict()
    assert report["http_status_counts"] == {"202": 5, "503": 4}
    assert report["failures"] == 4
    assert Summary(outcomes=[Outcome(200, 0.001 * n) for n in range(1, 101)]).percentile_ms(99) == 99.0


@pytest.fixture
def emulator(pipeline, monkeypatch):
    """The stacks served by moto's server, as the local runner serves them (AWS_ENDPOINT_URL set)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield pipeline
    server.stop()


def test_against_the_local_pipeline_send_reports_what_the_validator_rejected(
    emulator, callback_server, capsys
):
    # Given the validator kept the second request sent (the server answers message ids m-1, m-2, m-3)
    forged = signed_callback(f"{API_BASE_URL}/twilio", message_status_params(), "not-the-token")
    keep_rejected(emulator, [rejected_by_validator(forged, "m-2", int(time.time() * 1000))])
    # When a message lifecycle (three callbacks) is sent
    code, out, _ = run_send(capsys, "--url", callback_server.url, "--auth-token", TOKEN, "--json")
    # Then the summary says which of them the validator rejected, and why
    assert code == 0
    assert json.loads(out)["rejected"] == {
        "count": 1,
        "by_reason": {"InvalidSignature": 1},
        "checked": 3,
        "ingest_queue_drained": True,
    }
    _, text, _ = run_send(capsys, "--url", callback_server.url, "--auth-token", TOKEN)
    assert re.search(r"^rejected by validator +0 of 3$", text, re.MULTILINE)


def test_send_says_when_the_ingest_queue_did_not_drain(emulator, callback_server, capsys, monkeypatch):
    # Given a message the validator never takes off the ingest queue, and a short wait
    emulator.sqs.send_message(QueueUrl=emulator.output("IngestQueueUrl"), MessageBody="stuck")
    monkeypatch.setattr(send, "DRAIN_SECONDS", 0.5)
    forged = signed_callback(f"{API_BASE_URL}/twilio", message_status_params(), "not-the-token")
    keep_rejected(emulator, [rejected_by_validator(forged, "m-1", int(time.time() * 1000))])
    # When a lifecycle is sent
    code, out, _ = run_send(capsys, "--url", callback_server.url, "--auth-token", TOKEN)
    # Then what is known is reported, and that more may follow
    assert code == 0
    assert "1 of 3 (InvalidSignature 1); the ingest queue was not drained within 0.5 s" in out
    assert "twilio-callbacks rejected list --since 1h" in out


def test_against_aws_send_does_not_look_for_rejections(pipeline, callback_server, capsys):
    code, out, _ = run_send(capsys, "--url", callback_server.url, "--auth-token", TOKEN, "--json")

    assert code == 0
    assert json.loads(out)["rejected"] is None
