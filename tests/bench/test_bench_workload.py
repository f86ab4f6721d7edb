"""The benchmark's workload: seeded, whole lifecycles, spread over time as Twilio sends them."""

from __future__ import annotations

from collections import defaultdict

import pytest

from pipeline_bench.workload import (
    CALL_OFFSETS,
    MESSAGE_OFFSETS,
    RETRY_DELAY_SECONDS,
    build_workload,
    current_status_writes,
)
from pipeline_harness.scenarios import Product


def test_same_seed_same_workload_and_another_seed_another():
    # Given two workloads from one seed and one from another
    first, again = build_workload(300, seed=7), build_workload(300, seed=7)
    other = build_workload(300, seed=8)
    # Then the first two are identical, callback for callback
    assert [(s.at, s.callback) for s in first.callbacks] == [(s.at, s.callback) for s in again.callbacks]
    assert first.keys() != other.keys()


def test_at_least_the_target_in_whole_lifecycles_in_send_order():
    workload = build_workload(500, seed=3)
    assert len(workload) >= 500
    times = [scheduled.at for scheduled in workload.callbacks]
    assert times == sorted(times)
    by_sid = defaultdict(list)
    for scheduled in workload.callbacks:
        by_sid[scheduled.callback.sid].append(scheduled)
    assert len(by_sid) == workload.lifecycles
    # Every message ends delivered, undelivered or failed; every call ends
    finals = {"delivered", "undelivered", "failed", "completed", "busy", "no-answer"}
    assert all(any(s.callback.status in finals for s in callbacks) for callbacks in by_sid.values())


def test_a_resources_callbacks_arrive_seconds_apart_and_retries_just_after():
    workload = build_workload(2000, seed=11)
    by_sid = defaultdict(list)
    for scheduled in workload.callbacks:
        by_sid[scheduled.callback.sid].append(scheduled)
    seen_retry = False
    for callbacks in by_sid.values():
        start = callbacks[0].at
        originals = [s for s in callbacks if s.callback.attempt == 1]
        offsets = [round(s.at - start, 6) for s in originals]
        pattern = MESSAGE_OFFSETS if originals[0].callback.product is Product.MESSAGE else CALL_OFFSETS
        assert offsets == list(pattern[: len(offsets)])
        for retry in (s for s in callbacks if s.callback.attempt > 1):
            seen_retry = True
            original = next(s for s in originals if s.key == retry.key)
            assert retry.at - original.at == pytest.approx(RETRY_DELAY_SECONDS)
    assert seen_retry


def test_callbacks_go_out_at_about_the_asked_rate():
    # Given a workload offered at 50 callbacks/s
    workload = build_workload(3000, rate=50.0)
    # Then, once resources are under way (past the longest lifecycle), about 50 go out each second
    steady = [s for s in workload.callbacks if CALL_OFFSETS[-1] <= s.at < CALL_OFFSETS[-1] + 20]
    assert len(steady) / 20 == pytest.approx(50.0, rel=0.1)


def test_default_workload_has_messages_calls_and_about_five_percent_errors():
    workload = build_workload(5000)
    products = workload.products()
    assert products["message"] > products["call"] > 0
    assert len(workload.error_keys()) / len(workload) == pytest.approx(0.05, abs=0.01)
    # Only codes whose route flags the number are flags; they are a subset of the errors
    assert 0 < len(workload.flag_keys()) < len(workload.error_keys())
    assert workload.flag_keys() <= workload.error_keys()


@pytest.mark.parametrize(("batch", "writes"), [(1, 5), (2, 4), (3, 4), (5, 2), (100, 2)])
def test_one_current_status_write_per_sid_per_batch(batch, writes):
    # Given five arrivals of two SIDs
    arrivals = [("A", "queued"), ("A", "sent"), ("B", "queued"), ("A", "delivered"), ("B", "sent")]
    # Then each batch writes one current status per SID it holds
    assert current_status_writes(arrivals, batch) == writes
