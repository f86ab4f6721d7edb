"""A moto server on loopback for the runner's unit tests, reset before each test.

The runner talks to AWS through an endpoint URL, exactly as it does in
`make run`, so its tests use moto's server rather than in-process mocks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from moto.server import ThreadedMotoServer

from aws_emulator.aws import Clients

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def clients(moto_endpoint: str) -> Clients:
    """boto3 clients against a freshly reset emulator."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return Clients(moto_endpoint, REGION)
