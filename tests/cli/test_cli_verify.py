"""``verify``'s pieces: probes, MessageId extraction, the token check, waits, stage lines, report, exit code.

AWS-facing pieces (the secret, the publish ledger, the temporary alerts inbox)
run against moto in-process; the whole command runs end to end in tests/e2e.
"""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.exceptions import ClientError
from twilio.request_validator import RequestValidator

from pipeline_harness.scenarios import SIGNATURE_HEADER, Signing, sign
from pipeline_harness.sender import Exchange, HttpSender, Outcome, queued_message_id
from status_callbacks.adapters.events import PublishLedger
from status_callbacks.domain.rejected import RejectedRequest
from status_callbacks.domain.validation import RejectionReason
from tests.cli.builders import table_definition, template_of
from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.discovery import DeployedStack, Pipeline
from twilio_callbacks_cli.errors import PipelineUnavailableError
from twilio_callbacks_cli.verify import (
    DEFAULT_BATCHING_WINDOW_SECONDS,
    MARGIN_SECONDS,
    Report,
    exit_code,
    render,
    resolve_token,
    wait_for,
)
from twilio_callbacks_cli.verify_checks import (
    COMPLETED,
    Deployment,
    Expectation,
    Observation,
    alert_inbox,
    publish_ledger_status,
)
from twilio_callbacks_cli.verify_probes import (
    VERIFY_MARKER,
    ProbeKind,
    Sent,
    build_probes,
    send_probes,
)
from twilio_callbacks_cli.verify_stages import (
    Level,
    Result,
    StageResult,
    accepted_stage,
    alerted_stage,
    log_findings,
    missing_parameter_finding,
    validated_stage,
)

CALLBACK_URL = "https://a1b2c3.execute-api.us-east-1.amazonaws.com/twilio"
PARAMS_URL = "https://a1b2c3.execute-api.us-east-1.amazonaws.com/twilio-params"
DECLARED = ("id", "category")
TOKEN = "0123456789abcdef0123456789abcdef"
SECRET = "TwilioStatusCallbackHandler"
FICTIONAL = re.compile(r"^\+155501\d{5}$")


def probes(run_id: str = "0123456789ab") -> list[Any]:
    return build_probes(run_id, CALLBACK_URL, PARAMS_URL, DECLARED)


def pipeline_with(outputs: dict[str, str] | None = None, parameters: dict[str, dict[str, str]] | None = None):
    stacks = {
        role: DeployedStack(
            role, name, "CREATE_COMPLETE", dict(outputs or {}), (parameters or {}).get(role, {})
        )
        for role, name in keys.DEFAULT_STACK_NAMES.items()
    }
    return Pipeline(stacks)


def answered(status: int | None = 200, kinds: tuple[ProbeKind, ...] = tuple(ProbeKind)) -> list[Sent]:
    """Every probe callback as if API Gateway answered ``status``, with message ids when 2xx."""
    sent = []
    for index, callback_probe in enumerate(p for p in probes() if p.kind in kinds):
        for step, callback in enumerate(callback_probe.callbacks):
            message_id = f"m-{index}-{step}" if status == 200 else None
            sent.append(Sent(callback_probe, callback, status, message_id, f"r-{index}-{step}"))
    return sent


# --- probes ----------------------------------------------------------------------------------


def test_probes_cover_the_five_cases_in_order():
    built = probes()
    assert [probe.kind for probe in built] == list(ProbeKind)
    by_kind = {probe.kind: probe for probe in built}
    lifecycle = by_kind[ProbeKind.LIFECYCLE].callbacks
    assert [callback.status for callback in lifecycle] == ["queued", "sent", "undelivered"]
    assert [callback.error_code for callback in lifecycle] == [None, None, "30005"]
    call = by_kind[ProbeKind.CALL].callbacks
    assert [callback.status for callback in call] == ["initiated", "ringing", "in-progress", "completed"]
    assert [callback.form["SequenceNumber"] for callback in call] == ["0", "1", "2", "3"]
    (custom,) = by_kind[ProbeKind.CUSTOM_PARAMS].callbacks
    assert custom.status == "delivered" and [name for name, _ in custom.query] == list(DECLARED)
    for _, value in custom.query:
        assert all(character in value for character in " &=+/ü'")
    (missing,) = by_kind[ProbeKind.MISSING_PARAM].callbacks
    assert [name for name, _ in missing.query] == list(DECLARED[:-1])
    (unsigned,) = by_kind[ProbeKind.UNSIGNED].callbacks
    assert unsigned.signing is Signing.UNSIGNED
    assert {probe.url for probe in built} == {CALLBACK_URL, PARAMS_URL}
    assert by_kind[ProbeKind.CUSTOM_PARAMS].url == PARAMS_URL and by_kind[ProbeKind.CALL].url == CALLBACK_URL


