"""Fixtures of the reliability suite: one local pipeline per module, an alerts inbox per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from aws_emulator import LocalPipeline
from pipeline_harness.reconcile import AlertObserver
from tests.reliability.harness import LogCapture, alert_observer, captured_logs

_INBOXES = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: drives the local pipeline under injected faults")
    config.addinivalue_line("markers", "load: a burst of callbacks through the local pipeline, reconciled")


@pytest.fixture
def alerts(pipeline: LocalPipeline) -> AlertObserver:
    """A fresh queue subscribed to the alerts topic, so each test counts only its own alerts."""
    return alert_observer(pipeline, f"reliability-alerts-{next(_INBOXES)}")


@pytest.fixture
def logs(pipeline: LocalPipeline) -> Iterator[LogCapture]:
    """Every log line emitted while the test runs (attached after the pipeline started)."""
    with captured_logs() as capture:
        yield capture
