"""The runner's console says once per burst what the validator rejected, read from the store's keys."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from aws_emulator.aws import Clients
from aws_emulator.rejections import MAX_BURST_SECONDS, RejectionBursts
from status_callbacks.domain.rejected import RejectedRequest, plan_rejected_objects
from status_callbacks.domain.validation import RejectionReason

BUCKET = "rejected-store"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reject(clients: Clients, reason: RejectionReason, count: int, first_id: int = 0) -> None:
    """Write what one validator invocation keeps: one object per reason, named with its count."""
    now_ms = int(time.time() * 1000)
    requests = [
        RejectedRequest(f"m-{first_id + index}", now_ms + index, reason, "A=1") for index in range(count)
    ]
    for rejected in plan_rejected_objects(requests):
        clients.s3.put_object(Bucket=BUCKET, Key=rejected.key, Body=rejected.body())


@pytest.fixture
def store(clients: Clients) -> Clients:
    clients.s3.create_bucket(Bucket=BUCKET)
    return clients


def test_a_burst_is_summarised_once_when_it_ends(store: Clients) -> None:
    # Given a request rejected before the watcher started, and a watcher
    reject(store, RejectionReason.MISSING_SIGNATURE, 1, first_id=100)
    clock = Clock()
    bursts = RejectionBursts(store.s3, BUCKET, clock=clock)

    # When two invocations reject requests between two polls, and a third in the next poll
    reject(store, RejectionReason.INVALID_SIGNATURE, 4)
    reject(store, RejectionReason.PUBLIC_BASE_URL_MISMATCH, 1, first_id=10)
    first = bursts.poll()
    clock.now += 2
    reject(store, RejectionReason.INVALID_SIGNATURE, 2, first_id=20)
    second = bursts.poll()
    clock.now += 2
    ended = bursts.poll()
    clock.now += 2
    quiet = bursts.poll()

    # Then one line, when nothing new arrived, counting the burst only (not what was there before)
    assert (first, second, quiet) == (None, None, None)
    assert ended == (
        "rejected 7 callbacks in the last 4 s: InvalidSignature 6, PublicBaseUrlMismatch 1"
        " — twilio-callbacks rejected list"
    )


def test_a_sustained_stream_is_summarised_periodically(store: Clients) -> None:
    clock = Clock()
    bursts = RejectionBursts(store.s3, BUCKET, clock=clock)
    lines = []

    for poll in range(int(MAX_BURST_SECONDS / 2) + 2):
        reject(store, RejectionReason.INVALID_SIGNATURE, 1, first_id=poll)
        lines.append(bursts.poll())
        clock.now += 2

    summaries = [line for line in lines if line]
    assert len(summaries) == 1
    assert summaries[0].startswith("rejected ") and "InvalidSignature" in summaries[0]


def test_nothing_rejected_says_nothing(store: Clients) -> None:
    bursts = RejectionBursts(store.s3, BUCKET, clock=Clock())
    today = datetime.now(UTC).date().isoformat()
    store.s3.put_object(Bucket=BUCKET, Key=f"rejected/dt={today}/README.txt", Body=b"not a rejected object")

    assert [bursts.poll() for _ in range(3)] == [None, None, None]
