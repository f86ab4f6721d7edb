"""Fixtures for the CLI tests: moto in-process, a fake deployed pipeline, a local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from moto import mock_aws

from tests.cli.builders import FakePipeline, build_pipeline


@pytest.fixture
def aws() -> Iterator[None]:
    """Every AWS call in the test goes to moto, in-process (Lambda invokes accepted without Docker)."""
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield


@pytest.fixture
def pipeline(aws: None) -> FakePipeline:
    """All four stacks deployed under their default names."""
    return build_pipeline()


@pytest.fixture
def make_pipeline(aws: None) -> Callable[..., FakePipeline]:
    """Build some of the stacks, or stacks with a name prefix (a second environment)."""
    return build_pipeline


@dataclass
class CapturedRequest:
    path: str
    headers: dict[str, str]
    body: str
    # The SQS message id answered, as API Gateway's SQS-SendMessage integration answers: m-1, m-2 …
    message_id: str = ""


@dataclass
class CallbackServer:
    """A tiny HTTP server standing in for API Gateway; records what it receives."""

    url: str
    requests: list[CapturedRequest]
    status: list[int]


@pytest.fixture
def callback_server() -> Iterator[CallbackServer]:
    """A local server on a free port answering every POST with the status in ``server.status[0]``.

    The answer is API Gateway's to an SQS-SendMessage integration, message ids numbered in arrival order.
    """
    captured: list[CapturedRequest] = []
    status = [200]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are written separately; without this, Nagle adds ~40 ms per response.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8")
            with lock:
                message_id = f"m-{len(captured) + 1}"
                captured.append(CapturedRequest(self.path, dict(self.headers.items()), body, message_id))
            result = {"SendMessageResult": {"MessageId": message_id}}
            payload = json.dumps({"SendMessageResponse": result}).encode("utf-8")
            self.send_response(status[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CallbackServer(f"http://127.0.0.1:{server.server_address[1]}", captured, status)
    finally:
        server.shutdown()
        server.server_close()
