"""Every checkov skip in the stack templates is deliberate, explained, and still true.

`make security` allows zero failed checkov checks. Controls that do not fit this
system are skipped next to their resource, with the reason, in checkov's inline
CloudFormation form (``Metadata: checkov: skip: [{id, comment}]``). These tests
keep that list honest: a new kind of skip is a conscious edit of the allow-list
below, every skip carries a real reason, and a skip whose premise stops being
true (a queue loses SSE-SQS, a function loses its event-source cap) fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aws_emulator.templates import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "aws_stacks").glob("*/template.yaml"))
STACK_IDS = [path.parent.name for path in TEMPLATES]
MIN_COMMENT_LENGTH = 30
SECRET_WORDS = re.compile(r"(TOKEN|SECRET|PASSWORD|KEY)$", re.IGNORECASE)
FUNCTION = "AWS::Serverless::Function"
QUEUE = "AWS::SQS::Queue"
TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
LOG_GROUP = "AWS::Logs::LogGroup"

# The checks this project skips, and the only resource types each may be skipped on.
# Adding a check here is a security decision: give the reason next to the resource too.
ALLOWED_SKIPS: dict[str, frozenset[str]] = {
    "CKV_AWS_18": frozenset({BUCKET}),  # S3 server access logging
    "CKV_AWS_21": frozenset({BUCKET}),  # S3 versioning (the Athena results bucket only)
    "CKV_AWS_27": frozenset({QUEUE}),  # SQS with a KMS key (the queues use SSE-SQS)
    "CKV_AWS_28": frozenset({TABLE}),  # DynamoDB point-in-time recovery (the dedupe ledger only)
    "CKV_AWS_115": frozenset({FUNCTION}),  # reserved concurrency (SQS-triggered functions only)
    "CKV_AWS_116": frozenset({FUNCTION}),  # function dead-letter queue
    "CKV_AWS_117": frozenset({FUNCTION}),  # function in a VPC
    "CKV_AWS_119": frozenset({TABLE}),  # DynamoDB with a customer managed key
    "CKV_AWS_158": frozenset({LOG_GROUP}),  # log group with a KMS key
    "CKV_AWS_173": frozenset({FUNCTION}),  # environment variables under a customer managed key
}


@dataclass(frozen=True)
class Skip:
    """One checkov skip declared in a template's resource metadata."""

    stack: str
    logical_id: str
    resource_type: str
    check_id: Any
    comment: Any

    @property
    def where(self) -> str:
        return f"{self.stack}/{self.logical_id} {self.check_id}"


