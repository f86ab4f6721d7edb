"""Injected faults: each one happens for real, the pipeline recovers, and everything reconciles.

Faults are `Traffic` interceptors (``pipeline_harness.faults``):
the handlers see exactly what AWS would answer — throttling, 5xx, partial
batch failures, an unparseable response — and their SDK retries, partial
batch responses, SQS redelivery and dead-letter queues do the rest. After
each fault is lifted the test reconciles its own callbacks: every valid one
archived, stored once per (SID, status) with the right current status,
alerted and flagged once, nothing forged anywhere, every DLQ empty.

The work queues' visibility timeouts are cut to 1 s here (the templates size
them for Lambda timeouts of 30-60 s), so a retry takes seconds, not minutes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest

from aws_emulator import LocalPipeline
from pipeline_harness.faults import (
    Fault,
    PublishBatchPartialFailure,
    PutEventsPartialFailure,
    UnparseableResponse,
    body_contains,
    error_event_id,
    fail_with_5xx,
    fraction_of_entries,
    injected,
    throttle,
)
from pipeline_harness.reconcile import AlertObserver, Reconciliation
from status_callbacks.domain.publishing import MAX_ENTRIES_PER_CALL
from tests.reliability.harness import (
    client_factory,
    eventually,
    outputs_of,
    queue_depth,
    reconcile_scenario,
    running_pipeline,
    scenario_lifecycles,
    send,
    set_queue_retries,
)
from twilio_callbacks_cli.main import main as cli_main

pytestmark = pytest.mark.reliability

RETRY_VISIBILITY_SECONDS = 1
# Test scenarios rarely fill a batch; don't wait a whole second for one at every hop.
FAST_BATCHING_WINDOW_SECONDS = 0.2
DEADLINE_SECONDS = 90
# The ingest stack's MaxReceiveCount default.
INGEST_MAX_RECEIVE_COUNT = 5
_SEEDS = itertools.count(5_000, 10)


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with running_pipeline(max_batching_window=FAST_BATCHING_WINDOW_SECONDS) as running:
        set_queue_retries(running, visibility_seconds=RETRY_VISIBILITY_SECONDS)
        yield running


def lifecycles(count: int = 10, **options: object) -> list:
    return scenario_lifecycles(next(_SEEDS), count, **options)


def allow_ingest_receives(pipeline: LocalPipeline, count: int) -> None:
    set_queue_retries(
        pipeline, visibility_seconds=RETRY_VISIBILITY_SECONDS, max_receive_count=count, queues=["Ingest"]
    )


def sinks_table(pipeline: LocalPipeline, output: str) -> str:
    return outputs_of(pipeline)[output]


def assert_reconciled(result: Reconciliation, *faults: Fault) -> None:
    """Everything landed exactly once after the faults; the figures are printed for the report (-s)."""
    figures = result.figures()
    faulted = {repr(fault): getattr(fault, "entries_failed", fault.injected) for fault in faults}
    print(json.dumps({"faults": faulted, **figures}))
    assert result.problems() == [], figures
    assert result.landed.idle


def test_sns_publish_batch_partial_failure_retries_only_the_failed_callbacks(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given SNS fails about a third of the entries of every PublishBatch, each of them twice
    fault = PublishBatchPartialFailure(fail_entry=fraction_of_entries(0.35), attempts_per_entry=2)
    with injected(pipeline.traffic, fault):
        # When a burst of callbacks arrives
        scenario = send(pipeline, lifecycles())
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    # Then the fault happened, and after the validator's retries everything landed exactly
    assert fault.entries_failed >= 4
    assert set(fault.failed_keys.values()) == {2}
    assert_reconciled(result, fault)


def test_sns_publish_batch_total_failure_is_retried_until_published(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given SNS refuses every entry of every PublishBatch once (a 200 answer with all of them Failed)
    refused = PublishBatchPartialFailure(attempts_per_entry=1)
    with injected(pipeline.traffic, refused):
        scenario = send(pipeline, lifecycles())
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    # Then every callback was refused once and still landed exactly once
    assert refused.entries_failed == len(refused.failed_keys) >= len(scenario.expectation.valid)
    assert_reconciled(result, refused)


def test_sns_throttling_beyond_the_sdk_retries_fails_the_batch_and_sqs_retries_it(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given PublishBatch is throttled more times in a row than one invocation's SDK retries
    fault = throttle("sns", "PublishBatch", times=6)
    with injected(pipeline.traffic, fault):
        scenario = send(pipeline, lifecycles(count=6))
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    assert fault.injected == 6
    assert_reconciled(result, fault)


def test_s3_put_object_throttling_and_5xx_are_retried_without_duplicating_the_archive(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given S3 answers SlowDown five times in a row (all of one invocation's SDK attempts),
    # then 500 for a third of the following writes
    slow_down = throttle("s3", "PutObject", times=5)
    internal_error = fail_with_5xx("s3", "PutObject", probability=0.33, times=3, seed=7)
    with injected(pipeline.traffic, slow_down, internal_error):
        scenario = send(pipeline, lifecycles())
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    assert slow_down.injected == 5
    assert internal_error.injected >= 1
    assert_reconciled(result, slow_down, internal_error)


def test_dynamodb_put_item_throttling_and_5xx_are_retried(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given the status table throttles three writes in a row (all of the writer's SDK attempts
    # for one record), then fails a few more with 500
    table = sinks_table(pipeline, "StatusTableName")
    throttled = throttle("dynamodb", "PutItem", times=3, match=body_contains(table))
    failing = fail_with_5xx("dynamodb", "PutItem", probability=0.2, times=4, match=body_contains(table))
    with injected(pipeline.traffic, throttled, failing):
        scenario = send(pipeline, lifecycles())
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    assert throttled.injected == 3
    assert failing.injected >= 1
    assert_reconciled(result, throttled, failing)


def test_the_error_routers_publish_ledger_throttled_and_failing_still_alerts_once(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given the idempotency ledger's claims (PutItem) are throttled, then some fail with 500
    # (the router's DynamoDB client retries up to ten times, so its SDK absorbs these)
    ledger = body_contains(sinks_table(pipeline, "IdempotencyTableName"))
    throttled = throttle("dynamodb", "PutItem", times=4, match=ledger)
    failing = fail_with_5xx("dynamodb", "PutItem", probability=0.3, times=3, match=ledger, seed=3)
    with injected(pipeline.traffic, throttled, failing):
        scenario = send(pipeline, lifecycles(error_rate=0.6))
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    # Then each error callback still became exactly one alert and one number flag
    assert throttled.injected == 4
    assert failing.injected >= 1
    assert scenario.expectation.alerts
    assert_reconciled(result, throttled, failing)


def test_eventbridge_failed_entries_are_retried_in_process_then_by_sqs(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given PutEvents reports half of the error events as failed, four times each
    # (the router tries three times per invocation, so each needs an SQS retry too)
    fault = PutEventsPartialFailure(
        fail_entry=fraction_of_entries(0.5, key=error_event_id), attempts_per_entry=4
    )
    with injected(pipeline.traffic, fault):
        scenario = send(pipeline, lifecycles(error_rate=0.6))
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    assert fault.entries_failed >= 8
    assert set(fault.failed_keys.values()) == {4}
    # Each error callback alerted exactly once, and its number flagged once
    assert_reconciled(result, fault)


def test_a_validator_crashing_after_publishing_redelivers_the_batch_without_duplicate_records(
    pipeline: LocalPipeline, alerts: AlertObserver
) -> None:
    # Given SNS publishes the batch but the validator cannot read the answer and crashes,
    # as a function dies between its side effect and its acknowledgement
    crash = UnparseableResponse("sns", "PublishBatch", take_effect=True, times=2)
    with injected(pipeline.traffic, crash):
        scenario = send(pipeline, lifecycles(error_rate=0.5))
        result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)

    # Then the redelivered callbacks are published again: DynamoDB, alerts and flags stay exact,
    # and the archive holds at-least-once copies (same event ids) of at most the two crashed
    # PublishBatch calls' entries, besides one per Twilio retry
    assert crash.injected == 2
    assert_reconciled(result, crash)
    assert result.archive_duplicate_lines <= 2 * MAX_ENTRIES_PER_CALL + scenario.expectation.duplicates_sent


def test_a_poison_callback_is_dead_lettered_after_its_receives_and_lands_once_redriven(
    pipeline: LocalPipeline, alerts: AlertObserver, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given SNS refuses every callback of one message, and the ingest queue allows two receives
    sent_lifecycles = lifecycles(count=6, forged=0.0, unsigned=0.0)
    poison = sent_lifecycles[0]
    poisoned_deliveries = len(poison.callbacks)
    set_queue_retries(
        pipeline, visibility_seconds=RETRY_VISIBILITY_SECONDS, max_receive_count=2, queues=["Ingest"]
    )
    refusal = PublishBatchPartialFailure(fail_entry=lambda entry: poison.sid in entry.get("Message", ""))
    sqs = client_factory(pipeline)("sqs")
    dead_letters = outputs_of(pipeline)["IngestDeadLetterQueueUrl"]
    try:
        with injected(pipeline.traffic, refusal):
            scenario = send(pipeline, sent_lifecycles)
            # When its callbacks have used up their receives
            eventually(
                lambda: queue_depth(sqs, dead_letters) == poisoned_deliveries,
                "the poison callbacks in the ingest dead-letter queue",
            )
    finally:
        set_queue_retries(
            pipeline, visibility_seconds=RETRY_VISIBILITY_SECONDS, max_receive_count=5, queues=["Ingest"]
        )
    assert min(refusal.failed_keys.values()) >= 2

    # Then, the fault gone, an operator redrives the DLQ with the CLI, and they land exactly once
    exit_code = cli_main(["redrive", "--queue", "Ingest", "--endpoint-url", pipeline.endpoint_url])
    assert exit_code == 0, capsys.readouterr()
    result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)
    assert_reconciled(result, refusal)
    assert {callback.sid for callback in result.expectation.valid.values()} >= {poison.sid}
