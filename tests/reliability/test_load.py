"""A burst of realistic callbacks through the whole local pipeline, reconciled sink by sink.

CI size by default (about 1,500 callbacks). The full-size run sends about
10,000 at high concurrency and writes its figures to a JSON file:

    RELIABILITY_LOAD_LIFECYCLES=3000 RELIABILITY_LOAD_CONCURRENCY=64 \\
    RELIABILITY_LOAD_REPORT=load-report.json .venv/bin/pytest tests/reliability/test_load.py -s

The mix: messages and calls (about 70/30) on both routes, /twilio-params with
custom values that need careful encoding, ~5 % ending in an error code,
Twilio retries (identical duplicates), lifecycles arriving shuffled, and
forged and unsigned requests. The pipeline runs with the templates' own
timings (no shortened visibility timeouts): nothing should need a retry.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aws_emulator import LocalPipeline
from pipeline_harness.reconcile import AlertObserver
from tests.reliability.harness import (
    TOKEN,
    LogCapture,
    leaks,
    reconcile_scenario,
    running_pipeline,
    scenario_lifecycles,
    send,
)

pytestmark = [pytest.mark.reliability, pytest.mark.load]

LIFECYCLES = int(os.environ.get("RELIABILITY_LOAD_LIFECYCLES", "450"))
CONCURRENCY = int(os.environ.get("RELIABILITY_LOAD_CONCURRENCY", "16"))
REPORT = os.environ.get("RELIABILITY_LOAD_REPORT")
# Generous: the local pipeline drains ~20-40 callbacks/s on two cores; the deadline only bounds a hang.
DEADLINE_SECONDS = 120 + LIFECYCLES * 0.5


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with running_pipeline() as running:
        yield running


def test_a_burst_lands_everywhere_exactly_once_with_nothing_forged_and_nothing_dead_lettered(
    pipeline: LocalPipeline, alerts: AlertObserver, logs: LogCapture
) -> None:
    # Given a realistic burst: both routes, errors, retries, shuffled lifecycles, forgeries
    lifecycles = scenario_lifecycles(
        seed=20_260_101,
        count=LIFECYCLES,
        error_rate=0.05,
        out_of_order=0.2,
        duplicates=0.05,
        forged=0.02,
        unsigned=0.01,
    )
    pipeline.traffic.reset()

    # When it is sent at once, many requests in parallel
    started = time.monotonic()
    scenario = send(pipeline, lifecycles, concurrency=CONCURRENCY)
    sent_in = time.monotonic() - started
    result = reconcile_scenario(pipeline, scenario, alerts, DEADLINE_SECONDS)
    landed_in = time.monotonic() - started

    figures = {
        **result.figures(),
        "http_failures": scenario.summary.failures,
        "http_rate_per_second": round(scenario.summary.sent / sent_in, 1),
        "send_seconds": round(sent_in, 1),
        "end_to_end_seconds": round(landed_in, 1),
        "end_to_end_callbacks_per_second": round(scenario.summary.sent / landed_in, 1),
        "concurrency": CONCURRENCY,
        "aws_requests": pipeline.traffic.counts(),
    }
    print(json.dumps(figures, indent=2))
    if REPORT:
        Path(REPORT).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")

    # Then every request was accepted by the API, and everything reconciles:
    # each valid callback archived (at-least-once copies counted), one item per (SID, status),
    # lifecycle-aware current statuses, one alert per error callback, number flags, nothing forged
    assert scenario.summary.failures == 0
    assert result.problems() == [], figures
    assert result.landed.idle
    assert scenario.expectation.forged_sent + scenario.expectation.unsigned_sent > 0
    assert scenario.expectation.duplicates_sent > 0 and scenario.expectation.out_of_order_lifecycles > 0
    assert scenario.expectation.alerts and scenario.expectation.flags
    # and no log line carried the auth token or a phone number
    assert leaks(logs.snapshot(), [TOKEN], scenario.phone_numbers) == []
