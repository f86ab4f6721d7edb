"""``rejected list`` and ``rejected replay`` on a store filled as the validator fills it.

Requests are signed as Twilio signs them, forwarded through api.yaml's mapping
and rejected by the layer's own validation (with a wrong token, as a
misconfigured stack would); the replay then runs against moto's SNS, observed
through a queue subscribed to the topic.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

from status_callbacks.domain.rejected import decode_requests
from status_callbacks.domain.tokens import AuthTokens
from status_callbacks.domain.validation import Accepted, Destination, RejectionReason, validate_callback
from tests.cli.builders import (
    API_BASE_URL,
    API_DOMAIN,
    AUTH_TOKEN,
    CALLBACK_ROUTES,
    keep_rejected,
    rejected_by_validator,
    rejected_keys,
    replace_outputs,
)
from tests.support.api_gateway import forward
from tests.support.signing import (
    TO_NUMBER,
    call_status_params,
    form_body,
    message_status_params,
    signed_callback,
    unsigned_callback,
)
from twilio_callbacks_cli.main import main
from twilio_callbacks_cli.output import mask_number

NOW_MS = int(time.time() * 1000)
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
MESSAGE_SID = "SM" + "1" * 32
CALL_SID = "CA" + "2" * 32
PARAMS_SID = "SM" + "3" * 32
FORGED_SID = "SM" + "4" * 32
CUSTOM = {"id": "order 42 & more", "category": "café 'quoted' + 2+2"}
PARAMS_URL = f"{API_BASE_URL}/twilio-params?" + "&".join(
    f"{name}={quote(value, safe='')}" for name, value in CUSTOM.items()
)


def run(capsys, *arguments):
    code = main(["rejected", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def genuine_requests():
    """Callbacks Twilio signed with the account's token: a message, a call, one with custom parameters."""
    return {
        "message": signed_callback(
            f"{API_BASE_URL}/twilio", message_status_params("delivered", MessageSid=MESSAGE_SID), AUTH_TOKEN
        ),
        "call": signed_callback(
            f"{API_BASE_URL}/twilio", call_status_params("completed", CallSid=CALL_SID), AUTH_TOKEN
        ),
        "params": signed_callback(
            PARAMS_URL,
            message_status_params("undelivered", MessageSid=PARAMS_SID, ErrorCode="30003"),
            AUTH_TOKEN,
        ),
    }


def forged_request():
    return signed_callback(
        f"{API_BASE_URL}/twilio", message_status_params("delivered", MessageSid=FORGED_SID), "not-the-token"
    )


def validator_record(request):
    """The record the validator publishes for this request with the right token."""
    message = forward(request)
    result = validate_callback(
        message.body,
        message.attributes,
        AuthTokens(AUTH_TOKEN),
        received_at=0,
        destination=Destination.of(API_DOMAIN, CALLBACK_ROUTES),
    )
    assert isinstance(result, Accepted)
    return result.record


@pytest.fixture
def topic_observer(pipeline):
    """A queue subscribed to the callback topic (raw delivery): what consumers receive."""
    sqs = pipeline.sqs
    url = sqs.create_queue(QueueName="topic-observer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pipeline.clients["sns"].subscribe(
        TopicArn=pipeline.output("TopicArn"),
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )

    def published():
        records = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return records
            for message in messages:
                records.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return published


@pytest.fixture
def misconfigured(pipeline):
    """The store after a spell with the wrong token: 3 genuine callbacks (one retried), 2 forgeries."""
    genuine = genuine_requests()
    first = [
        rejected_by_validator(genuine["message"], "m-message", NOW_MS - 30 * MINUTE_MS),
        rejected_by_validator(genuine["call"], "m-call", NOW_MS - 29 * MINUTE_MS),
        rejected_by_validator(forged_request(), "m-forged", NOW_MS - 28 * MINUTE_MS),
        rejected_by_validator(
            unsigned_callback(f"{API_BASE_URL}/twilio", form_body(message_status_params())),
            "m-unsigned",
            NOW_MS - 27 * MINUTE_MS,
        ),
    ]
    # Another invocation, hours earlier: the params callback, and later Twilio's retry of it.
    second = [rejected_by_validator(genuine["params"], "m-params", NOW_MS - 3 * HOUR_MS)]
    third = [rejected_by_validator(genuine["params"], "m-params-retry", NOW_MS - 2 * HOUR_MS)]
    for batch in (first, second, third):
        keep_rejected(pipeline, batch)
    return genuine


# --- list ------------------------------------------------------------------------------


