"""Whole SQS batches: partial failures, duplicates, SNS call counts and size limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from status_callbacks.domain.publishing import MAX_BYTES_PER_CALL, request_entry_size
from tests.support.api_gateway import API_BASE_URL
from tests.support.signing import (
    TwilioRequest,
    message_status_params,
    sign,
    signed_callback,
    unsigned_callback,
    with_signature,
)

CALLBACK_URL = f"{API_BASE_URL}/twilio"


def sid(n: int) -> str:
    return f"SM{n:032x}"


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


def fail_entries_in_sns(sns: Any, should_fail: Callable[[dict[str, Any]], bool]) -> Callable[[], None]:
    """Make SNS report matching entries in `Failed` (and not publish them), like a partial failure.

    Hooks on the real moto-backed client: matching entries are taken out of the
    request before it is sent and added to the response's `Failed` list.
    Returns a function that makes SNS healthy again.
    """
    failing: list[str] = []

    def take_out(params: dict[str, Any], **_: Any) -> None:
        failing.clear()
        kept = []
        for entry in params["PublishBatchRequestEntries"]:
            if should_fail(entry):
                failing.append(entry["Id"])
            else:
                kept.append(entry)
        params["PublishBatchRequestEntries"] = kept

    def report_failed(parsed: dict[str, Any], **_: Any) -> None:
        parsed.setdefault("Failed", []).extend(
            {"Id": entry_id, "Code": "InternalError", "SenderFault": False, "Message": "injected"}
            for entry_id in failing
        )

    sns.meta.events.register("provide-client-params.sns.PublishBatch", take_out)
    sns.meta.events.register("after-call.sns.PublishBatch", report_failed)

    def recover() -> None:
        sns.meta.events.unregister("provide-client-params.sns.PublishBatch", take_out)
        sns.meta.events.unregister("after-call.sns.PublishBatch", report_failed)

    return recover


def record_sid_is(target: str) -> Callable[[dict[str, Any]], bool]:
    return lambda entry: json.loads(entry["Message"])["sid"] == target


def test_ten_valid_callbacks_take_one_sns_call(ingest_stack, sns_calls):
    # Given a full batch of 10 distinct valid callbacks
    requests = [signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(n))) for n in range(10)]
    # When the validator handles it
    _, response = ingest_stack.deliver(requests)
    # Then it made exactly one SNS API call, a PublishBatch, and all 10 records arrived once
    assert response["batchItemFailures"] == []
    assert sns_calls == ["PublishBatch"]
    assert sorted(r.sid for r in ingest_stack.published()) == sorted(sid(n) for n in range(10))


def test_mixed_batch_reports_exactly_the_callbacks_sns_failed(ingest_stack, sns_calls, log_output):
    # Given a batch: 3 valid callbacks (SNS will fail the 2nd), a forged one, an unsigned one, a malformed one
    valid = [signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(n))) for n in range(3)]
    forged = with_signature(
        signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(7))), "Zm9yZ2Vk"
    )
    unsigned = unsigned_callback(CALLBACK_URL, "MessageSid=SM1&MessageStatus=sent")
    malformed = TwilioRequest(CALLBACK_URL, "%%%not-a-form", {"X-Twilio-Signature": sign(CALLBACK_URL, {})})
    fail_entries_in_sns(ingest_stack.sns, record_sid_is(sid(1)))
    # When the batch is handled
    message_ids, response = ingest_stack.deliver([valid[0], forged, valid[1], unsigned, malformed, valid[2]])
    # Then only the callback SNS failed is reported for retry; rejections are final
    assert failed_ids(response) == {message_ids[2]}
    # And the two SNS accepted were published once each, in one call
    assert sorted(r.sid for r in ingest_stack.published()) == [sid(0), sid(2)]
    assert sns_calls == ["PublishBatch"]
    # And each rejection was kept once, with its reason, for replay
    reasons = {kept.message_id: kept.reason.value for kept in ingest_stack.kept()}
    assert reasons == {
        message_ids[1]: "InvalidSignature",
        message_ids[3]: "MissingSignature",
        message_ids[4]: "MalformedBody",
    }
    # And the log says so once for the batch, by reason
    warnings = [json.loads(line) for line in log_output.getvalue().splitlines() if '"WARNING"' in line]
    [summary] = [w for w in warnings if w["message"] == "callbacks rejected and kept for replay"]
    assert summary["by_reason"] == {"InvalidSignature": 1, "MalformedBody": 1, "MissingSignature": 1}


def test_retry_of_the_failed_callback_publishes_it_once(ingest_stack):
    # Given a batch where SNS failed one callback
    recover = fail_entries_in_sns(ingest_stack.sns, record_sid_is(sid(1)))
    requests = [signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(n))) for n in range(3)]
    message_ids, response = ingest_stack.deliver(requests)
    assert failed_ids(response) == {message_ids[1]}
    first_attempt = sorted(r.sid for r in ingest_stack.published())
    # When SNS recovers and SQS redelivers what is left in the queue
    recover()
    redelivered_ids, second_response = ingest_stack.redeliver()
    # Then only the failed message came back, and across both attempts each callback was published once
    assert redelivered_ids == [message_ids[1]]
    assert second_response["batchItemFailures"] == []
    assert first_attempt + [r.sid for r in ingest_stack.published()] == [sid(0), sid(2), sid(1)]
    assert ingest_stack.receive_event()["Records"] == []


def test_twilio_retry_in_the_same_batch_is_published_once(ingest_stack, sns_calls):
    # Given the same callback twice in one batch (Twilio retried after a slow answer) plus another one
    original = signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(1)))
    other = signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(2)))
    # When the batch is handled
    _, response = ingest_stack.deliver([original, other, original])
    # Then each distinct callback is published once
    assert response["batchItemFailures"] == []
    published = ingest_stack.published()
    assert sorted(r.sid for r in published) == [sid(1), sid(2)]
    assert len({r.event_id for r in published}) == 2


def test_failed_publish_of_a_duplicated_callback_retries_every_copy(ingest_stack):
    # Given a callback delivered twice in one batch, and SNS failing its (single) entry
    original = signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(1)))
    other = signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(2)))
    fail_entries_in_sns(ingest_stack.sns, record_sid_is(sid(1)))
    # When the batch is handled
    message_ids, response = ingest_stack.deliver([original, other, original])
    # Then both copies are retried (neither is deleted while the callback is unpublished)
    assert failed_ids(response) == {message_ids[0], message_ids[2]}
    assert [r.sid for r in ingest_stack.published()] == [sid(2)]


def test_statuses_arriving_out_of_order_are_all_published(ingest_stack):
    # Given "delivered" arriving before "sent" for the same message
    requests = [
        signed_callback(CALLBACK_URL, message_status_params("delivered")),
        signed_callback(CALLBACK_URL, message_status_params("sent")),
    ]
    # When they are handled in one batch
    ingest_stack.deliver(requests)
    # Then both are published as distinct records; ordering is the consumers' job (lifecycle)
    assert sorted(r.status for r in ingest_stack.published()) == ["delivered", "sent"]


def test_large_callbacks_are_split_to_respect_the_256_kib_call_limit(ingest_stack, sns_calls):
    # Given 10 valid callbacks of about 60 KB each (600 KB in total)
    big = "x" * 60_000
    requests = [
        signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(n), Body=big)) for n in range(10)
    ]
    sizes: list[int] = []
    ingest_stack.sns.meta.events.register(
        "provide-client-params.sns.PublishBatch",
        lambda params, **_: sizes.append(
            sum(request_entry_size(e) for e in params["PublishBatchRequestEntries"])
        ),
    )
    # When the batch is handled
    _, response = ingest_stack.deliver(requests)
    # Then every PublishBatch call stays within 256 KiB, as few calls as that allows, nothing lost
    assert response["batchItemFailures"] == []
    assert all(size <= MAX_BYTES_PER_CALL for size in sizes)
    assert len(sns_calls) == len(sizes) == 3
    assert sorted(r.sid for r in ingest_stack.published()) == sorted(sid(n) for n in range(10))


def test_a_callback_forwarded_for_another_domain_and_route_is_refused_and_counted(ingest_stack, capsys):
    # Given a genuine callback Twilio signed for another webhook of the account
    elsewhere = signed_callback("https://other.example.com/sms", message_status_params(MessageSid=sid(1)))
    # posted to this API with a query value that rewrites the forwarded Domain and Path to that webhook's
    injected = (
        '"},"Domain":{"DataType":"String","StringValue":"=other.example.com"},'
        '"Path":{"DataType":"String","StringValue":"=/sms'
    )
    rewritten = TwilioRequest(
        url=f"{API_BASE_URL}/twilio-params?id={quote(injected, safe='')}",
        body=elsewhere.body,
        headers=elsewhere.headers,
    )
    genuine = signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(2)))
    capsys.readouterr()
    # When it is handled with a genuine callback
    ingest_stack.deliver([rewritten, genuine])
    # Then only the genuine callback is published, and the other is counted as UnknownDestination
    assert [record.sid for record in ingest_stack.published()] == [sid(2)]
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert emf["CallbacksRejectedUnknownDestination"] == [1.0]


def test_metrics_count_published_rejected_per_reason_and_failures(ingest_stack, capsys):
    # Given one valid, one failing at SNS, two forged and one unsigned callback
    fail_entries_in_sns(ingest_stack.sns, record_sid_is(sid(2)))
    requests = [
        signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(1))),
        signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(2))),
        with_signature(signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(3))), "Zm9yZ2Vk"),
        with_signature(signed_callback(CALLBACK_URL, message_status_params(MessageSid=sid(4))), "Zm9yZ2Vk"),
        unsigned_callback(CALLBACK_URL, "MessageSid=SM1"),
    ]
    capsys.readouterr()
    # When the batch is handled
    ingest_stack.deliver(requests)
    # Then one EMF document carries the counts
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    counts = {name: emf[name] for name in names}
    assert counts == {
        "CallbacksPublished": [1.0],
        "CallbacksRejected": [3.0],
        "CallbacksRejectedInvalidSignature": [2.0],
        "CallbacksRejectedMissingSignature": [1.0],
        "PublishFailures": [1.0],
        "RejectedRequestsKept": [3.0],
    }
