"""The benchmark's workload: seeded lifecycles from `scenarios`, spread over time as Twilio sends them.

Pure. `pipeline_harness.scenarios` makes the callbacks (the same generator
as ``twilio-callbacks send``); this module gives each one a send time. A
resource's callbacks are seconds apart, as on Twilio (a message is ``sent``
about a second after ``queued`` and ``delivered`` a few seconds later; a call
rings, is answered and ends over tens of seconds, compressed here to keep the
run short), and resources start at a steady rate. That spacing matters: it
decides how many of a SID's callbacks share one consumer batch, so how much
the DynamoDB writer's in-batch collapse of current-status writes can save.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline_harness.scenarios import (
    CALLBACK_WITH_PARAMS_ROUTE,
    Callback,
    Kind,
    Lifecycle,
    Product,
    ScenarioOptions,
    generate,
)
from status_callbacks.domain.routes import Action, route_for

DEFAULT_SEED = 20240601
DEFAULT_CALLBACKS = 5000
DEFAULT_RATE = 38.0
# Share of messages and calls that fail: 22% makes about 5% of callbacks carry an ErrorCode (the
# issue's "5% errors"; calls that fail end busy/no-answer without one). More than most traffic
# has, so the error path's cost is not understated.
DEFAULT_ERROR_RATE = 0.22
# Seconds after a resource's first callback at which its next ones arrive (by arrival position).
MESSAGE_OFFSETS = (0.0, 1.0, 4.0)
CALL_OFFSETS = (0.0, 1.5, 4.0, 9.0)
# A Twilio retry of a callback arrives this long after the first attempt.
RETRY_DELAY_SECONDS = 0.3
# Fixed, so the same seed gives byte-identical callbacks on every run.
SCENARIO_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

Key = tuple[str, str]


@dataclass(frozen=True)
class ScheduledCallback:
    """One callback and when to send it, in seconds from the start of the run."""

    at: float
    callback: Callback

    @property
    def key(self) -> Key:
        """(SID, status): how the benchmark recognises the callback in every sink."""
        return self.callback.sid, self.callback.status

    @property
    def error_code(self) -> str | None:
        return self.callback.error_code


@dataclass(frozen=True)
class Workload:
    """Every callback of a run, in send order."""

    seed: int
    rate: float
    error_rate: float
    lifecycles: int
    callbacks: tuple[ScheduledCallback, ...]

    def __len__(self) -> int:
        return len(self.callbacks)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last scheduled send."""
        return self.callbacks[-1].at if self.callbacks else 0.0

    def keys(self) -> set[Key]:
        return {scheduled.key for scheduled in self.callbacks}

    def error_keys(self) -> set[Key]:
        """Callbacks carrying an ErrorCode: what the error stack routes."""
        return {scheduled.key for scheduled in self.callbacks if scheduled.error_code}

    def flag_keys(self) -> set[Key]:
        """Error callbacks whose code's route flags the number."""
        return {
            scheduled.key
            for scheduled in self.callbacks
            if scheduled.error_code and Action.FLAG_NUMBER in route_for(scheduled.error_code).actions
        }

    def products(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for scheduled in self.callbacks:
            counts[scheduled.callback.product.value] = counts.get(scheduled.callback.product.value, 0) + 1
        return counts

    def describe(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "callbacks": len(self),
            "lifecycles": self.lifecycles,
            "products": self.products(),
            "error_rate": self.error_rate,
            "error_callbacks": len(self.error_keys()),
            "retries": sum(1 for scheduled in self.callbacks if scheduled.callback.attempt > 1),
            "route": CALLBACK_WITH_PARAMS_ROUTE,
            "offered_rate_per_second": self.rate,
            "message_offsets_seconds": list(MESSAGE_OFFSETS),
            "call_offsets_seconds": list(CALL_OFFSETS),
        }


def _offsets(lifecycle: Lifecycle) -> list[float]:
    """Send offsets of a lifecycle's callbacks in arrival order; a retry follows its original."""
    pattern = MESSAGE_OFFSETS if lifecycle.product is Product.MESSAGE else CALL_OFFSETS
    offsets: list[float] = []
    position = 0
    for callback in lifecycle.callbacks:
        if callback.attempt > 1 and offsets:
            offsets.append(offsets[-1] + RETRY_DELAY_SECONDS)
            continue
        offsets.append(pattern[min(position, len(pattern) - 1)])
        position += 1
    return offsets


def schedule(lifecycles: Sequence[Lifecycle], rate: float) -> list[ScheduledCallback]:
    """Resources start evenly so that callbacks go out at about ``rate`` per second."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    total = sum(len(lifecycle.callbacks) for lifecycle in lifecycles)
    if not total:
        return []
    spacing = total / len(lifecycles) / rate
    scheduled = [
        ScheduledCallback(index * spacing + offset, callback)
        for index, lifecycle in enumerate(lifecycles)
        for offset, callback in zip(_offsets(lifecycle), lifecycle.callbacks, strict=True)
    ]
    return sorted(scheduled, key=lambda item: item.at)


def build_workload(
    callbacks: int = DEFAULT_CALLBACKS,
    *,
    rate: float = DEFAULT_RATE,
    seed: int = DEFAULT_SEED,
    error_rate: float = DEFAULT_ERROR_RATE,
    duplicates: float = 0.01,
    out_of_order: float = 0.02,
) -> Workload:
    """At least ``callbacks`` callbacks (whole lifecycles): messages and calls, some failing.

    ``error_rate`` is the share of messages and calls that fail, as in
    ``twilio-callbacks send --error-rate``: failed messages carry an ErrorCode,
    unanswered calls end busy or no-answer.
    """
    if callbacks < 1:
        raise ValueError("a workload needs at least one callback")
    options = ScenarioOptions(
        # Lifecycles have two to four callbacks; generate enough and stop at the target.
        count=math.ceil(callbacks / 2) + 2,
        kind=Kind.MIXED,
        seed=seed,
        error_rate=error_rate,
        duplicates=duplicates,
        out_of_order=out_of_order,
        route=CALLBACK_WITH_PARAMS_ROUTE,
        start=SCENARIO_START,
    )
    chosen: list[Lifecycle] = []
    total = 0
    for lifecycle in generate(options):
        chosen.append(lifecycle)
        total += len(lifecycle.callbacks)
        if total >= callbacks:
            break
    return Workload(seed, rate, error_rate, len(chosen), tuple(schedule(chosen, rate)))


def consecutive_batches(items: Sequence[Key], batch_size: int) -> Iterable[Sequence[Key]]:
    """Items in arrival order cut into batches of ``batch_size`` (a busy queue's batches)."""
    size = max(1, int(batch_size))
    for start in range(0, len(items), size):
        yield items[start : start + size]


def current_status_writes(arrivals: Sequence[Key], batch_size: int) -> int:
    """Current-status writes the DynamoDB writer makes: one per SID per batch (its in-batch collapse)."""
    return sum(len({sid for sid, _ in batch}) for batch in consecutive_batches(arrivals, batch_size))