def test_list_counts_by_reason_and_hour_with_remedies_then_the_latest_requests(misconfigured, capsys):
    # When the last day's rejections are listed as JSON
    code, out, _ = run(capsys, "list", "--json")
    report = json.loads(out)
    # Then they are counted by reason, each with its remedy
    assert code == 0
    assert report["total"] == 6
    assert report["by_reason"] == {
        "InvalidSignature": {"count": 5, "remedy": RejectionReason.INVALID_SIGNATURE.remedy},
        "MissingSignature": {"count": 1, "remedy": RejectionReason.MISSING_SIGNATURE.remedy},
    }
    # And by the hour they arrived in
    assert sum(report["by_hour"].values()) == 6
    assert len(report["by_hour"]) >= 3
    # And the samples are the latest first, with route, SID and the masked recipient
    samples = report["samples"]
    assert [s["message_id"] for s in samples[:4]] == ["m-unsigned", "m-forged", "m-call", "m-message"]
    call = samples[2]
    assert (call["route"], call["sid"], call["reason"]) == ("/twilio", CALL_SID, "InvalidSignature")
    assert call["detail"] == f"expected {API_BASE_URL}/twilio"
    assert call["source_ip"] == "54.172.60.1"
    assert call["to"] == mask_number(TO_NUMBER)
    assert TO_NUMBER not in out
    params = next(s for s in samples if s["message_id"] == "m-params")
    assert (params["route"], params["sid"]) == ("/twilio-params", PARAMS_SID)
    assert report["replay_command"] == "twilio-callbacks rejected replay --since 24h"


def test_list_as_text_names_the_remedy_and_the_replay_command(misconfigured, capsys):
    code, out, _ = run(capsys, "list")

    assert code == 0
    assert "rejected requests since" in out and ": 6 (s3://" in out
    assert RejectionReason.INVALID_SIGNATURE.remedy in out
    assert "twilio-callbacks rejected replay --since 24h" in out
    assert mask_number(TO_NUMBER) in out and TO_NUMBER not in out


def test_list_shows_numbers_only_when_asked(misconfigured, capsys):
    _, out, _ = run(capsys, "list", "--json", "--show-numbers")

    samples = json.loads(out)["samples"]
    assert {sample["to"] for sample in samples} == {TO_NUMBER}


def test_list_filters_by_time_and_reason_and_limits_samples(misconfigured, pipeline, capsys):
    # Given a rejection three days old
    keep_rejected(pipeline, [rejected_by_validator(forged_request(), "m-old", NOW_MS - 72 * HOUR_MS)])
    # When the default day, four days, one reason and one sample are asked for
    _, day, _ = run(capsys, "list", "--json")
    _, four_days, _ = run(capsys, "list", "--json", "--since", "4d")
    _, unsigned, _ = run(capsys, "list", "--json", "--reason", "MissingSignature", "--limit", "1")
    _, one, _ = run(capsys, "list", "--json", "--since", "4d", "--limit", "1")
    # Then each answers just that
    assert json.loads(day)["total"] == 6
    assert json.loads(four_days)["total"] == 7
    assert json.loads(unsigned)["by_reason"].keys() == {"MissingSignature"}
    assert [s["message_id"] for s in json.loads(unsigned)["samples"]] == ["m-unsigned"]
    assert json.loads(unsigned)["replay_command"].endswith("--since 24h --reason MissingSignature")
    assert len(json.loads(one)["samples"]) == 1


def test_list_with_nothing_rejected_says_so_and_exits_0(pipeline, capsys):
    code, out, _ = run(capsys, "list")

    assert code == 0
    assert out.strip().endswith(": none")


def test_list_without_a_store_exits_3(pipeline, capsys):
    replace_outputs(pipeline, "ingest", RejectedBucketName=None)

    code, _, err = run(capsys, "list")

    assert code == 3
    assert "RejectedBucketName" in err


def test_list_refuses_an_unknown_reason(pipeline, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["rejected", "list", "--reason", "Bogus"])
    assert exit_info.value.code == 2


# --- replay ----------------------------------------------------------------------------


def set_secret(pipeline, token):
    pipeline.clients["secretsmanager"].put_secret_value(
        SecretId=pipeline.output("AuthTokenSecretName"), SecretString=json.dumps({"AUTH_TOKEN": token})
    )


