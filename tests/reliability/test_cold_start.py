"""Secrets Manager unavailable when the validator starts cold: retry the batch, never reject it.

A fresh pipeline, so the validator really starts without cached auth tokens.
Without tokens no signature can be checked; rejecting would drop genuine
callbacks as forged. The validator must fail the whole batch instead, so
SQS delivers it again once Secrets Manager answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from aws_emulator import LocalPipeline
from pipeline_harness.faults import injected, secrets_unavailable
from pipeline_harness.reconcile import AlertObserver
from tests.reliability.harness import (
    TOKEN,
    LogCapture,
    leaks,
    reconcile_scenario,
    running_pipeline,
    scenario_lifecycles,
    send,
    set_queue_retries,
)

pytestmark = pytest.mark.reliability

# The validator's boto3 client tries a call five times (legacy retry mode) before giving up.
SDK_ATTEMPTS = 5
TOKENS_UNAVAILABLE_LOG = "auth token secret unavailable; every callback in the batch will be retried"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with running_pipeline(max_batching_window=0.2) as running:
        set_queue_retries(running, visibility_seconds=1)
        yield running


def test_no_auth_tokens_at_cold_start_fails_the_batch_for_retry_and_rejects_nothing(
    pipeline: LocalPipeline, alerts: AlertObserver, logs: LogCapture
) -> None:
    # Given Secrets Manager is unavailable for the validator's first invocation (every SDK attempt)
    outage = secrets_unavailable(times=SDK_ATTEMPTS)
    with injected(pipeline.traffic, outage):
        # When genuine callbacks arrive
        scenario = send(pipeline, scenario_lifecycles(seed=91, count=10, forged=0.0, unsigned=0.0))
        result = reconcile_scenario(pipeline, scenario, alerts, deadline_seconds=90)

    # Then the outage really hit the validator, which failed its batch instead of judging it
    assert outage.injected == SDK_ATTEMPTS
    unavailable = logs.json_lines(
        "auth token secret unavailable; every callback in the batch will be retried"
    )
    assert len(unavailable) == 1
    assert unavailable[0]["level"] == "ERROR"
    # and no genuine callback was rejected: each one landed exactly once after the retry
    assert logs.json_lines("callback rejected") == []
    batches = logs.json_lines("callback batch ingested")
    assert batches[0]["failed"] == batches[0]["received"] > 0
    assert sum(batch["rejected"] for batch in batches) == 0
    assert result.problems() == [], result.figures()
    # and the outage's log lines carry neither the token nor a phone number
    assert leaks(logs.snapshot(), [TOKEN], scenario.phone_numbers) == []
    assert logs.containing(TOKEN, logging.DEBUG) == []