def test_probes_are_random_per_run_marked_and_use_fictional_numbers():
    first, second = probes("aaaaaaaaaaaa"), probes("bbbbbbbbbbbb")
    sids = {probe.sid for probe in first}
    assert len(sids) == 5 and sids.isdisjoint({probe.sid for probe in second})
    assert [probe.sid for probe in probes("aaaaaaaaaaaa")] == [probe.sid for probe in first]
    for probe in first:
        for callback in probe.callbacks:
            form = callback.form
            assert form[VERIFY_MARKER] == "aaaaaaaaaaaa"
            numbers = [form[name] for name in ("To", "From", "Called", "Caller") if name in form]
            assert numbers and all(FICTIONAL.match(number) for number in numbers)
    # A lifecycle keeps its numbers, so the error probe's recipient is the one flagged
    lifecycle = first[0].callbacks
    assert len({callback.form["To"] for callback in lifecycle}) == 1


def test_probe_requests_are_signed_as_twilio_signs_them_and_the_unsigned_one_is_not():
    validator = RequestValidator(TOKEN)
    for probe in probes():
        for callback in probe.callbacks:
            request = sign(callback, probe.url, TOKEN)
            if probe.kind is ProbeKind.UNSIGNED:
                assert SIGNATURE_HEADER not in request.headers
                continue
            assert validator.validate(request.url, callback.form, request.headers[SIGNATURE_HEADER])
            assert f"{VERIFY_MARKER}=" in request.body
    custom = sign(probes()[2].callbacks[0], PARAMS_URL, TOKEN)
    assert custom.url.startswith(PARAMS_URL + "?id=id%20a%20b%26c%3Dd%2Be%2Ff%20%C3%BC%27g&category=")


def test_missing_parameter_probe_is_left_out_when_the_route_declares_none():
    built = build_probes("0123456789ab", CALLBACK_URL, PARAMS_URL, ())
    assert ProbeKind.MISSING_PARAM not in {probe.kind for probe in built}
    assert built[2].callbacks[0].query == ()


# --- what API Gateway answered ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message_id"),
    [
        (
            b'{"SendMessageResponse":{"ResponseMetadata":{"RequestId":"x"},'
            b'"SendMessageResult":{"MD5OfMessageBody":"d41d","MessageId":"5fea7756-0ea4"}}}',
            "5fea7756-0ea4",
        ),
        (b'{"MD5OfMessageBody":"d41d","MessageId":"abc-123"}', "abc-123"),
        (b'[{"other": {"MessageId": ""}}, {"deeper": [{"MessageId": "in-a-list"}]}]', "in-a-list"),
        (b"<SendMessageResult><MessageId>xml-id</MessageId></SendMessageResult>", "xml-id"),
        (b'{"message":"Internal Server Error"}', None),
        (b"", None),
    ],
)
def test_find_message_id_wherever_it_is_nested(body, message_id):
    assert queued_message_id(body) == message_id