def test_replay_publishes_once_the_token_is_fixed_exactly_once_and_keeps_forgeries(
    misconfigured, pipeline, topic_observer, capsys
):
    # Given the secret still holds the wrong token
    set_secret(pipeline, "fedcba9876543210fedcba9876543210")
    # When replayed, nothing validates: the tokens are the secret's, read now
    code, out, _ = run(capsys, "replay", "--json")
    assert code == 0
    assert json.loads(out)["published"] == 0
    assert topic_observer() == []
    # When the secret is corrected and replayed again
    set_secret(pipeline, AUTH_TOKEN)
    code, out, _ = run(capsys, "replay", "--json")
    result = json.loads(out)
    # Then the three genuine callbacks are published once each (the retry merged by event id)
    assert code == 0
    published = topic_observer()
    expected = {validator_record(request).event_id for request in misconfigured.values()}
    assert sorted(record["event_id"] for record in published) == sorted(expected)
    by_sid = {record["sid"]: record for record in published}
    assert by_sid[PARAMS_SID]["custom"] == CUSTOM
    assert by_sid[PARAMS_SID]["route"] == "/twilio-params"
    # And each carries the time it was received, not the time of the replay
    assert by_sid[MESSAGE_SID]["received_at"] == NOW_MS - 30 * MINUTE_MS
    assert result["checked"] == 6
    assert result["published"] == 4
    assert result["callbacks_published"] == 3
    assert result["still_rejected"] == 2
    assert result["by_reason"]["InvalidSignature"]["still_rejected"] == 1
    assert result["by_reason"]["MissingSignature"]["still_rejected"] == 1
    # And only the forgery and the unsigned request stay kept
    kept = [r for key in rejected_keys(pipeline) for r in read(pipeline, key)]
    assert sorted(r.message_id for r in kept) == ["m-forged", "m-unsigned"]
    keys_after_first = rejected_keys(pipeline)
    # When replayed a second time
    code, out, _ = run(capsys, "replay", "--json")
    # Then nothing changes
    assert code == 0
    assert json.loads(out)["published"] == 0 and json.loads(out)["still_rejected"] == 2
    assert topic_observer() == []
    assert rejected_keys(pipeline) == keys_after_first


def read(pipeline, key):
    body = pipeline.s3.get_object(Bucket=pipeline.output("RejectedBucketName"), Key=key)["Body"].read()
    return decode_requests(body)


def test_replay_as_text_prints_each_reason_and_what_is_left(misconfigured, pipeline, topic_observer, capsys):
    code, out, _ = run(capsys, "replay")

    assert code == 0
    lines = out.splitlines()
    invalid = next(line for line in lines if line.startswith("InvalidSignature"))
    assert invalid.split()[1:4] == ["5", "4", "1"]
    assert "4 requests published as 3 callbacks; 2 still rejected and kept" in out
    assert f"MissingSignature: {RejectionReason.MISSING_SIGNATURE.remedy}" in out


def test_replay_dry_run_changes_nothing(misconfigured, pipeline, topic_observer, capsys):
    keys = rejected_keys(pipeline)

    code, out, _ = run(capsys, "replay", "--dry-run")

    assert code == 0
    assert "dry run" in out
    assert "4 requests would publish as 3 callbacks" in out
    assert topic_observer() == []
    assert rejected_keys(pipeline) == keys


def test_replay_only_the_reasons_and_times_asked_for(misconfigured, pipeline, topic_observer, capsys):
    # When only the last hour is replayed
    _, out, _ = run(capsys, "replay", "--json", "--since", "1h")
    # Then the params callback of hours ago is left for later
    assert json.loads(out)["checked"] == 4
    assert {record["sid"] for record in topic_observer()} == {MESSAGE_SID, CALL_SID}
    # When only MissingSignature is replayed, nothing else is touched
    keys = rejected_keys(pipeline)
    _, out, _ = run(capsys, "replay", "--json", "--reason", "MissingSignature")
    assert json.loads(out)["checked"] == 1
    assert rejected_keys(pipeline) == keys


