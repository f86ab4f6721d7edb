"""One console line per burst of rejected callbacks, read from the rejected-request store.

The validator keeps every request it refuses in the ingest stack's bucket
(``RejectedBucketName``), one object per invocation, day and reason, whose
key already says how many requests it holds (`status_callbacks.rejected`).
`RejectionBursts.poll` lists today's keys (cheap: no object is read), and
once a poll finds nothing new after some did, returns one summary line:

    rejected 6 callbacks in the last 2 s: InvalidSignature 6 — twilio-callbacks rejected list

A sustained stream of rejections is summarised every `MAX_BURST_SECONDS`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from status_callbacks.domain.rejected import REJECTED_PREFIX, RejectedKey, day_prefix, parse_key

POLL_SECONDS = 2.0
MAX_BURST_SECONDS = 10.0


class RejectionBursts:
    """Watches the rejected store's keys and summarises what arrives, one line per burst."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str = REJECTED_PREFIX,
        *,
        interval: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.interval = interval
        self.clock = clock
        self._seen: set[str] = set()
        self._pending: Counter[str] = Counter()
        self._burst_started: float | None = None
        self._last_arrival = 0.0
        # What is already there is not news.
        self._new_keys()

    def poll(self) -> str | None:
        """Look once; the summary line when a burst has just ended (or gone on too long)."""
        now = self.clock()
        arrived = self._new_keys()
        for key in arrived:
            self._pending[key.reason.value] += key.count
        if arrived:
            if self._burst_started is None:
                self._burst_started = now
            self._last_arrival = now
        if not self._pending or self._burst_started is None:
            return None
        if arrived and now - self._burst_started < MAX_BURST_SECONDS:
            return None
        seconds = self._last_arrival - self._burst_started + self.interval
        line = summary(self._pending, seconds)
        self._pending.clear()
        self._burst_started = None
        return line

    def _new_keys(self) -> list[RejectedKey]:
        arrived = []
        for day in _days_to_look_at():
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=day_prefix(day, self.prefix)):
                for item in page.get("Contents") or []:
                    key = str(item["Key"])
                    if key in self._seen:
                        continue
                    self._seen.add(key)
                    parsed = parse_key(key)
                    if parsed is not None:
                        arrived.append(parsed)
        return arrived


def _days_to_look_at() -> list[str]:
    # Objects are filed under the UTC day of their first request: just after midnight, also yesterday.
    now = datetime.now(UTC)
    return sorted({(now - timedelta(minutes=5)).date().isoformat(), now.date().isoformat()})


def summary(by_reason: Counter[str], seconds: float) -> str:
    """``rejected 6 callbacks in the last 2 s: InvalidSignature 6 — twilio-callbacks rejected list``."""
    total = sum(by_reason.values())
    ordered = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    reasons = ", ".join(f"{reason} {count}" for reason, count in ordered)
    noun = "callback" if total == 1 else "callbacks"
    return (
        f"rejected {total} {noun} in the last {math.ceil(seconds)} s: {reasons}"
        " — twilio-callbacks rejected list"
    )
