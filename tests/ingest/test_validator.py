"""The validator end to end: Twilio request → api.yaml forwarding → SQS (moto) → handler → SNS (moto)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.api_gateway import API_BASE_URL
from tests.support.signing import (
    ACCOUNT_SID,
    CALL_SID,
    FROM_NUMBER,
    MESSAGE_SID,
    SUBACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TO_NUMBER,
    TwilioRequest,
    call_status_params,
    message_status_params,
    signed_callback,
    unsigned_callback,
    with_signature,
)

CALLBACK_URL = f"{API_BASE_URL}/twilio"
PARAMS_URL = f"{API_BASE_URL}/twilio-params"


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


def test_messaging_callback_is_published_as_a_record(ingest_stack):
    # Given a signed "delivered" callback for an SMS
    params = message_status_params("delivered")
    # When it goes through API Gateway, SQS and the validator
    _, response = ingest_stack.deliver([signed_callback(CALLBACK_URL, params)])
    # Then nothing is retried and exactly one record with every Twilio parameter is published
    assert response == {"batchItemFailures": []}
    [record] = ingest_stack.published()
    assert record.product == "message"
    assert record.sid == MESSAGE_SID
    assert record.status == "delivered"
    assert record.account_sid == ACCOUNT_SID
    assert record.error_code is None
    assert record.route == "/twilio"
    assert dict(record.twilio) == params
    assert dict(record.custom) == {}


def test_voice_callback_keeps_its_sequence_number(ingest_stack):
    # Given a signed "completed" call callback
    params = call_status_params("completed", sequence_number="4")
    # When it is delivered
    _, response = ingest_stack.deliver([signed_callback(CALLBACK_URL, params)])
    # Then a call record is published with SequenceNumber kept verbatim
    assert response["batchItemFailures"] == []
    [record] = ingest_stack.published()
    assert (record.product, record.sid, record.status) == ("call", CALL_SID, "completed")
    assert record.twilio["SequenceNumber"] == "4"


def test_received_at_is_when_sqs_accepted_the_request(ingest_stack):
    # Given a queued callback
    ingest_stack.enqueue([signed_callback(CALLBACK_URL, message_status_params())])
    event = ingest_stack.receive_event()
    sent = int(event["Records"][0]["attributes"]["SentTimestamp"])
    # When the validator handles it
    ingest_stack.invoke(event)
    # Then the record's received_at is the SQS SentTimestamp (epoch ms)
    [record] = ingest_stack.published()
    assert record.received_at == sent


def test_sns_attributes_let_a_filter_policy_select_only_errors(ingest_stack):
    # Given a healthy callback and a failed one (ErrorCode 30003)
    healthy = message_status_params("delivered")
    failed = message_status_params("undelivered", ErrorCode="30003", MessageSid="SM" + "1" * 32)
    # When both are delivered in one batch
    ingest_stack.deliver([signed_callback(CALLBACK_URL, healthy), signed_callback(CALLBACK_URL, failed)])
    # Then the unfiltered subscription gets both, with Product/Status, and ErrorCode only on the error
    messages = ingest_stack.published_messages()
    attributes = {
        json.loads(m["Body"])["status"]: {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
        for m in messages
    }
    assert attributes == {
        "delivered": {"Product": "message", "Status": "delivered"},
        "undelivered": {"Product": "message", "Status": "undelivered", "ErrorCode": "30003"},
    }
    # And the subscription filtering on "ErrorCode exists" receives only the error
    errors = ingest_stack.published_errors()
    assert [(r.status, r.error_code) for r in errors] == [("undelivered", "30003")]


def test_error_code_zero_is_not_an_error(ingest_stack):
    # Given a callback whose ErrorCode is "0" (Twilio's "no error" on some products)
    params = message_status_params("delivered", ErrorCode="0")
    # When it is delivered
    ingest_stack.deliver([signed_callback(CALLBACK_URL, params)])
    # Then it is published but the error subscription does not receive it
    assert len(ingest_stack.published()) == 1
    assert ingest_stack.published_errors() == []


@pytest.mark.parametrize(
    ("secret", "token"),
    [
        pytest.param(
            {"AUTH_TOKEN": "new-token", "AUTH_TOKEN_SECONDARY": "old-token"}, "new-token", id="primary"
        ),
        pytest.param(
            {"AUTH_TOKEN": "new-token", "AUTH_TOKEN_SECONDARY": "old-token"}, "old-token", id="secondary"
        ),
    ],
)
def test_both_tokens_are_accepted_during_rotation(ingest_stack, secret, token):
    # Given a secret holding the new and the old auth token
    ingest_stack.put_secret(secret)
    # When a callback signed with either arrives
    _, response = ingest_stack.deliver([signed_callback(CALLBACK_URL, message_status_params(), token=token)])
    # Then it is published
    assert response["batchItemFailures"] == []
    assert len(ingest_stack.published()) == 1


def test_a_token_outside_the_secret_is_rejected_after_rotation(ingest_stack):
    # Given rotation finished: only the new token is left
    ingest_stack.put_secret({"AUTH_TOKEN": "new-token"})
    # When a callback signed with the retired token arrives
    _, response = ingest_stack.deliver([signed_callback(CALLBACK_URL, message_status_params(), token="old")])
    # Then it is rejected (not retried, not published)
    assert response["batchItemFailures"] == []
    assert ingest_stack.published() == []


def test_subaccount_callback_validates_with_its_own_token(ingest_stack):
    # Given a secret with the main token and a subaccount's token keyed by its AccountSid
    ingest_stack.put_secret({"AUTH_TOKEN": TEST_AUTH_TOKEN, SUBACCOUNT_SID: "subaccount-token"})
    params = message_status_params(AccountSid=SUBACCOUNT_SID)
    # When the subaccount's callback (signed with its token) and a forgery using the main one's SID arrive
    forged = message_status_params(MessageSid="SM" + "2" * 32)
    _, response = ingest_stack.deliver(
        [
            signed_callback(CALLBACK_URL, params, token="subaccount-token"),
            signed_callback(CALLBACK_URL, forged, token="subaccount-token"),
        ]
    )
    # Then only the subaccount's own callback is published: its token does not vouch for the main account
    assert response["batchItemFailures"] == []
    assert [(r.account_sid, r.sid) for r in ingest_stack.published()] == [(SUBACCOUNT_SID, MESSAGE_SID)]


def test_public_base_url_is_what_the_signature_is_checked_against(ingest_stack):
    # Given the stack is reached through a custom domain, configured as PublicBaseUrl
    ingest_stack.public_base_url = "https://hooks.example.com"
    params = message_status_params()
    through_domain = signed_callback("https://hooks.example.com/twilio", params)
    # API Gateway still reports its own domain: the request is what the proxy forwarded
    forwarded = TwilioRequest(CALLBACK_URL, through_domain.body, through_domain.headers)
    signed_for_api_domain = signed_callback(CALLBACK_URL, message_status_params(MessageSid="SM" + "3" * 32))
    # When both arrive
    _, response = ingest_stack.deliver([forwarded, signed_for_api_domain])
    # Then only the one signed for the public URL validates
    assert response["batchItemFailures"] == []
    assert [r.sid for r in ingest_stack.published()] == [MESSAGE_SID]


def test_unreadable_secret_fails_the_whole_batch_for_retry(ingest_stack, log_output, capsys):
    # Given the auth token secret cannot be read (deleted, or no permission)
    ingest_stack.secretsmanager.delete_secret(
        SecretId="TwilioStatusCallbackHandler", ForceDeleteWithoutRecovery=True
    )
    requests = [
        signed_callback(CALLBACK_URL, message_status_params()),
        unsigned_callback(CALLBACK_URL, "MessageSid=SM1"),
    ]
    # When a batch arrives
    message_ids, response = ingest_stack.deliver(requests)
    # Then every message is reported failed (retried, later dead-lettered) - none is rejected as forged
    assert failed_ids(response) == set(message_ids)
    assert ingest_stack.published() == []
    assert "callback rejected" not in log_output.getvalue()
    assert "auth token secret unavailable" in log_output.getvalue()
    assert '"AuthTokensUnavailable":[1.0]' in capsys.readouterr().out


def test_secret_without_auth_token_fails_the_batch(ingest_stack):
    # Given a secret that exists but holds no AUTH_TOKEN (a misconfiguration)
    ingest_stack.put_secret({"TOKEN": "typo"})
    # When a valid callback arrives
    message_ids, response = ingest_stack.deliver([signed_callback(CALLBACK_URL, message_status_params())])
    # Then it is retried rather than rejected
    assert failed_ids(response) == set(message_ids)


def test_tokens_are_cached_between_batches(ingest_stack):
    # Given one container (one set of dependencies) that already read the secret
    deps = ingest_stack.dependencies()
    calls: list[str] = []
    ingest_stack.secretsmanager.meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **_: calls.append("get")
    )
    ingest_stack.deliver([signed_callback(CALLBACK_URL, message_status_params())], deps)
    # When a second batch arrives in the same container
    ingest_stack.deliver(
        [signed_callback(CALLBACK_URL, message_status_params(MessageSid="SM" + "4" * 32))], deps
    )
    # Then Secrets Manager was read once
    assert calls == ["get"]
    assert len(ingest_stack.published()) == 2


def test_publish_call_that_raises_fails_only_its_callbacks(ingest_stack):
    # Given SNS refuses the PublishBatch call (throttled)
    def throttle(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "Throttled", "Message": "Rate exceeded"}}, "PublishBatch")

    ingest_stack.sns.meta.events.register("before-call.sns.PublishBatch", throttle)
    valid = signed_callback(CALLBACK_URL, message_status_params())
    forged = with_signature(signed_callback(CALLBACK_URL, message_status_params("sent")), "Zm9yZ2Vk")
    # When a valid and a forged callback arrive together
    message_ids, response = ingest_stack.deliver([valid, forged])
    # Then the valid one is retried and the forged one is not
    assert failed_ids(response) == {message_ids[0]}


def test_callback_with_phone_numbers_never_logs_them(ingest_stack, log_output, capsys):
    # Given valid, forged and malformed callbacks carrying phone numbers and a token-signed body
    params = message_status_params()
    requests = [
        signed_callback(CALLBACK_URL, params),
        with_signature(signed_callback(CALLBACK_URL, message_status_params("sent")), "Zm9yZ2Vk"),
        unsigned_callback(CALLBACK_URL, "To=%2B15555550123&Body"),
    ]
    # When they are handled (with DEBUG logging, as tests run)
    ingest_stack.deliver(requests)
    # Then no log line carries a token, a phone number or a body
    output = log_output.getvalue() + "".join(capsys.readouterr())
    for secret_or_pii in (
        TEST_AUTH_TOKEN,
        TO_NUMBER,
        FROM_NUMBER,
        "%2B1555",
        requests[0].body,
        "MessageStatus",
    ):
        assert secret_or_pii not in output
    assert "callbacks rejected and kept for replay" in output


def test_a_message_that_breaks_validation_is_retried_without_holding_back_the_others(ingest_stack, capsys):
    # Given a batch where one SQS record lacks its SentTimestamp as a number (cannot happen on AWS: a bug)
    ingest_stack.enqueue(
        [
            signed_callback(CALLBACK_URL, message_status_params()),
            signed_callback(CALLBACK_URL, message_status_params(MessageSid="SM" + "6" * 32)),
        ]
    )
    event = ingest_stack.receive_event()
    event["Records"][0]["attributes"]["SentTimestamp"] = "not-a-number"
    # When the validator handles it
    response = ingest_stack.invoke(event)
    # Then only the broken record is retried and the other is published
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert [r.sid for r in ingest_stack.published()] == ["SM" + "6" * 32]
    assert '"ValidationErrors":[1.0]' in capsys.readouterr().out