def test_replay_files_a_request_under_its_new_reason_then_publishes_it_once_the_base_url_is_fixed(
    pipeline, topic_observer, capsys
):
    # Given a stack deployed with a stale PublicBaseUrl and the wrong token: a genuine callback is rejected
    stale = "https://old.example.com"
    replace_outputs(pipeline, "ingest", PublicBaseUrl=stale)
    request = genuine_requests()["message"]
    kept = rejected_by_validator(request, "m-message", NOW_MS - MINUTE_MS, public_base_url=stale)
    assert kept.reason is RejectionReason.INVALID_SIGNATURE
    keep_rejected(pipeline, [kept])
    # When it is replayed once the token is right (the secret's) but the base URL is not
    _, out, _ = run(capsys, "replay", "--json")
    result = json.loads(out)
    # Then it is still rejected, now for the base URL, and kept under that reason
    assert result["by_reason"]["InvalidSignature"]["now"] == {"PublicBaseUrlMismatch": 1}
    (key,) = rejected_keys(pipeline)
    assert "/PublicBaseUrlMismatch/" in key
    (refiled,) = read(pipeline, key)
    assert refiled.detail == f"signed for {API_BASE_URL}/twilio (PublicBaseUrl is {stale})"
    assert refiled.message_id == "m-message" and refiled.received_at == kept.received_at
    _, out, _ = run(capsys, "list")
    assert RejectionReason.PUBLIC_BASE_URL_MISMATCH.remedy in out
    # When PublicBaseUrl is removed from the stack and replayed again
    replace_outputs(pipeline, "ingest", PublicBaseUrl=None)
    _, out, _ = run(capsys, "replay", "--json")
    # Then it is published
    assert json.loads(out)["published"] == 1
    assert [record["sid"] for record in topic_observer()] == [MESSAGE_SID]
    assert rejected_keys(pipeline) == []


def test_replay_with_a_query_parameter_api_gateway_did_not_forward(pipeline, topic_observer, capsys):
    # Given a StatusCallback URL with a parameter api.yaml does not declare for /twilio
    url = f"{API_BASE_URL}/twilio?campaign=spring%20sale"
    request = signed_callback(url, message_status_params("sent", MessageSid=MESSAGE_SID), AUTH_TOKEN)
    other = signed_callback(
        f"{API_BASE_URL}/twilio", message_status_params("sent", MessageSid=CALL_SID), "not-the-token"
    )
    keep_rejected(
        pipeline,
        [
            rejected_by_validator(request, "m-campaign", NOW_MS - MINUTE_MS, token=AUTH_TOKEN),
            rejected_by_validator(other, "m-forged", NOW_MS - MINUTE_MS, token=AUTH_TOKEN),
        ],
    )
    # When replayed without the parameter, it cannot validate
    _, out, _ = run(capsys, "replay", "--json")
    assert json.loads(out)["published"] == 0
    # When replayed with it
    code, out, _ = run(capsys, "replay", "--json", "--query", "campaign=spring sale")
    # Then it is published with the parameter on the record; the forgery is not helped by it
    assert code == 0
    assert json.loads(out)["published"] == 1
    (record,) = topic_observer()
    assert record["custom"] == {"campaign": "spring sale"}
    kept = [r.message_id for key in rejected_keys(pipeline) for r in read(pipeline, key)]
    assert kept == ["m-forged"]


def test_replay_refuses_a_query_name_api_yaml_could_not_declare(pipeline, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["rejected", "replay", "--query", "bad name=x"])
    assert exit_info.value.code == 2


def test_a_request_kept_twice_is_published_once_and_leaves_both_objects(pipeline, topic_observer, capsys):
    # Given an interrupted settle: the same request in two objects
    request = rejected_by_validator(genuine_requests()["message"], "m-twice", NOW_MS - MINUTE_MS)
    other = rejected_by_validator(genuine_requests()["call"], "m-other", NOW_MS - MINUTE_MS)
    keep_rejected(pipeline, [request, other])
    keep_rejected(pipeline, [request])
    assert len(rejected_keys(pipeline)) == 2
    # When replayed
    _, out, _ = run(capsys, "replay", "--json")
    # Then it is decided and published once, and both objects are settled
    assert json.loads(out)["checked"] == 2
    assert sorted(record["sid"] for record in topic_observer()) == sorted([MESSAGE_SID, CALL_SID])
    assert rejected_keys(pipeline) == []


def test_a_publish_failure_keeps_the_requests_and_exits_1(misconfigured, pipeline, capsys):
    # Given a topic that cannot be published to
    keys = rejected_keys(pipeline)
    replace_outputs(pipeline, "ingest", TopicArn="arn:aws:sns:us-east-1:123456789012:gone")
    # When replayed
    code, out, _ = run(capsys, "replay")
    # Then it says what was not published, keeps everything and exits 1
    assert code == 1
    assert "4 valid requests were not published (NotFound 4)" in out
    invalid = next(line for line in out.splitlines() if line.startswith("InvalidSignature"))
    assert invalid.split()[1:5] == ["5", "0", "1", "4"]
    assert rejected_keys(pipeline) == keys


def test_replay_without_a_readable_secret_exits_3(misconfigured, pipeline, capsys):
    pipeline.clients["secretsmanager"].delete_secret(
        SecretId=pipeline.output("AuthTokenSecretName"), ForceDeleteWithoutRecovery=True
    )

    code, _, err = run(capsys, "replay")

    assert code == 3
    assert "cannot read the auth token" in err