def test_send_probes_keeps_message_ids_and_api_gateway_request_ids():
    answers = iter(
        [Exchange(Outcome(500, 0.01), {"apigw-requestid": "req-0"}, b'{"message":"Internal Server Error"}')]
        + [
            Exchange(
                Outcome(200, 0.01),
                {"apigw-requestid": f"req-{n}"},
                json.dumps({"MessageId": f"m-{n}"}).encode(),
            )
            for n in range(1, 10)
        ]
    )
    sent = send_probes(probes(), TOKEN, lambda request: next(answers))
    assert len(sent) == 10
    assert (sent[0].status, sent[0].message_id, sent[0].request_id) == (500, None, "req-0")
    assert [s.message_id for s in sent[1:]] == [f"m-{n}" for n in range(1, 10)]
    assert not sent[0].queued and all(s.queued for s in sent[1:])


def test_http_sender_exchange_returns_the_body_and_headers(callback_server):
    request = sign(probes()[0].callbacks[0], callback_server.url + "/twilio", TOKEN)
    exchange = HttpSender(timeout=5).exchange(request)
    assert exchange.outcome.status == 200
    assert json.loads(exchange.body)["SendMessageResponse"]["SendMessageResult"]["MessageId"]
    assert exchange.outcome.message_id == queued_message_id(exchange.body)
    assert exchange.headers["content-type"] == "application/json"


# --- token -----------------------------------------------------------------------------------


@pytest.fixture
def secret(aws):
    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(
        Name=SECRET, SecretString=json.dumps({"AUTH_TOKEN": TOKEN, "AUTH_TOKEN_SECONDARY": "next"})
    )
    return client


def test_a_token_the_secret_does_not_hold_fails_the_token_stage_without_showing_either(secret):
    token = resolve_token("another-token", SECRET, secret)
    assert token.mismatch and token.value == "another-token"
    assert token.stage.result is Result.FAIL
    assert token.stage.cause == "the secret's AUTH_TOKEN is not the token Twilio signs with"
    shown = json.dumps(token.stage.to_dict()) + repr(token)
    assert TOKEN not in shown and "another-token" not in shown


def test_token_from_the_secret_or_matching_it(secret):
    assert resolve_token(None, SECRET, secret).value == TOKEN
    assert resolve_token(TOKEN, SECRET, secret).stage.result is Result.PASS
    rotating = resolve_token("next", SECRET, secret)
    assert rotating.stage.result is Result.PASS and "AUTH_TOKEN_SECONDARY" in rotating.stage.detail


def test_no_token_at_all_is_an_error_naming_the_secret(aws):
    client = boto3.client("secretsmanager", region_name="us-east-1")
    with pytest.raises(PipelineUnavailableError, match=r"MissingSecret.*--auth-token"):
        resolve_token(None, "MissingSecret", client)
    assert resolve_token("given", "MissingSecret", client).stage.result is Result.PASS


# --- waiting ---------------------------------------------------------------------------------


def test_wait_follows_the_deployed_batching_windows():
    parameters = {
        keys.INGEST: {keys.BATCHING_WINDOW_PARAMETER: "2"},
        keys.ARCHIVE: {keys.BATCHING_WINDOW_PARAMETER: "90"},
        keys.STATUS_STORE: {keys.BATCHING_WINDOW_PARAMETER: "20"},
        keys.ERROR_ROUTER: {keys.BATCHING_WINDOW_PARAMETER: "5"},
    }
    wait = wait_for(pipeline_with(parameters=parameters))
    assert wait.seconds == 2 + 90 + MARGIN_SECONDS
    assert wait.assumed == ()
    assert "slowest consumer 90 s (archive)" in wait.describe()
    assert "assumed" not in wait.describe()


def test_wait_assumes_the_documented_default_when_a_stack_lists_no_window_and_says_so():
    wait = wait_for(pipeline_with(parameters={keys.INGEST: {keys.BATCHING_WINDOW_PARAMETER: "1"}}))
    assert wait.seconds == 1 + DEFAULT_BATCHING_WINDOW_SECONDS + MARGIN_SECONDS
    assert set(wait.assumed) == {
        "SaveStatusCallbackToS3",
        "SaveStatusCallbackToDynamo",
        "CheckForStatusCallbackErrors",
    }
    assert f"assumed {DEFAULT_BATCHING_WINDOW_SECONDS} s" in wait.describe()
    overridden = wait_for(pipeline_with(), timeout=12)
    assert overridden.seconds == 12 and "--timeout" in overridden.describe()


