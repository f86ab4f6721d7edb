"""The SaveStatusCallbackToS3 template: durable subscription, safe buckets, least privilege, named queries."""

from __future__ import annotations

import copy
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from tests.archive.builders import STACK_DIR, TEMPLATE_PATH

pytestmark = pytest.mark.templates

TOPIC = {
    "Fn::If": [
        "HasTopicArn",
        {"Ref": "TopicArn"},
        {"Fn::ImportValue": {"Fn::Sub": "${IngestStackName}-TopicArn"}},
    ]
}
BUCKETS = ("ArchiveBucket", "AthenaResultsBucket")


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == kind}


def _cfn_lint() -> str:
    candidate = Path(sys.executable).parent / "cfn-lint"
    return str(candidate) if candidate.exists() else (shutil.which("cfn-lint") or "cfn-lint")


def test_the_topic_comes_from_a_parameter_or_the_ingest_stacks_export(template: dict[str, Any]):
    parameters = template["Parameters"]
    assert parameters["IngestStackName"]["Default"] == "StatusCallbackHandler"
    assert parameters["TopicArn"]["Default"] == ""
    assert template["Conditions"]["HasTopicArn"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TopicArn"}, ""]}]}
    subscription = template["Resources"]["ArchiveSubscription"]["Properties"]
    assert subscription["TopicArn"] == TOPIC


def test_the_subscription_delivers_raw_records_to_the_queue_with_a_dead_letter_queue(
    template: dict[str, Any],
):
    subscription = template["Resources"]["ArchiveSubscription"]["Properties"]

    assert subscription["Protocol"] == "sqs"
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["ArchiveQueue", "Arn"]}
    assert subscription["RawMessageDelivery"] is True
    assert subscription["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["ArchiveDeadLetterQueue", "Arn"]
    }
    # No filter policy: the archive keeps every callback.
    assert "FilterPolicy" not in subscription


