"""boto3 clients for the emulated AWS, and the process environment that points at it.

Everything the runner and the in-process handlers create talks to the moto
server on loopback with placeholder credentials, so nothing can reach a real
account even when the shell has an AWS profile configured.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from aws_emulator.traffic import INTERNAL_USER_AGENT

PLACEHOLDER_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# Variables that could send an SDK to a real account or a metadata endpoint.
_REMOVED_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE")


@dataclass
class Clients:
    """One lazily created boto3 client per service, all against the emulator.

    ``internal`` clients are the runner's own, doing what an AWS service does
    by itself (Lambda shipping logs): their requests are marked so the
    benchmark does not count them as the pipeline's.
    """

    endpoint_url: str
    region: str
    internal: bool = False
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        return self.client(service)

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.session.Session().client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    aws_access_key_id=PLACEHOLDER_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=PLACEHOLDER_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    config=Config(
                        retries={"max_attempts": 2, "mode": "standard"},
                        user_agent_extra=INTERNAL_USER_AGENT if self.internal else None,
                    ),
                )
            return self._clients[service]


def emulator_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """Variables every SDK in this process needs to use the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        # Tracing needs an X-Ray daemon; there is none locally.
        "POWERTOOLS_TRACE_DISABLED": "true",
        **PLACEHOLDER_CREDENTIALS,
    }


@contextmanager
def patched_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) variables and put the previous values back afterwards."""
    previous = {name: os.environ.get(name) for name in values}
    try:
        apply_environ(values)
        yield
    finally:
        apply_environ(previous)


def apply_environ(values: Mapping[str, str | None]) -> None:
    """Set variables; a None value removes the variable."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def process_environment(endpoint_url: str, region: str) -> dict[str, str | None]:
    """The whole-process change: emulator variables set, profile variables removed."""
    change: dict[str, str | None] = {name: None for name in _REMOVED_VARIABLES}
    change.update(emulator_environment(endpoint_url, region))
    return change
