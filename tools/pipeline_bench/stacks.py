"""Facts the cost model takes from the four templates (not from a second, hand-kept copy).

Read with `aws_emulator.templates.load_template`: the SNS subscriptions
that deliver to SQS queues, the tables' keys and secondary indexes, the HTTP
API's access log format, and the counts behind the fixed monthly costs. What
depends on parameters (each function's memory and tracing mode) comes from the
run's deployment instead, where the parameters and their overrides are resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_emulator.templates import load_template
from pipeline_bench.measure import IndexSpec

TEMPLATE_FILE = "template.yaml"
ACTIVE = "Active"

# Representative values for the access log's $context variables (one request), rendered with the
# local gateway's own renderer (`aws_emulator.http_gateway.render_access_log`).
ACCESS_LOG_CONTEXT: Mapping[str, str] = {
    "requestId": "JxYzAbCdIAMEbVw=",
    "requestTime": "05/Jan/2026:09:00:00 +0000",
    "identity.sourceIp": "54.172.60.123",
    "routeKey": "POST /twilio-params",
    "status": "200",
    "responseLength": "220",
    "integrationStatus": "200",
    "integrationErrorMessage": "-",
    "integrationLatency": "12",
    "httpMethod": "POST",
    "path": "/twilio-params",
    "protocol": "HTTP/1.1",
}


@dataclass(frozen=True)
class TableFacts:
    keys: tuple[str, ...]
    indexes: tuple[IndexSpec, ...]


@dataclass
class StackFacts:
    """What one stack's template says that the cost model needs."""

    name: str
    subscribed_queues: set[str] = field(default_factory=set)
    tables: dict[str, TableFacts] = field(default_factory=dict)
    access_log_format: str | None = None
    alarms: int = 0
    kms_keys: int = 0
    encrypted_topics: int = 0


def _getatt_target(value: Any) -> str | None:
    if isinstance(value, Mapping) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0]) if isinstance(target, list) else str(target).split(".", 1)[0]
    return None


def _index_specs(properties: Mapping[str, Any]) -> tuple[IndexSpec, ...]:
    specs = []
    for index in properties.get("GlobalSecondaryIndexes") or []:
        projection = index.get("Projection") or {}
        specs.append(
            IndexSpec(
                name=str(index.get("IndexName")),
                keys=tuple(str(key["AttributeName"]) for key in index.get("KeySchema") or []),
                projection=str(projection.get("ProjectionType", "ALL")),
                projected=tuple(str(name) for name in projection.get("NonKeyAttributes") or []),
            )
        )
    return tuple(specs)


def stack_facts(folder: Path) -> StackFacts:
    """Read one stack folder's template."""
    template = load_template(folder / TEMPLATE_FILE)
    facts = StackFacts(folder.name)
    for logical_id, resource in (template.get("Resources") or {}).items():
        kind = resource.get("Type")
        properties = resource.get("Properties") or {}
        if kind == "AWS::SNS::Subscription" and str(properties.get("Protocol", "")).lower() == "sqs":
            target = _getatt_target(properties.get("Endpoint"))
            if target:
                facts.subscribed_queues.add(target)
        elif kind == "AWS::DynamoDB::Table":
            facts.tables[logical_id] = TableFacts(
                keys=tuple(str(key["AttributeName"]) for key in properties.get("KeySchema") or []),
                indexes=_index_specs(properties),
            )
        elif kind == "AWS::Serverless::HttpApi":
            log_format = (properties.get("AccessLogSettings") or {}).get("Format")
            if isinstance(log_format, str):
                facts.access_log_format = log_format
        elif kind == "AWS::CloudWatch::Alarm":
            facts.alarms += 1
        elif kind == "AWS::KMS::Key":
            facts.kms_keys += 1
        elif kind == "AWS::SNS::Topic" and properties.get("KmsMasterKeyId"):
            facts.encrypted_topics += 1
    return facts


def all_stack_facts(stacks_dir: Path) -> dict[str, StackFacts]:
    """Every stack folder's facts, by stack name."""
    return {
        folder.name: stack_facts(folder)
        for folder in sorted(stacks_dir.iterdir())
        if (folder / TEMPLATE_FILE).is_file()
    }