def test_only_the_ingest_topic_may_send_to_the_queues_and_only_over_tls(template: dict[str, Any]):
    policy = template["Resources"]["ArchiveQueuePolicy"]["Properties"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    allow = statements["AllowIngestTopic"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == {"Service": "sns.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": TOPIC}}
    assert {"Ref": "ArchiveQueue"} in policy["Queues"]
    deny = statements["DenyInsecureTransport"]
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    assert [s for s in statements.values() if s["Effect"] == "Allow"] == [allow]


def test_the_queue_redrives_to_its_dead_letter_queue_and_both_are_encrypted(template: dict[str, Any]):
    queues = _resources(template, "AWS::SQS::Queue")
    queue = queues["ArchiveQueue"]["Properties"]
    dead_letter = queues["ArchiveDeadLetterQueue"]["Properties"]

    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ArchiveDeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    assert template["Parameters"]["MaxReceiveCount"]["Type"] == "Number"
    # Expiry counts from the first enqueue, so the DLQ must keep messages longer than the source.
    assert dead_letter["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())


def test_the_dead_letter_queue_has_an_alarm_with_an_optional_action(template: dict[str, Any]):
    alarm = template["Resources"]["ArchiveDeadLetterAlarm"]["Properties"]

    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ArchiveDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""


def test_the_event_source_batches_large_and_reports_partial_failures(template: dict[str, Any]):
    event = template["Resources"]["ArchiverFunction"]["Properties"]["Events"]["ArchiveQueue"]
    parameters = template["Parameters"]

    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ArchiveQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["BatchSize"] == {"Ref": "BatchSize"}
    assert event["Properties"]["MaximumBatchingWindowInSeconds"] == {"Ref": "MaximumBatchingWindowInSeconds"}
    assert parameters["BatchSize"]["Default"] >= 100
    assert parameters["MaximumBatchingWindowInSeconds"]["Default"] >= 1


def test_sam_turns_the_event_into_a_mapping_that_reports_batch_item_failures(template: dict[str, Any]):
    # Given the template as `sam package` leaves it (code in S3), translated by SAM for CloudFormation
    packaged = copy.deepcopy(template)
    packaged["Resources"]["ArchiverFunction"]["Properties"]["CodeUri"] = "s3://artifacts/archiver.zip"
    packaged["Resources"]["SharedLayer"]["Properties"]["ContentUri"] = "s3://artifacts/shared.zip"
    translated = transform(packaged, {"AWS::Region": "us-east-1"}, ManagedPolicyLoader(iam_client=None))

    # Then the event source mapping carries the batching and partial-failure settings
    (mapping,) = _resources(translated, "AWS::Lambda::EventSourceMapping").values()
    properties = mapping["Properties"]
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BatchSize"] == {"Ref": "BatchSize"}
    assert properties["MaximumBatchingWindowInSeconds"] == {"Ref": "MaximumBatchingWindowInSeconds"}
    # And SAM attached no role or policy of its own: the explicit role is the whole grant
    (function,) = _resources(translated, "AWS::Lambda::Function").values()
    assert function["Properties"]["Role"] == {"Fn::GetAtt": ["ArchiverRole", "Arn"]}
    assert _resources(translated, "AWS::IAM::Role").keys() == {"ArchiverRole"}


def test_visibility_timeout_covers_six_function_timeouts_and_the_longest_batching_window(
    template: dict[str, Any],
):
    function = template["Resources"]["ArchiverFunction"]["Properties"]
    queue = template["Resources"]["ArchiveQueue"]["Properties"]
    longest_window = template["Parameters"]["MaximumBatchingWindowInSeconds"]["MaxValue"]

    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"] + longest_window


def test_the_function_is_python313_arm64_with_the_shared_layer_and_its_own_log_group(
    template: dict[str, Any],
):
    function = template["Resources"]["ArchiverFunction"]["Properties"]
    layer = template["Resources"]["SharedLayer"]
    log_group = template["Resources"]["ArchiverLogGroup"]

    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    assert function["Layers"] == [{"Ref": "SharedLayer"}]
    assert function["Handler"] == "archiver_handler.handler"
    assert (STACK_DIR / function["CodeUri"] / "archiver_handler.py").is_file()
    assert layer["Properties"]["ContentUri"] == "../../layers/shared"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "ArchiverLogGroup"}
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


def test_no_physical_name_is_fixed(template: dict[str, Any]):
    # Names a stack must not pin, or two environments could not share an account
    pinned = ("QueueName", "BucketName", "FunctionName", "RoleName", "TopicName", "AlarmName", "LogGroupName")
    for logical_id, resource in template["Resources"].items():
        for name in pinned:
            assert name not in resource.get("Properties", {}), f"{logical_id}.{name}"
    # The names that must exist are built from the stack name
    resources = template["Resources"]
    assert "AWS::StackName" in str(resources["SharedLayer"]["Properties"]["LayerName"])
    assert "AWS::StackName" in str(resources["AthenaWorkGroup"]["Properties"]["Name"])
    assert "AWS::StackName" in str(resources["ArchiveDatabase"]["Properties"]["DatabaseInput"]["Name"])
    assert all("Export" not in output for output in template["Outputs"].values())


@pytest.mark.parametrize("bucket", BUCKETS)
def test_buckets_are_encrypted_private_and_tls_only(template: dict[str, Any], bucket: str):
    properties = template["Resources"][bucket]["Properties"]
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "BucketName" not in properties

    (policy,) = [
        r["Properties"]
        for r in _resources(template, "AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [{"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": f"${{{bucket}.Arn}}/*"}]


def test_archive_lifecycle_rules_are_parameters_where_zero_disables(template: dict[str, Any]):
    rules = template["Resources"]["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    conditional = {rule["Fn::If"][0]: rule["Fn::If"][1] for rule in rules if "Fn::If" in rule}

    assert conditional["HasTransition"]["Transitions"] == [
        {
            "StorageClass": {"Ref": "ArchiveTransitionStorageClass"},
            "TransitionInDays": {"Ref": "ArchiveTransitionDays"},
        }
    ]
    assert conditional["HasExpiration"]["ExpirationInDays"] == {"Ref": "ArchiveExpirationDays"}
    assert template["Conditions"]["HasTransition"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ArchiveTransitionDays"}, 0]}]
    }
    assert template["Conditions"]["HasExpiration"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ArchiveExpirationDays"}, 0]}]
    }
    assert template["Parameters"]["ArchiveExpirationDays"]["Default"] == 0
    assert all(
        rules_with_if["Fn::If"][2] == {"Ref": "AWS::NoValue"}
        for rules_with_if in rules
        if "Fn::If" in rules_with_if
    )


def test_athena_results_expire(template: dict[str, Any]):
    rules = template["Resources"]["AthenaResultsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]

    assert {"Ref": "AthenaResultsExpirationDays"} in [rule.get("ExpirationInDays") for rule in rules]


def test_iam_is_least_privilege(template: dict[str, Any]):
    role = template["Resources"]["ArchiverRole"]["Properties"]
    statements = {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}

    for sid, statement in statements.items():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), sid
        if sid != "WriteTraces":  # X-Ray offers no resource-level permissions
            assert statement["Resource"] != "*", sid
    write = statements["WriteArchiveObjects"]
    assert write["Action"] == "s3:PutObject"
    assert write["Resource"] == {"Fn::Sub": "${ArchiveBucket.Arn}/callbacks/*"}
    assert statements["ConsumeArchiveQueue"]["Resource"] == {"Fn::GetAtt": ["ArchiveQueue", "Arn"]}
    assert statements["WriteOwnLogs"]["Resource"] == {"Fn::GetAtt": ["ArchiverLogGroup", "Arn"]}
    # Nothing else may touch S3: no reads, no deletes, no bucket-level actions
    s3_actions = {
        action
        for statement in statements.values()
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if action.startswith("s3:")
    }
    assert s3_actions == {"s3:PutObject"}


def test_the_workgroup_enforces_encrypted_results_in_the_results_bucket(template: dict[str, Any]):
    configuration = template["Resources"]["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]

    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] in {
        "SSE_S3",
        "SSE_KMS",
    }
    assert configuration["ResultConfiguration"]["OutputLocation"] == {
        "Fn::Sub": "s3://${AthenaResultsBucket}/results/"
    }
    assert configuration["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoffPerQuery"}


def test_named_queries_cover_the_analyst_questions_and_deduplicate_by_event_id(template: dict[str, Any]):
    queries = _resources(template, "AWS::Athena::NamedQuery")
    table = template["Resources"]["ArchiveTable"]["Properties"]["TableInput"]["Name"]

    assert len(queries) >= 4
    names = " | ".join(q["Properties"]["Name"].lower() for q in queries.values())
    for topic in ("delivery and failure rates per day", "error code", "sid", "category"):
        assert topic in names
    for logical_id, query in queries.items():
        properties = query["Properties"]
        sql = properties["QueryString"]
        assert properties["Database"] == {"Ref": "ArchiveDatabase"}, logical_id
        assert properties["WorkGroup"] == {"Ref": "AthenaWorkGroup"}, logical_id
        assert re.search(rf"\bFROM {table}\b", sql), logical_id
        assert "PARTITION BY event_id" in sql and "copy_number = 1" in sql, logical_id
        # Every scan is bounded by the partition column, so Athena prunes by date
        assert re.search(r"\bdt >= ", sql), logical_id
        # A map subscript fails on a missing key in Athena; element_at returns NULL instead
        assert not re.search(r"\b(custom|twilio)\[", sql), logical_id


def test_outputs_name_what_the_cli_and_runner_discover(template: dict[str, Any]):
    expected = {
        "ArchiveBucketName",
        "ArchiveQueueUrl",
        "ArchiveQueueArn",
        "ArchiveDeadLetterQueueUrl",
        "ArchiveDeadLetterQueueArn",
        "GlueDatabaseName",
        "GlueTableName",
        "AthenaWorkGroupName",
        "ArchiverFunctionName",
    }

    assert expected <= template["Outputs"].keys()


def test_every_resource_has_a_comment_saying_why():
    lines = TEMPLATE_PATH.read_text(encoding="utf-8").splitlines()
    start = lines.index("Resources:")
    end = lines.index("Outputs:")
    for number in range(start + 1, end):
        line = lines[number]
        if re.fullmatch(r"  [A-Za-z0-9]+:", line):
            above = lines[number - 1]
            assert above.startswith("  # "), f"{line.strip()} has no comment above it"


def test_lifecycle_parameters_admit_exactly_the_combinations_s3_accepts(template):
    # S3 refuses a rule whose expiration is not after its transition, and STANDARD_IA before 30 days;
    # CloudFormation checks the template's Rules before it creates anything (as the emulator does).
    from itertools import product

    from aws_emulator.intrinsics import rule_failures

    parameters = template["Parameters"]
    transitions = [int(value) for value in parameters["ArchiveTransitionDays"]["AllowedValues"]]
    expirations = [int(value) for value in parameters["ArchiveExpirationDays"]["AllowedValues"]]
    assert min(day for day in transitions if day) >= 30
    defaults = {name: str(declaration.get("Default", "")) for name, declaration in parameters.items()}
    for transition, expiration in product(transitions, expirations):
        values = {
            **defaults,
            "ArchiveTransitionDays": str(transition),
            "ArchiveExpirationDays": str(expiration),
        }
        s3_accepts = transition == 0 or expiration == 0 or expiration > transition
        refused = rule_failures(template["Rules"], values)
        assert (not refused) == s3_accepts, (transition, expiration, refused)
