"""What the SaveStatusCallbackToDynamo template must say for the writer and the store to work.

Lint (cfn-lint, sam validate --lint), fixed names and comments are checked for every stack in
tests/templates; these are this stack's own semantics.
"""

from __future__ import annotations

from pathlib import Path

import dynamo_writer_handler as writer
import pytest

from status_callbacks.domain import status_items

pytestmark = pytest.mark.templates

TOPIC = {
    "Fn::If": [
        "HasTopicArn",
        {"Ref": "TopicArn"},
        {"Fn::ImportValue": {"Fn::Sub": "${IngestStackName}-TopicArn"}},
    ]
}


@pytest.fixture(scope="module")
def resources(template):
    return template["Resources"]


@pytest.fixture(scope="module")
def function(resources):
    return resources["WriterFunction"]["Properties"]


def test_table_keys_match_the_status_store_module(table_properties):
    assert table_properties["KeySchema"] == [
        {"AttributeName": status_items.PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": status_items.SORT_KEY, "KeyType": "RANGE"},
    ]
    (index,) = table_properties["GlobalSecondaryIndexes"]
    assert index["IndexName"] == status_items.ERROR_INDEX_NAME
    assert index["KeySchema"] == [
        {"AttributeName": status_items.ERROR_INDEX_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": status_items.ERROR_INDEX_SORT_KEY, "KeyType": "RANGE"},
    ]
    types = {d["AttributeName"]: d["AttributeType"] for d in table_properties["AttributeDefinitions"]}
    assert types == {"sid": "S", "sk": "S", "error_shard": "S", "received_at": "N"}


def test_error_index_projects_a_few_envelope_fields_and_no_callback_content(table_properties):
    (index,) = table_properties["GlobalSecondaryIndexes"]
    projection = index["Projection"]
    assert projection["ProjectionType"] == "INCLUDE"
    assert set(projection["NonKeyAttributes"]) <= {
        "status",
        "product",
        "account_sid",
        "error_code",
        "event_id",
    }


def test_table_is_on_demand_recoverable_encrypted_and_retained(resources, table_properties):
    assert table_properties["BillingMode"] == "PAY_PER_REQUEST"
    assert table_properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table_properties["SSESpecification"]["SSEEnabled"] is True
    assert resources["StatusTable"]["DeletionPolicy"] == "Retain"
    assert resources["StatusTable"]["UpdateReplacePolicy"] == "Retain"


def test_ttl_is_optional_and_uses_the_modules_attribute(template, table_properties):
    condition, enabled, disabled = table_properties["TimeToLiveSpecification"]["Fn::If"]
    assert condition == "HasTtl"
    assert enabled == {"AttributeName": status_items.TTL_ATTRIBUTE, "Enabled": True}
    assert disabled == {"Ref": "AWS::NoValue"}
    assert template["Conditions"]["HasTtl"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "StatusTtlDays"}, 0]}]}
    assert template["Parameters"]["StatusTtlDays"]["Default"] == 0


