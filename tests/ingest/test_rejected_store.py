"""Rejected requests are kept, once, in the ingest stack's store; a corrected token is picked up early."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from status_callbacks.adapters.secrets import AuthTokenSource
from status_callbacks.domain.rejected import parse_key
from tests.ingest.conftest import REJECTED_BUCKET, SECRET_NAME
from tests.support.api_gateway import API_BASE_URL
from tests.support.signing import (
    TEST_AUTH_TOKEN,
    message_status_params,
    signed_callback,
    unsigned_callback,
    with_signature,
)

CALLBACK_URL = f"{API_BASE_URL}/twilio"


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rejected_requests_are_kept_with_body_attributes_reason_and_time(ingest_stack):
    # Given a forged and an unsigned request
    forged = with_signature(signed_callback(CALLBACK_URL, message_status_params()), "Zm9yZ2Vk")
    unsigned = unsigned_callback(CALLBACK_URL, "MessageSid=SM1&MessageStatus=sent")
    # When the validator handles them
    message_ids, response = ingest_stack.deliver([forged, unsigned])
    # Then neither is retried, nothing is published, and both are kept exactly as queued
    assert response == {"batchItemFailures": []}
    assert ingest_stack.published() == []
    kept = {request.message_id: request for request in ingest_stack.kept()}
    assert set(kept) == set(message_ids)
    assert kept[message_ids[0]].reason.value == "InvalidSignature"
    assert kept[message_ids[0]].body == forged.body
    assert kept[message_ids[0]].attributes["Signature"] == "=Zm9yZ2Vk"
    assert kept[message_ids[0]].attributes["Route"] == "=POST /twilio"
    assert kept[message_ids[1]].reason.value == "MissingSignature"
    # And each object's key names its day, reason and count, so listing needs no reads
    keys = [item["Key"] for item in ingest_stack.s3.list_objects_v2(Bucket=REJECTED_BUCKET)["Contents"]]
    parsed = sorted((key.reason.value, key.count) for key in map(parse_key, keys) if key)
    assert parsed == [("InvalidSignature", 1), ("MissingSignature", 1)]


def test_a_redelivered_batch_of_rejections_is_kept_once(ingest_stack):
    # Given a batch of two forged requests the validator already kept
    forged = [
        with_signature(signed_callback(CALLBACK_URL, message_status_params(MessageSid=f"SM{n:032x}")), "Zm9y")
        for n in range(2)
    ]
    ingest_stack.enqueue(forged)
    event = ingest_stack.receive_event()
    ingest_stack.invoke(event)
    # When SQS delivers the same batch again (e.g. the invocation timed out after writing)
    ingest_stack.invoke(event)
    # Then the store holds one object with each request once
    assert len(ingest_stack.s3.list_objects_v2(Bucket=REJECTED_BUCKET)["Contents"]) == 1
    assert len(ingest_stack.kept()) == 2


def test_a_rejection_that_cannot_be_kept_is_retried_not_dropped(ingest_stack):
    # Given the rejected store cannot be written (its bucket is gone)
    deps = ingest_stack.dependencies()
    broken = replace(deps, settings=replace(deps.settings, rejected_bucket="no-such-bucket"))
    valid = signed_callback(CALLBACK_URL, message_status_params(MessageSid="SM" + "1" * 32))
    forged = with_signature(signed_callback(CALLBACK_URL, message_status_params()), "Zm9yZ2Vk")
    # When a batch with a valid and a forged request is handled
    message_ids, response = ingest_stack.deliver([valid, forged], deps=broken)
    # Then the valid one is published and the forged one goes back to SQS to be kept on a later try
    assert failed_ids(response) == {message_ids[1]}
    assert [record.sid for record in ingest_stack.published()] == ["SM" + "1" * 32]


def test_a_corrected_token_is_picked_up_after_a_failure_once_the_cached_copy_is_a_minute_old(ingest_stack):
    # Given the secret holds the wrong token, and the validator has read it
    ingest_stack.put_secret({"AUTH_TOKEN": "the-wrong-token"})
    clock = Clock()
    deps = replace(
        ingest_stack.dependencies(),
        tokens=AuthTokenSource(
            SECRET_NAME, SecretsProvider(boto3_client=ingest_stack.secretsmanager), clock=clock
        ),
    )
    first = signed_callback(CALLBACK_URL, message_status_params(MessageSid="SM" + "a" * 32))
    _, response = ingest_stack.deliver([first], deps=deps)
    assert response == {"batchItemFailures": []}
    assert [kept.reason.value for kept in ingest_stack.kept()] == ["InvalidSignature"]

    # When the secret is corrected and a callback arrives 30 s later: the cached copy is too fresh to re-read
    ingest_stack.put_secret({"AUTH_TOKEN": TEST_AUTH_TOKEN})
    clock.now += 30
    second = signed_callback(CALLBACK_URL, message_status_params(MessageSid="SM" + "b" * 32))
    ingest_stack.deliver([second], deps=deps)
    assert ingest_stack.published() == []

    # Then a callback arriving after a minute fails with the cached token, re-reads it and is published
    clock.now += 31
    third = signed_callback(CALLBACK_URL, message_status_params(MessageSid="SM" + "c" * 32))
    ingest_stack.deliver([third], deps=deps)
    assert [record.sid for record in ingest_stack.published()] == ["SM" + "c" * 32]
    # and the two rejected before it stay kept, for a replay
    assert [kept.reason.value for kept in ingest_stack.kept()] == ["InvalidSignature", "InvalidSignature"]
