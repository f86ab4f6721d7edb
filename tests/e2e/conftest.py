"""The whole local pipeline, started once for the e2e module on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aws_emulator import LocalPipeline

E2E_TOKEN = "e2e-auth-token-not-a-secret"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with LocalPipeline(aws_port=0, http_port=0, token=E2E_TOKEN) as running:
        yield running