# --- stores read through their owners' code --------------------------------------------------


def test_publish_ledger_status_reads_the_router_s_own_record(aws):
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    definition = table_definition(template_of("CheckForStatusCallbackErrors"), "IdempotencyTable")
    dynamodb.create_table(TableName="Ledger", **definition)
    ledger = PublishLedger(DynamoDBPersistenceLayer(table_name="Ledger", boto3_client=dynamodb), 3600)
    ledger.claim("event-published", 60_000)
    ledger.confirm("event-published", "bus-event-1")
    ledger.claim("event-in-flight", 60_000)
    assert publish_ledger_status(dynamodb, "Ledger", "event-published") == COMPLETED
    assert publish_ledger_status(dynamodb, "Ledger", "event-in-flight") == "INPROGRESS"
    assert publish_ledger_status(dynamodb, "Ledger", "never-seen") is None


def _deployment(outputs: dict[str, str]) -> Deployment:
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        return clients.setdefault(service, boto3.client(service, region_name="us-east-1"))

    return Deployment(pipeline_with(outputs), client, "0123456789ab", 0)


def test_temporary_inbox_reads_alerts_without_consuming_them_and_is_deleted_even_on_error(aws):
    sns = boto3.client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    deployment = _deployment({keys.ALERTS_TOPIC_ARN: topic})
    sqs = deployment.client("sqs")
    with pytest.raises(RuntimeError, match="interrupted"), alert_inbox(deployment) as inbox:
        assert not isinstance(inbox, str)
        policy = json.loads(
            sqs.get_queue_attributes(QueueUrl=inbox.inbox.queue_url, AttributeNames=["Policy"])["Attributes"][
                "Policy"
            ]
        )
        statement = policy["Statement"][0]
        assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": topic}}
        sns.publish(
            TopicArn=topic, Subject="[info] Twilio error 30005 on message SM1", Message="History: SM1"
        )
        sns.publish(
            TopicArn=topic, Subject="[info] Twilio error 30005 on message SM2", Message="History: SM2"
        )
        assert inbox.find("SM2") == "[info] Twilio error 30005 on message SM2"
        # Read again: nothing was consumed
        assert inbox.find("SM1") == "[info] Twilio error 30005 on message SM1"
        assert inbox.find("SM3") is None
        raise RuntimeError("interrupted")
    assert sqs.list_queues().get("QueueUrls", []) == []
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_without_an_inbox_or_the_right_to_make_one_the_alert_stage_is_not_a_pass(aws):
    class Refusing:
        def create_queue(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "CreateQueue")

    deployment = _deployment({keys.ALERTS_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:alerts"})
    deployment.client = lambda service: Refusing() if service == "sqs" else boto3.client(service, "us-east-1")
    with alert_inbox(deployment) as inbox:
        assert isinstance(inbox, str) and "AccessDenied" in inbox
    lifecycle = answered(kinds=(ProbeKind.LIFECYCLE,))
    stage = alerted_stage(deployment, Expectation(tuple(lifecycle)), Observation(), inbox)
    assert (
        stage.result is Result.SKIP
        and "AccessDenied" in stage.detail
        and "AlertsInbox=Enabled" in stage.look_at
    )


# --- stage lines and findings ----------------------------------------------------------------


def test_a_valid_probe_in_the_rejected_store_fails_validation_with_its_reason_and_remedy():
    sent = answered(kinds=(ProbeKind.LIFECYCLE, ProbeKind.UNSIGNED))
    observed = Observation()
    for item in sent:
        reason = RejectionReason.INVALID_SIGNATURE if item.probe.signed else RejectionReason.MISSING_SIGNATURE
        observed.rejected[str(item.message_id)] = RejectedRequest(
            str(item.message_id), 0, reason, "", detail="expected https://a1b2c3/twilio"
        )
    stage = validated_stage(_deployment({}), Expectation(tuple(sent)), observed, token_mismatch=False)
    assert stage.result is Result.FAIL
    assert stage.detail.startswith("3 of 3 signed probe callbacks rejected: InvalidSignature x3")
    assert "expected https://a1b2c3/twilio" in stage.detail
    assert stage.cause == RejectionReason.INVALID_SIGNATURE.remedy
    assert "rejected replay" in str(stage.look_at)
    mismatch = validated_stage(_deployment({}), Expectation(tuple(sent)), observed, token_mismatch=True)
    assert str(mismatch.cause).startswith("the secret's AUTH_TOKEN is not the token Twilio signs with")


def test_an_api_gateway_500_names_the_integration_error_and_the_access_log():
    sent = answered(status=500, kinds=(ProbeKind.LIFECYCLE,))
    deployment = _deployment({keys.API_ACCESS_LOG_GROUP_NAME: "/aws/vendedlogs/api"})
    access = {"r-0-0": "API Gateway does not have permission to assume the provided role"}
    stage = accepted_stage(deployment, Expectation(tuple(sent)), access)
    assert stage.result is Result.FAIL
    assert "500 x3" in stage.detail and "permission to assume" in stage.detail
    assert stage.cause.startswith("API Gateway could not queue the request")
    assert stage.look_at == "access log group /aws/vendedlogs/api, requestId r-0-0"
    unobservable = accepted_stage(deployment, Expectation(tuple(sent)), "not observable here (x)")
    assert "not observable here" in unobservable.detail


def test_findings_from_the_validator_summaries_and_the_missing_parameter_probe():
    summaries = [{"received": 6, "base64_bodies": 6, "raw_query": 0}, {"received": 4, "base64_bodies": 4}]
    bodies, query = log_findings(summaries)
    assert "base64-encoded (10 of 10" in bodies.detail and "decoded (0 raw of 10" in query.detail
    assert all("not observable here" in f.detail for f in log_findings("not observable here (gone)"))
    failing = answered(status=500, kinds=(ProbeKind.MISSING_PARAM,))
    finding = missing_parameter_finding(Expectation(tuple(failing)), {"r-0-0": "Unable to resolve property"})
    assert finding is not None and finding.level is Level.WARN
    assert "every StatusCallback URL must carry every declared name, possibly empty" in finding.detail
    ok = missing_parameter_finding(Expectation(tuple(answered(kinds=(ProbeKind.MISSING_PARAM,)))), {})
    assert ok is not None and ok.level is Level.INFO and ok.detail.startswith("arrives empty")


# --- the report ------------------------------------------------------------------------------


def report_with(*results: Result) -> Report:
    report = Report("0123456789ab", probes(), wait_for(pipeline_with(), timeout=10))
    report.stages = [
        StageResult(f"stage {n}", result, f"detail {n}")
        if result is Result.PASS
        else StageResult(f"stage {n}", result, f"detail {n}", "a cause", "here")
        for n, result in enumerate(results)
    ]
    return report


def test_exit_code_is_zero_only_when_every_stage_passes():
    assert exit_code(report_with(Result.PASS, Result.PASS)) == 0
    assert exit_code(report_with(Result.PASS, Result.FAIL)) == 1
    assert exit_code(report_with(Result.PASS, Result.SKIP)) == 1
    assert exit_code(report_with()) == 1


def test_render_prints_one_line_per_stage_then_cause_and_where_to_look():
    text = render(report_with(Result.PASS, Result.FAIL))
    lines = text.splitlines()
    assert lines[0].split() == ["stage", "0", "pass", "detail", "0"]
    assert lines[1].split()[:3] == ["stage", "1", "FAIL"]
    assert lines[2].strip() == "cause: a cause" and lines[3].strip() == "look at: here"
    assert lines[-1].startswith("verify: 1 of 2 stages did not pass: stage 1")
    document = report_with(Result.PASS, Result.FAIL).to_dict()
    assert document["ok"] is False and document["marker"] == {VERIFY_MARKER: "0123456789ab"}
    assert document["stages"][1] == {
        "stage": "stage 1",
        "result": "FAIL",
        "detail": "detail 1",
        "cause": "a cause",
        "look_at": "here",
    }
