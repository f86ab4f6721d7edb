"""Fixtures for the DynamoDB status store: a moto table created from the stack template's
own table definition (so the tests cannot drift from it), and a log of the writes sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws

from aws_emulator.templates import load_template
from status_callbacks.observability import metrics
from tests.status_store.builders import TEMPLATE_PATH

TABLE_NAME = "status-store-test"


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="session")
def table_properties(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["StatusTable"]["Properties"]


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics are a module-level singleton; keep each test's counts apart."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """A moto-backed client that does not retry, so injected faults surface at once."""
    with mock_aws():
        yield boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
        )


@pytest.fixture
def table(dynamodb: Any, table_properties: dict[str, Any]) -> str:
    """The status table as the template defines it (keys, attribute types, GSIs, billing)."""
    definition = {
        name: table_properties[name]
        for name in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode")
    }
    dynamodb.create_table(TableName=TABLE_NAME, **definition)
    return TABLE_NAME


@dataclass
class PutItemLog:
    """Every PutItem the client sends, as (sid, sk, conditional)."""

    calls: list[tuple[str, str, bool]] = field(default_factory=list)

    def current_writes(self) -> list[str]:
        return [sid for sid, sk, _ in self.calls if sk == "CURRENT"]

    def event_writes(self) -> list[tuple[str, str]]:
        return [(sid, sk) for sid, sk, _ in self.calls if sk != "CURRENT"]


@pytest.fixture
def put_item_log(dynamodb: Any) -> PutItemLog:
    """Counts writes at the client (moto does not model per-index consumed capacity)."""
    log = PutItemLog()

    def record_call(params: Mapping[str, Any], **_: Any) -> None:
        item = params["Item"]
        log.calls.append((item["sid"]["S"], item["sk"]["S"], "ConditionExpression" in params))

    dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", record_call)
    return log


@dataclass
class WriteFaults:
    """Makes chosen PutItem requests fail with a DynamoDB error before they reach moto."""

    rules: list[tuple[str, str | None, str, int]] = field(default_factory=list)
    injected: int = 0

    def fail(
        self, sid: str, sk: str | None = None, code: str = "ThrottlingException", status: int = 400
    ) -> None:
        """Fail every PutItem of this SID (and sort key, if given) with this error code."""
        self.rules.append((sid, sk, code, status))

    def __call__(self, params: Mapping[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        item = json.loads(params["body"])["Item"]
        for sid, sk, code, status in self.rules:
            if item["sid"]["S"] == sid and (sk is None or item["sk"]["S"] == sk):
                self.injected += 1
                error = {
                    "Error": {"Code": code, "Message": f"injected {code}"},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                }
                return AWSResponse(params["url"], status, {}, None), error
        return None


@pytest.fixture
def write_faults(dynamodb: Any) -> WriteFaults:
    """A ``before-call`` hook: a matching write gets the error response and never reaches moto."""
    faults = WriteFaults()
    dynamodb.meta.events.register("before-call.dynamodb.PutItem", faults)
    return faults
