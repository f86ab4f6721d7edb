"""The reconciliation itself: what it expects from sent lifecycles, and that it notices every gap.

Pure: lifecycles from the seeded generator, sinks described as `Landed`.
A reconciliation that could not fail would prove nothing, so each kind of
damage is shown to be reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from pipeline_harness.reconcile import Expectation, Landed, Sinks, expect, reconcile
from pipeline_harness.scenarios import Kind, Lifecycle, ScenarioOptions, Signing, generate


def lifecycles(**options: object) -> list[Lifecycle]:
    settings = {"count": 40, "kind": Kind.MIXED, "seed": 11, "error_rate": 0.5, **options}
    return list(generate(ScenarioOptions(**settings)))  # type: ignore[arg-type]


def perfect(expectation: Expectation) -> Landed:
    """Sinks holding exactly what the expectation asks for."""
    return Landed(
        archive=Counter(dict.fromkeys(expectation.valid, 1)),
        items=dict(expectation.items),
        current=dict(expectation.current),
        flags={key: set(ids) for key, ids in expectation.flags.items()},
        flag_counts={key: len(ids) for key, ids in expectation.flags.items()},
        alerts=Counter(dict.fromkeys(expectation.alerts, 1)),
        queues={"Ingest": 0},
        dead_letters={"IngestDeadLetter": 0},
    )


def test_duplicates_collapse_to_one_expected_callback_and_forgeries_are_kept_apart() -> None:
    # Given lifecycles with Twilio retries and forged and unsigned requests
    sent = lifecycles(duplicates=0.5, forged=0.2, unsigned=0.1)

    expectation = expect(sent)

    assert expectation.duplicates_sent > 0 and expectation.forged_sent > 0 and expectation.unsigned_sent > 0
    valid = [c for lifecycle in sent for c in lifecycle.callbacks if c.signing is Signing.VALID]
    assert expectation.valid_sent == len(valid)
    assert len(expectation.valid) == len({(c.sid, c.status) for c in valid})
    assert not set(expectation.valid) & set(expectation.forged)
    assert expectation.sent == sum(len(lifecycle.callbacks) for lifecycle in sent)


def test_current_status_is_the_furthest_along_that_validly_arrived() -> None:
    sent = lifecycles(out_of_order=1.0)
    expectation = expect(sent)

    for lifecycle in sent:
        assert expectation.current[lifecycle.sid] == lifecycle.final_status
    # A forged final callback does not count: the current status falls back to the last valid one
    forged_final = [
        replace(
            lifecycle,
            callbacks=tuple(
                replace(c, signing=Signing.FORGED) if c.status == lifecycle.final_status else c
                for c in lifecycle.callbacks
            ),
        )
        for lifecycle in sent
    ]
    fallback = expect(forged_final)
    for lifecycle in sent:
        assert fallback.current[lifecycle.sid] != lifecycle.final_status


def test_alerts_and_flags_follow_the_routing_table() -> None:
    expectation = expect(lifecycles(error_rate=1.0, kind=Kind.MESSAGE))

    errors = {c.event_id: c for c in expectation.valid.values() if c.error_code}
    assert expectation.alerts == set(errors)
    flagged = {event_id for event_ids in expectation.flags.values() for event_id in event_ids}
    assert flagged == {
        event_id for event_id, c in errors.items() if c.error_code in {"30003", "30005", "30006", "21610"}
    }


def test_perfect_sinks_reconcile_with_no_problems() -> None:
    expectation = expect(lifecycles(duplicates=0.3, forged=0.1))

    result = reconcile(expectation, perfect(expectation))

    assert result.problems() == []
    assert result.figures()["lost"] == 0


def test_archive_copies_with_the_same_event_id_are_counted_not_failed() -> None:
    expectation = expect(lifecycles())
    landed = perfect(expectation)
    some = list(expectation.valid)[:3]
    landed.archive.update(some)

    result = reconcile(expectation, landed)

    assert result.problems() == []
    assert result.archive_duplicate_lines == 3


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda expected, sinks: sinks.archive.pop(next(iter(expected.valid))), "callbacks not archived"),
        (
            lambda expected, sinks: sinks.items.pop(next(iter(expected.items))),
            "DynamoDB items missing or wrong",
        ),
        (
            lambda expected, sinks: sinks.items.update({("SMnotsent", "delivered"): "x"}),
            "unexpected DynamoDB items",
        ),
        (
            lambda expected, sinks: sinks.current.update({next(iter(expected.current)): "queued"}),
            "wrong current status",
        ),
        (
            lambda expected, sinks: sinks.alerts.pop(next(iter(expected.alerts))),
            "error callbacks without an alert",
        ),
        (lambda expected, sinks: sinks.alerts.update([next(iter(expected.alerts))]), "duplicate alerts"),
        (lambda expected, sinks: sinks.flags.pop(next(iter(expected.flags))), "number flags missing"),
        (
            lambda expected, sinks: sinks.archive.update([next(iter(expected.forged))]),
            "forged or unsigned callbacks accepted",
        ),
        (
            lambda expected, sinks: sinks.dead_letters.update({"IngestDeadLetter": 1}),
            "messages in dead-letter queues",
        ),
    ],
)
def test_every_kind_of_damage_is_reported(damage: object, problem: str) -> None:
    # Given what a run must leave behind, and sinks that differ from it in one way
    expectation = expect(lifecycles(forged=0.3))
    landed = perfect(expectation)
    damage(expectation, landed)  # type: ignore[operator]

    # Then the reconciliation names that difference
    assert problem in [line.split(":", 1)[0] for line in reconcile(expectation, landed).problems()]


def test_busy_queues_are_not_idle() -> None:
    assert not Landed(queues={"Ingest": 2}).idle
    assert Landed(queues={"Ingest": 0, "Status": 0}).idle


def test_sinks_are_found_by_the_stacks_output_keys() -> None:
    outputs = {
        "ArchiveBucketName": "bucket",
        "StatusTableName": "status",
        "NumberFlagsTableName": "flags",
        "AlertsTopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
        "IngestQueueUrl": "https://sqs/ingest",
        "IngestDeadLetterQueueUrl": "https://sqs/ingest-dlq",
        "StatusQueueUrl": "https://sqs/status",
        "IngestQueueArn": "arn:aws:sqs:us-east-1:123456789012:ingest",
    }

    sinks = Sinks.from_outputs(outputs, extra_queues={"internal:Alerts": "https://sqs/internal"})

    assert (sinks.bucket, sinks.status_table, sinks.flags_table) == ("bucket", "status", "flags")
    assert dict(sinks.queues) == {
        "Ingest": "https://sqs/ingest",
        "Status": "https://sqs/status",
        "internal:Alerts": "https://sqs/internal",
    }
    assert dict(sinks.dead_letter_queues) == {"IngestDeadLetter": "https://sqs/ingest-dlq"}
