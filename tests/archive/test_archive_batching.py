"""How many S3 objects the archive makes at the template's default batch settings."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from archiver_handler import Dependencies, handle
from aws_lambda_powertools.utilities.typing import LambdaContext

from tests.archive.builders import epoch_ms, failed_ids, message_record, sqs_event

Archived = Callable[[], dict[str, list[dict[str, Any]]]]
STATUSES = ("queued", "sent", "delivered", "read")


def thousand_callbacks(first_received_at: int, spread_ms: int) -> list[str]:
    """1,000 message callbacks (250 messages x queued/sent/delivered/read) over ``spread_ms``, shuffled."""
    bodies = []
    for n in range(1_000):
        sid = f"SM{n // 4:032x}"
        received_at = first_received_at + n * spread_ms // 1_000
        category = ("reminder", "marketing", "otp")[n % 3]
        bodies.append(message_record(sid, STATUSES[n % 4], received_at, category=category).to_json())
    random.Random(1_000).shuffle(bodies)
    return bodies


def _deliver_in_default_batches(
    template: dict[str, Any], bodies: list[str], deps: Dependencies, context: LambdaContext
) -> int:
    batch_size = template["Parameters"]["BatchSize"]["Default"]
    batches = [bodies[start : start + batch_size] for start in range(0, len(bodies), batch_size)]
    for number, batch in enumerate(batches):
        assert failed_ids(handle(sqs_event(batch, id_prefix=f"b{number}"), context, deps)) == set()
    return len(batches)


def test_a_thousand_callbacks_in_one_day_make_one_object_at_default_settings(
    template: dict[str, Any], deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given 1,000 callbacks within ten minutes, delivered in batches of the default size
    bodies = thousand_callbacks(epoch_ms("2026-02-01T14:00:00Z"), spread_ms=600_000)

    # When each batch is archived
    invocations = _deliver_in_default_batches(template, bodies, deps, lambda_context)

    # Then there is one object per full batch, holding every callback once
    objects = archived()
    assert len(objects) == invocations == math.ceil(1_000 / template["Parameters"]["BatchSize"]["Default"])
    assert sum(len(records) for records in objects.values()) == 1_000


def test_a_thousand_callbacks_across_midnight_make_one_object_per_day(
    template: dict[str, Any], deps: Dependencies, lambda_context: LambdaContext, archived: Archived
):
    # Given 1,000 callbacks in the minute around midnight UTC
    bodies = thousand_callbacks(epoch_ms("2026-01-31T23:59:30Z"), spread_ms=60_000)

    # When archived at the default batch size
    _deliver_in_default_batches(template, bodies, deps, lambda_context)

    # Then the day boundary splits the batch into exactly two objects, none lost
    objects = archived()
    assert sorted(key.split("/")[1] for key in objects) == ["dt=2026-01-31", "dt=2026-02-01"]
    assert sum(len(records) for records in objects.values()) == 1_000
