"""Invariants every stack's template must keep: lint-clean, durable, unnamed, commented.

Stack-specific semantics are tested next to each stack's handler tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aws_emulator.templates import load_template

pytestmark = pytest.mark.templates

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "aws_stacks").glob("*/template.yaml"))
STACK_IDS = [path.parent.name for path in TEMPLATES]
EXPECTED_STACKS = {
    "StatusCallbackHandler",
    "SaveStatusCallbackToS3",
    "SaveStatusCallbackToDynamo",
    "CheckForStatusCallbackErrors",
}
# Properties that would pin a physical name and stop two environments sharing an account.
FIXED_NAME_PROPERTIES = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Events::EventBus": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Serverless::LayerVersion": "LayerName",
}
SECRET_WORDS = re.compile(r"(TOKEN|SECRET|PASSWORD|KEY)$", re.IGNORECASE)


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _mentions_literal_name(value: Any) -> bool:
    """A plain string (not built from the stack name or another resource) is a fixed name."""
    return isinstance(value, str)


def _resources(path: Path) -> dict[str, dict[str, Any]]:
    return load_template(path)["Resources"]


def _function_settings(template: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    merged = dict(template.get("Globals", {}).get("Function", {}))
    merged.update(resource.get("Properties", {}))
    return merged


def test_all_four_stacks_exist():
    assert set(STACK_IDS) == EXPECTED_STACKS


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_cfn_lint_has_no_findings(template_path: Path):
    result = subprocess.run(
        [_bin("cfn-lint"), str(template_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_sam_validate_lint_has_no_findings(template_path: Path):
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [_bin("sam"), "validate", "--lint", "--region", "us-east-1", "--template-file", str(template_path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_no_fixed_resource_names(template_path: Path):
    fixed = []
    for logical_id, resource in _resources(template_path).items():
        name_property = FIXED_NAME_PROPERTIES.get(resource["Type"])
        if name_property and _mentions_literal_name(resource.get("Properties", {}).get(name_property)):
            fixed.append(f"{logical_id}.{name_property}")
    assert fixed == []


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_exports_are_derived_from_the_stack_name(template_path: Path):
    for name, output in load_template(template_path).get("Outputs", {}).items():
        export = output.get("Export", {}).get("Name")
        if export is not None:
            assert "${AWS::StackName}" in str(export), f"output {name} exports a fixed name"


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_functions_are_python313_arm64_with_the_shared_layer(template_path: Path):
    template = load_template(template_path)
    functions = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions, "every stack has at least one function"
    for logical_id, resource in functions.items():
        settings = _function_settings(template, resource)
        assert settings.get("Runtime") == "python3.13", logical_id
        assert settings.get("Architectures") == ["arm64"], logical_id
        assert settings.get("Layers"), f"{logical_id} does not use the shared layer"
    layers = [v for v in template["Resources"].values() if v["Type"] == "AWS::Serverless::LayerVersion"]
    assert layers and all(layer["Properties"]["ContentUri"] == "../../layers/shared" for layer in layers)
    assert all(layer.get("Metadata", {}).get("BuildMethod") == "python3.13" for layer in layers)


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_every_function_traces_as_the_stack_tracing_parameter_says(template_path: Path):
    # Given a stack's functions and its Tracing parameter
    template = load_template(template_path)
    parameter = template["Parameters"]["Tracing"]
    # Then X-Ray is off by default (the benchmark prices turning it on) and can be turned on per deploy
    assert parameter["Default"] == "PassThrough"
    assert set(parameter["AllowedValues"]) == {"Active", "PassThrough"}
    functions = [v for v in template["Resources"].values() if v["Type"] == "AWS::Serverless::Function"]
    assert all(
        _function_settings(template, function).get("Tracing") == {"Ref": "Tracing"} for function in functions
    )


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_sqs_event_sources_report_partial_failures(template_path: Path):
    template = load_template(template_path)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event_id, event in resource.get("Properties", {}).get("Events", {}).items():
            if event["Type"] == "SQS":
                assert event["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"], (
                    f"{logical_id}.{event_id}"
                )


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_every_queue_is_a_dead_letter_queue_or_has_one(template_path: Path):
    resources = _resources(template_path)
    queues = {k for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"}
    dead_letter_targets = set()
    for logical_id in queues:
        redrive = resources[logical_id].get("Properties", {}).get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]
            dead_letter_targets.add(target["Fn::GetAtt"][0] if "Fn::GetAtt" in target else str(target))
    for logical_id in queues:
        properties = resources[logical_id].get("Properties", {})
        is_dlq = logical_id in dead_letter_targets or "DeadLetter" in logical_id or "Dlq" in logical_id
        # An inbox is read without deleting (each look counts a receive), so a redrive policy would
        # move away what people already read; what it keeps is its retention, like a DLQ's.
        is_inbox = logical_id.endswith("InboxQueue") and not properties.get("RedrivePolicy")
        assert is_dlq or is_inbox or properties.get("RedrivePolicy"), f"{logical_id} can lose messages"
        assert properties.get("SqsManagedSseEnabled") or properties.get("KmsMasterKeyId"), (
            f"{logical_id} is not encrypted at rest"
        )


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_no_secret_values_in_function_environments(template_path: Path):
    template = load_template(template_path)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = _function_settings(template, resource).get("Environment", {}).get("Variables", {})
        for name in variables:
            assert not SECRET_WORDS.search(name), f"{logical_id} puts {name} in its environment"


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_every_resource_has_a_comment_saying_why(template_path: Path):
    lines = template_path.read_text(encoding="utf-8").splitlines()
    in_resources = False
    uncommented = []
    for index, line in enumerate(lines):
        if re.match(r"^\S", line):
            in_resources = line.startswith("Resources:")
            continue
        match = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if in_resources and match:
            previous = next((p for p in reversed(lines[:index]) if p.strip()), "")
            if not previous.strip().startswith("#"):
                uncommented.append(match.group(1))
    assert uncommented == []


def test_every_stack_defines_the_shared_layer_identically_and_names_it_after_itself():
    # One definition, so versions are retained (or not) alike and names never collide across stacks
    layers = [_resources(path)["SharedLayer"] for path in TEMPLATES]
    assert all(layer == layers[0] for layer in layers)
    properties = layers[0]["Properties"]
    assert properties["LayerName"] == {"Fn::Sub": "${AWS::StackName}-shared"}
    assert properties["RetentionPolicy"] == "Delete"