def test_status_queue_dead_letters_and_is_encrypted(resources):
    queue = resources["StatusQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["StatusDeadLetterQueue", "Arn"]}
    assert 1 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 10
    assert queue["SqsManagedSseEnabled"] is True
    dead_letter = resources["StatusDeadLetterQueue"]["Properties"]
    assert dead_letter["SqsManagedSseEnabled"] is True
    # A dead-lettered message keeps its first enqueue time, so the DLQ must keep messages longer.
    assert dead_letter["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


def test_visibility_timeout_covers_six_timeouts_and_the_longest_window(template, resources, function):
    # AWS's guidance for SQS event sources: 6x the function timeout plus the batching window
    longest_window = template["Parameters"]["MaximumBatchingWindowInSeconds"]["MaxValue"]
    visibility = resources["StatusQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * function["Timeout"] + longest_window


def test_subscription_raw_delivers_every_record_from_the_ingest_topic(resources):
    subscription = resources["StatusSubscription"]["Properties"]
    assert subscription["Protocol"] == "sqs"
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["StatusQueue", "Arn"]}
    assert subscription["RawMessageDelivery"] is True
    assert subscription["TopicArn"] == TOPIC
    assert "FilterPolicy" not in subscription  # the store keeps every product, healthy or not
    assert subscription["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["StatusDeadLetterQueue", "Arn"]
    }


@pytest.mark.parametrize(
    ("policy", "queue"),
    [("StatusQueuePolicy", "StatusQueue"), ("StatusDeadLetterQueuePolicy", "StatusDeadLetterQueue")],
)
def test_queue_policies_admit_only_the_topic_and_only_over_tls(resources, policy, queue):
    properties = resources[policy]["Properties"]
    allows = [s for s in properties["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    denies = [s for s in properties["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert properties["Queues"] == [{"Ref": queue}]
    (statement,) = allows
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": TOPIC}}
    (tls_only,) = denies
    assert tls_only["Principal"] == "*"
    assert tls_only["Action"] == "sqs:*"
    assert tls_only["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert tls_only["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_topic_defaults_to_the_ingest_stacks_export(template):
    parameters = template["Parameters"]
    assert parameters["IngestStackName"]["Default"] == "StatusCallbackHandler"
    assert parameters["TopicArn"]["Default"] == ""
    assert template["Conditions"]["HasTopicArn"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TopicArn"}, ""]}]}


def test_writer_batches_from_the_queue_and_reports_partial_failures(template, function):
    source = function["Events"]["StatusQueue"]
    assert source["Type"] == "SQS"
    properties = source["Properties"]
    assert properties["Queue"] == {"Fn::GetAtt": ["StatusQueue", "Arn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BatchSize"] == {"Ref": "BatchSize"}
    assert properties["MaximumBatchingWindowInSeconds"] == {"Ref": "MaximumBatchingWindowInSeconds"}
    parameters = template["Parameters"]
    # Large batches collapse a SID's current-status writes (the benchmark's figures), and a
    # full batch at ~10 ms a record stays well inside the timeout
    assert parameters["BatchSize"]["Default"] == parameters["BatchSize"]["MaxValue"] == 1000
    assert parameters["BatchSize"]["MaxValue"] * 0.010 <= function["Timeout"] / 2
    # Batches above 10 need a window of at least one second; lookups stay at most seconds stale
    assert parameters["MaximumBatchingWindowInSeconds"]["MinValue"] >= 1
    assert parameters["MaximumBatchingWindowInSeconds"]["Default"] <= 20


def test_writer_may_only_put_items_into_its_table(resources, function):
    # Given the writer's own role (no SAM-generated role, whose managed policies reach every queue)
    assert function["Role"] == {"Fn::GetAtt": ["WriterRole", "Arn"]}
    assert "Policies" not in function
    (policy,) = resources["WriterRole"]["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    # Then its only data-plane grant is PutItem on the status table
    assert statements["WriteStatusItems"] == {
        "Sid": "WriteStatusItems",
        "Effect": "Allow",
        "Action": "dynamodb:PutItem",
        "Resource": {"Fn::GetAtt": ["StatusTable", "Arn"]},
    }
    dynamodb_actions = [
        action
        for statement in statements.values()
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if action.startswith("dynamodb:")
    ]
    assert dynamodb_actions == ["dynamodb:PutItem"]
    # And the rest is its own queue, its own log group and traces
    assert set(statements) == {"ConsumeStatusQueue", "WriteStatusItems", "WriteOwnLogs", "WriteTraces"}
    assert statements["ConsumeStatusQueue"]["Resource"] == {"Fn::GetAtt": ["StatusQueue", "Arn"]}
    assert statements["WriteOwnLogs"]["Resource"] == {"Fn::GetAtt": ["WriterLogGroup", "Arn"]}


def test_writer_code_and_settings_match_the_handler(function):
    handler_module, handler_name = function["Handler"].split(".")
    assert (Path(writer.__file__).parent.name + "/") == function["CodeUri"]
    assert handler_module == writer.__name__
    assert callable(getattr(writer, handler_name))
    variables = function["Environment"]["Variables"]
    settings = writer.Settings.from_env({name: "7" for name in variables})
    assert settings == writer.Settings(table_name="7", ttl_days=7)
    assert variables["STATUS_TABLE_NAME"] == {"Ref": "StatusTable"}
    assert variables["STATUS_TTL_DAYS"] == {"Ref": "StatusTtlDays"}


def test_writer_logs_to_its_own_log_group_with_a_retention(resources, function):
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "WriterLogGroup"}
    assert resources["WriterLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


def test_dead_letter_alarm_watches_the_dlq_and_notifies_optionally(resources):
    alarm = resources["StatusDeadLetterAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["StatusDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


def test_outputs_name_what_the_cli_and_local_runner_discover(template):
    outputs = template["Outputs"]
    assert set(outputs) == {
        "StatusTableName",
        "StatusTableArn",
        "ErrorsByCodeIndexName",
        "StatusQueueUrl",
        "StatusQueueArn",
        "StatusDeadLetterQueueUrl",
        "StatusDeadLetterQueueArn",
        "WriterFunctionName",
    }
    assert outputs["ErrorsByCodeIndexName"]["Value"] == status_items.ERROR_INDEX_NAME
    assert outputs["StatusDeadLetterQueueUrl"]["Value"] == {"Ref": "StatusDeadLetterQueue"}
    assert outputs["StatusQueueArn"]["Value"] == {"Fn::GetAtt": ["StatusQueue", "Arn"]}


def test_no_resource_has_a_fixed_name(resources):
    fixed = {"TableName", "QueueName", "FunctionName", "RoleName", "LogGroupName", "LayerName", "AlarmName"}
    named = [
        f"{logical_id}.{name}"
        for logical_id, resource in resources.items()
        for name, value in resource.get("Properties", {}).items()
        # A name derived from the stack's own name (the shared layer's) cannot collide across environments.
        if name in fixed and "${AWS::StackName}" not in str(value)
    ]
    assert named == []


def test_the_largest_batch_fits_the_function_timeout(template, function):
    # Up to two writes per record at ~10 ms each (network + signing on a 256 MB arm64 function).
    largest = template["Parameters"]["BatchSize"]["MaxValue"]
    assert largest * 2 * 0.010 <= function["Timeout"] * 0.75
