"""Keep moto's SQS linear under load, so a 10,000-callback burst measures the pipeline, not moto.

moto 5 computes a queue's approximate counts by walking every message, and
does so on every SendMessage (for ``ContentBasedDeduplication``) and three
times per message received (for ``MessageRetentionPeriod``): each request
costs O(backlog), a burst O(n²). Measured here: 1,724 callbacks drained in
277 s unpatched, 78 s patched.

The patch changes cost, not behaviour: the retention check reads the
queue's retention period directly, and the three ``Approximate…`` counts
are reused for a quarter of a second (SQS documents them as approximate
and eventually consistent; callers here poll for several consecutive idle
readings anyway). It lives in the test harness because the local runner is
not this suite's to change; it is a candidate for the runner itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.core.utils import unix_time
from moto.sqs.models import Queue, SQSBackend

COUNT_REUSE_SECONDS = 0.25
_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_not_visible",
    "approximate_number_of_messages_delayed",
)
_CACHE_ATTRIBUTE = "_reliability_count_cache"


def _retention_check(self: SQSBackend, queue_name: str, message: Any) -> bool:
    queue = self.get_queue(queue_name)
    retention = int(queue.message_retention_period)  # type: ignore[attr-defined]
    return bool(retention + message.sent_timestamp / 1000 > unix_time())


def _reused(name: str, compute: Callable[[Queue], int]) -> property:
    def count(queue: Queue) -> int:
        cache: dict[str, tuple[float, int]] = queue.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
        now = time.monotonic()
        hit = cache.get(name)
        if hit is not None and now - hit[0] < COUNT_REUSE_SECONDS:
            return hit[1]
        value = compute(queue)
        cache[name] = (now, value)
        return value

    return property(count)


@contextmanager
def linear_sqs() -> Iterator[None]:
    """Apply the patch for the ``with`` block; moto is put back as it was afterwards."""
    originals: dict[str, Any] = {name: Queue.__dict__[name] for name in _COUNTS}
    original_check = SQSBackend.__dict__["is_message_valid_based_on_retention_period"]
    try:
        for name, original in originals.items():
            setattr(Queue, name, _reused(name, original.fget))
        SQSBackend.is_message_valid_based_on_retention_period = _retention_check  # type: ignore[method-assign]
        yield
    finally:
        for name, original in originals.items():
            setattr(Queue, name, original)
        SQSBackend.is_message_valid_based_on_retention_period = original_check  # type: ignore[method-assign]
