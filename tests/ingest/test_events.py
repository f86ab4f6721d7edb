"""The committed sample events are reproducible and behave as their README says."""

from __future__ import annotations

import pytest

from tests.support import ingest_events

EXPECTED = {
    # event: (records published, rejection reasons)
    "messaging-delivered": (1, []),
    "voice-completed": (1, []),
    "params-custom-values": (1, []),
    "forged-signature": (0, ["InvalidSignature"]),
    "missing-signature": (0, ["MissingSignature"]),
    "malformed-body": (0, ["MalformedBody"]),
    "mixed-batch": (3, ["InvalidSignature", "MalformedBody", "MissingSignature"]),
}


def test_every_event_has_an_expectation():
    assert set(ingest_events.build_events()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_event_is_what_the_generator_builds(name):
    committed = (ingest_events.EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8")
    assert committed == ingest_events.render(ingest_events.build_events()[name]), (
        "regenerate with: .venv/bin/python -m tests.support.ingest_events"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_outcome(ingest_stack, log_output, name):
    # Given the committed event and the documented test token in the secret
    event = ingest_events.build_events()[name]
    published, reasons = EXPECTED[name]
    # When the validator handles it
    response = ingest_stack.invoke(event)
    # Then nothing is retried, the expected records are published and the rest rejected for the right reason
    assert response == {"batchItemFailures": []}
    records = ingest_stack.published()
    assert len(records) == published
    assert len({r.event_id for r in records}) == published
    kept = sorted(request.reason.value for request in ingest_stack.kept())
    assert kept == reasons


def test_custom_values_event_carries_the_awkward_values(ingest_stack):
    ingest_stack.invoke(ingest_events.build_events()["params-custom-values"])
    [record] = ingest_stack.published()
    assert dict(record.custom) == {"id": "order 42 & co=1+1", "category": "O'Brien café"}