def skips_in(stack: str, template: dict[str, Any]) -> list[Skip]:
    """Every checkov skip of every resource in the template, as declared."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        entries = (resource.get("Metadata") or {}).get("checkov", {}).get("skip", [])
        for entry in entries:
            found.append(Skip(stack, logical_id, resource["Type"], entry.get("id"), entry.get("comment")))
    return found


def unexplained(skips: list[Skip]) -> list[str]:
    """Skips without a check id or without a reason worth reading."""
    return [
        skip.where
        for skip in skips
        if not isinstance(skip.check_id, str)
        or not re.fullmatch(r"CKV_AWS_\d+", skip.check_id)
        or not isinstance(skip.comment, str)
        or len(" ".join(skip.comment.split())) < MIN_COMMENT_LENGTH
    ]


TEMPLATE_DATA = {path.parent.name: load_template(path) for path in TEMPLATES}
ALL_SKIPS = [skip for stack, template in TEMPLATE_DATA.items() for skip in skips_in(stack, template)]


def skipped(check_id: str) -> list[Skip]:
    return [skip for skip in ALL_SKIPS if skip.check_id == check_id]


def resource_of(skip: Skip) -> dict[str, Any]:
    return TEMPLATE_DATA[skip.stack]["Resources"][skip.logical_id]


def sqs_events(resource: dict[str, Any]) -> list[dict[str, Any]]:
    events = resource.get("Properties", {}).get("Events", {}).values()
    return [event["Properties"] for event in events if event["Type"] == "SQS"]


def parameter_of(stack: str, value: Any) -> dict[str, Any]:
    assert isinstance(value, dict) and set(value) == {"Ref"}, f"{stack}: {value} is not a parameter"
    return TEMPLATE_DATA[stack]["Parameters"][value["Ref"]]


# ------------------------------------------------------------------ the rules for skips


def test_a_skip_without_a_real_reason_is_reported():
    # Given a template whose skips lack a comment, carry a trivial one, or name no check
    template = {
        "Resources": {
            "Queue": {
                "Type": QUEUE,
                "Metadata": {
                    "checkov": {
                        "skip": [
                            {"id": "CKV_AWS_27"},
                            {"id": "CKV_AWS_28", "comment": "   not needed                  "},
                            {"comment": "A long enough reason, but for which check?"},
                            {"id": "CKV_AWS_116", "comment": "The queue's RedrivePolicy is its DLQ."},
                        ]
                    }
                },
            }
        }
    }

    # When the skips are collected and checked
    reported = unexplained(skips_in("Example", template))

    # Then only the well-formed skip with a real reason passes
    assert reported == ["Example/Queue CKV_AWS_27", "Example/Queue CKV_AWS_28", "Example/Queue None"]


def test_resources_without_metadata_declare_no_skips():
    # Given resources without metadata, or with metadata for other tools (SAM's BuildMethod)
    template = {
        "Resources": {
            "Bucket": {"Type": BUCKET, "Properties": {}},
            "Layer": {"Type": "AWS::Serverless::LayerVersion", "Metadata": {"BuildMethod": "python3.13"}},
        }
    }

    # When the skips are collected
    # Then there are none
    assert skips_in("Example", template) == []


def test_the_templates_declare_skips():
    # Given the four stacks, When their skips are collected, Then the inline form was found at all
    assert set(STACK_IDS) == {
        "StatusCallbackHandler",
        "SaveStatusCallbackToS3",
        "SaveStatusCallbackToDynamo",
        "CheckForStatusCallbackErrors",
    }
    assert {skip.stack for skip in ALL_SKIPS} == set(STACK_IDS)


def test_every_skip_has_a_check_id_and_a_reason_of_at_least_30_characters():
    assert unexplained(ALL_SKIPS) == []


def test_the_skipped_checks_are_exactly_the_allow_list():
    assert {skip.check_id for skip in ALL_SKIPS} == set(ALLOWED_SKIPS)


def test_each_check_is_skipped_only_on_the_resource_types_it_was_decided_for():
    misplaced = [skip.where for skip in ALL_SKIPS if skip.resource_type not in ALLOWED_SKIPS[skip.check_id]]
    assert misplaced == []


def test_no_resource_skips_the_same_check_twice():
    keys = [(skip.stack, skip.logical_id, skip.check_id) for skip in ALL_SKIPS]
    assert len(keys) == len(set(keys))


# ------------------------------------------------------------------ each skip's premise still holds


@pytest.mark.parametrize("skip", skipped("CKV_AWS_27"), ids=lambda skip: skip.where)
def test_queues_without_a_kms_key_are_encrypted_with_sse_sqs(skip: Skip):
    assert resource_of(skip)["Properties"].get("SqsManagedSseEnabled") is True


@pytest.mark.parametrize("skip", skipped("CKV_AWS_119"), ids=lambda skip: skip.where)
def test_tables_without_a_customer_managed_key_still_use_kms_encryption(skip: Skip):
    assert resource_of(skip)["Properties"]["SSESpecification"]["SSEEnabled"] is True


@pytest.mark.parametrize("skip", skipped("CKV_AWS_28"), ids=lambda skip: skip.where)
def test_only_a_ledger_that_expires_by_ttl_goes_without_point_in_time_recovery(skip: Skip):
    properties = resource_of(skip)["Properties"]
    assert properties["TimeToLiveSpecification"]["Enabled"] is True
    assert resource_of(skip).get("DeletionPolicy") != "Retain", "a retained table holds lasting data"


@pytest.mark.parametrize("skip", skipped("CKV_AWS_158"), ids=lambda skip: skip.where)
def test_log_groups_without_a_kms_key_still_expire(skip: Skip):
    retention = parameter_of(skip.stack, resource_of(skip)["Properties"]["RetentionInDays"])
    assert retention["Default"] in retention["AllowedValues"]


@pytest.mark.parametrize("skip", skipped("CKV_AWS_18"), ids=lambda skip: skip.where)
def test_buckets_without_access_logs_are_private_and_tls_only(skip: Skip):
    resources = TEMPLATE_DATA[skip.stack]["Resources"]
    public_access = resource_of(skip)["Properties"]["PublicAccessBlockConfiguration"]
    assert set(public_access.values()) == {True} and len(public_access) == 4
    policies = [
        resource["Properties"]["PolicyDocument"]
        for resource in resources.values()
        if resource["Type"] == "AWS::S3::BucketPolicy"
        and resource["Properties"]["Bucket"] == {"Ref": skip.logical_id}
    ]
    assert any(
        statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for policy in policies
        for statement in policy["Statement"]
    )


@pytest.mark.parametrize("skip", skipped("CKV_AWS_21"), ids=lambda skip: skip.where)
def test_only_a_bucket_whose_every_object_expires_goes_unversioned(skip: Skip):
    rules = resource_of(skip)["Properties"]["LifecycleConfiguration"]["Rules"]
    whole_bucket_expiry = [
        rule for rule in rules if "ExpirationInDays" in rule and "Prefix" not in rule and "Filter" not in rule
    ]
    assert whole_bucket_expiry, f"{skip.where}: its objects do not all expire, so they deserve versions"


@pytest.mark.parametrize("skip", skipped("CKV_AWS_116"), ids=lambda skip: skip.where)
def test_functions_without_a_dlq_property_dead_letter_another_way(skip: Skip):
    # Given a function that skips the dead-letter-queue check
    properties = resource_of(skip)["Properties"]
    resources = TEMPLATE_DATA[skip.stack]["Resources"]

    # Then either SQS invokes it synchronously from queues that redrive to a DLQ ...
    events = sqs_events(resource_of(skip))
    for event in events:
        queue = resources[event["Queue"]["Fn::GetAtt"][0]]["Properties"]
        assert queue["RedrivePolicy"]["deadLetterTargetArn"], skip.where
    # ... or its asynchronous invokes end in an on-failure destination.
    on_failure = properties.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure")
    assert events or (on_failure and on_failure["Type"] == "SQS"), skip.where


@pytest.mark.parametrize("skip", skipped("CKV_AWS_115"), ids=lambda skip: skip.where)
def test_functions_without_reserved_concurrency_are_capped_at_their_sqs_event_source(skip: Skip):
    events = sqs_events(resource_of(skip))
    assert events, f"{skip.where}: not SQS-triggered, so reserved concurrency is the control"
    for event in events:
        parameter = parameter_of(skip.stack, event["ScalingConfig"]["MaximumConcurrency"])
        assert parameter["MinValue"] >= 2 and parameter["Default"] >= 2
        assert parameter["MaxValue"] <= 1000


@pytest.mark.parametrize("skip", skipped("CKV_AWS_173"), ids=lambda skip: skip.where)
def test_functions_without_an_environment_key_hold_no_secret_there(skip: Skip):
    template = TEMPLATE_DATA[skip.stack]
    variables = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **resource_of(skip)["Properties"].get("Environment", {}).get("Variables", {}),
    }
    assert variables, skip.where
    assert [name for name in variables if SECRET_WORDS.search(name)] == []


# ------------------------------------------------------------------ the checks that were fixed, not skipped


@pytest.mark.parametrize("template_path", TEMPLATES, ids=STACK_IDS)
def test_every_sqs_event_source_caps_its_concurrency(template_path: Path):
    stack = template_path.parent.name
    for resource in TEMPLATE_DATA[stack]["Resources"].values():
        if resource["Type"] == FUNCTION:
            for event in sqs_events(resource):
                parameter = parameter_of(stack, event["ScalingConfig"]["MaximumConcurrency"])
                assert 2 <= parameter["Default"] <= 1000


def test_the_archive_bucket_is_always_versioned_and_old_versions_expire():
    bucket = TEMPLATE_DATA["SaveStatusCallbackToS3"]["Resources"]["ArchiveBucket"]
    assert "ArchiveBucket" not in {skip.logical_id for skip in skipped("CKV_AWS_21")}
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    [old_versions] = [
        rule
        for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        if "NoncurrentVersionExpiration" in rule
    ]
    assert old_versions["Status"] == "Enabled"
    assert old_versions["NoncurrentVersionExpiration"]["NoncurrentDays"] == {
        "Ref": "NoncurrentVersionExpirationDays"
    }
    assert old_versions["ExpiredObjectDeleteMarker"] is True


@pytest.mark.parametrize(
    ("function", "parameter"),
    [("FlaggerFunction", "FlaggerReservedConcurrency"), ("AlerterFunction", "AlerterReservedConcurrency")],
)
def test_asynchronously_invoked_functions_can_reserve_concurrency_but_do_not_by_default(function, parameter):
    # Reserving concurrency must leave 100 of the account's unreserved (PutFunctionConcurrency), so a
    # default reservation fails to create the stack in a new or low-quota account.
    template = TEMPLATE_DATA["CheckForStatusCallbackErrors"]
    reserved = template["Resources"][function]["Properties"]["ReservedConcurrentExecutions"]["Fn::If"]
    assert reserved[1:] == [{"Ref": parameter}, {"Ref": "AWS::NoValue"}]
    assert template["Conditions"][reserved[0]] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, 0]}]}
    assert template["Parameters"][parameter]["Default"] == 0
    assert function not in {skip.logical_id for skip in skipped("CKV_AWS_115")}


def test_the_ingest_queues_refuse_requests_not_over_tls():
    resources = TEMPLATE_DATA["StatusCallbackHandler"]["Resources"]
    policy = resources["IngestQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "IngestQueue"}, {"Ref": "IngestDeadLetterQueue"}]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["IngestQueue", "Arn"]},
        {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]},
    ]
