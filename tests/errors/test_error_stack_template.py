"""Checks over the CheckForStatusCallbackErrors template: lint, retry paths, contract defaults, names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from status_callbacks.domain.routes import DEFAULT_DETAIL_TYPE, DEFAULT_EVENT_SOURCE, ROUTES

pytestmark = pytest.mark.templates

TEMPLATE_PATH = (
    Path(__file__).resolve().parents[2] / "aws_stacks" / "CheckForStatusCallbackErrors" / "template.yaml"
)
INGEST_TOPIC = {
    "Fn::If": [
        "HasTopicArn",
        {"Ref": "TopicArn"},
        {"Fn::ImportValue": {"Fn::Sub": "${IngestStackName}-TopicArn"}},
    ]
}
NAME_PROPERTIES = ("QueueName", "TopicName", "TableName", "BucketName", "FunctionName", "RoleName", "Name")


TLS_ONLY_CONDITION = {"Bool": {"aws:SecureTransport": "false"}}


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == resource_type}


def split_by_effect(policy: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A queue policy's Allow statements and its Deny statements."""
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    return (
        [s for s in statements if s["Effect"] == "Allow"],
        [s for s in statements if s["Effect"] == "Deny"],
    )


def role_statements(template: dict[str, Any], function: str) -> dict[str, dict[str, Any]]:
    """The statements of the explicit role a function runs as, by Sid."""
    role = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = template["Resources"][role]["Properties"]["Policies"]
    return {s["Sid"]: s for policy in policies for s in policy["PolicyDocument"]["Statement"]}


def test_error_queue_redrives_to_its_dead_letter_queue(template: dict[str, Any]) -> None:
    queue = template["Resources"]["ErrorQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ErrorDeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    # and a message stays hidden for 6x the router's timeout plus the longest batching window
    router = template["Resources"]["RouterFunction"]["Properties"]
    longest_window = template["Parameters"]["MaximumBatchingWindowInSeconds"]["MaxValue"]
    assert queue["VisibilityTimeout"] >= 6 * router["Timeout"] + longest_window


def test_every_queue_is_encrypted_and_every_dead_letter_queue_alarms(template: dict[str, Any]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    assert all(queue["Properties"]["SqsManagedSseEnabled"] is True for queue in queues.values())
    alarmed = {
        alarm["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values()
    }
    assert alarmed == {name for name in queues if name.endswith("DeadLetterQueue")}
    assert {"ErrorDeadLetterQueue", "ErrorTargetsDeadLetterQueue", "FlaggerDeadLetterQueue"} <= alarmed


def test_router_reports_partial_batch_failures_with_small_fast_batches(template: dict[str, Any]) -> None:
    event = template["Resources"]["RouterFunction"]["Properties"]["Events"]["ErrorCallbacks"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ErrorQueue", "Arn"]}
    parameters = template["Parameters"]
    assert parameters["BatchSize"]["Default"] <= 10
    # Alerts stay near real time: a batch waits at most a few seconds to fill
    assert parameters["MaximumBatchingWindowInSeconds"]["Default"] <= 5


def test_subscription_takes_only_error_callbacks_from_the_ingest_topic(template: dict[str, Any]) -> None:
    subscription = template["Resources"]["ErrorSubscription"]["Properties"]
    assert subscription["TopicArn"] == INGEST_TOPIC
    assert subscription["Protocol"] == "sqs"
    assert subscription["RawMessageDelivery"] is True
    assert subscription["FilterPolicyScope"] == "MessageAttributes"
    assert subscription["FilterPolicy"] == {"ErrorCode": [{"exists": True}]}
    [statement], [tls_only] = split_by_effect(template["Resources"]["ErrorQueuePolicy"])
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": INGEST_TOPIC}}
    assert tls_only["Principal"] == "*" and tls_only["Condition"] == TLS_ONLY_CONDITION
    assert tls_only["Resource"] == statement["Resource"]
    assert template["Parameters"]["IngestStackName"]["Default"] == "StatusCallbackHandler"
    assert template["Parameters"]["TopicArn"]["Default"] == ""


def test_event_contract_defaults_match_the_original(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["EventSource"]["Default"] == DEFAULT_EVENT_SOURCE == "custom.twilioStatusCallbackErrors"
    assert parameters["EventDetailType"]["Default"] == DEFAULT_DETAIL_TYPE == "errormessage"
    variables = template["Resources"]["RouterFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["EVENT_SOURCE"] == {"Ref": "EventSource"}
    assert variables["EVENT_DETAIL_TYPE"] == {"Ref": "EventDetailType"}
    assert variables["EVENT_BUS_NAME"] == {"Ref": "ErrorEventBus"}


def test_rules_match_the_enrichment_not_a_list_of_codes(template: dict[str, Any]) -> None:
    rules = resources_of(template, "AWS::Events::Rule")
    assert rules["FlagNumberRule"]["Properties"]["EventPattern"]["detail"] == {"Actions": ["flag_number"]}
    for rule in rules.values():
        pattern = json.dumps(rule["Properties"]["EventPattern"])
        assert not any(code in pattern for code in ROUTES), "error codes belong in the routing table"
        assert rule["Properties"]["EventBusName"] == {"Ref": "ErrorEventBus"}


def test_every_rule_target_retries_and_dead_letters(template: dict[str, Any]) -> None:
    rules = resources_of(template, "AWS::Events::Rule")
    for rule in rules.values():
        for target in rule["Properties"]["Targets"]:
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
            assert target["DeadLetterConfig"] == {
                "Arn": {"Fn::GetAtt": ["ErrorTargetsDeadLetterQueue", "Arn"]}
            }
    [statement], [tls_only] = split_by_effect(template["Resources"]["ErrorTargetsDeadLetterQueuePolicy"])
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert tls_only["Principal"] == "*" and tls_only["Condition"] == TLS_ONLY_CONDITION
    assert tls_only["Resource"] == {"Fn::GetAtt": ["ErrorTargetsDeadLetterQueue", "Arn"]}
    assert sorted(
        arn["Fn::GetAtt"][0] for arn in statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    ) == sorted(rules)


def test_flagger_is_invoked_only_by_its_rule_and_dead_letters_its_failures(template: dict[str, Any]) -> None:
    permission = template["Resources"]["FlaggerInvokePermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["FlagNumberRule", "Arn"]}
    on_failure = template["Resources"]["FlaggerFunction"]["Properties"]["EventInvokeConfig"][
        "DestinationConfig"
    ]
    assert on_failure["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["FlaggerDeadLetterQueue", "Arn"]},
    }


def test_alerts_go_through_the_alerter_to_a_topic_under_a_key_its_publishers_may_use(
    template: dict[str, Any],
) -> None:
    topic = template["Resources"]["AlertsTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlertsKey", "Arn"]}
    # The rule hands each event to the alerter (EventBridge can set no SNS subject) ...
    alerts_target = template["Resources"]["AlertsRule"]["Properties"]["Targets"][0]
    assert alerts_target["Arn"] == {"Fn::GetAtt": ["AlerterFunction", "Arn"]}
    assert "InputTransformer" not in alerts_target
    alerter = template["Resources"]["AlerterFunction"]["Properties"]
    assert alerter["Environment"]["Variables"]["ALERTS_TOPIC_ARN"] == {"Ref": "AlertsTopic"}
    # ... whose role publishes under the key through SNS only
    statements = role_statements(template, "AlerterFunction")
    assert statements["PublishAlerts"]["Resource"] == {"Ref": "AlertsTopic"}
    assert statements["EncryptAlertsForTheTopic"]["Resource"] == {"Fn::GetAtt": ["AlertsKey", "Arn"]}
    # and the key still admits EventBridge (users' own rules) and alarms, each with its own statement
    key_statements = template["Resources"]["AlertsKey"]["Properties"]["KeyPolicy"]["Statement"]
    services = {s["Principal"]["Service"]: s for s in key_statements if "Service" in s["Principal"]}
    assert set(services) == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}


def test_tables_are_encrypted_on_demand_and_flags_are_recoverable(template: dict[str, Any]) -> None:
    tables = resources_of(template, "AWS::DynamoDB::Table")
    for table in tables.values():
        assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["Properties"]["SSESpecification"] == {"SSEEnabled": True}
    flags = tables["NumberFlagsTable"]["Properties"]
    assert flags["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert [key["AttributeName"] for key in flags["KeySchema"]] == ["phone_number", "error_code"]
    ledger = tables["IdempotencyTable"]["Properties"]
    assert ledger["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_no_fixed_resource_or_export_names(template: dict[str, Any]) -> None:
    def derived(value: Any) -> bool:
        # A reference to another resource is fine; a literal or a Sub without the stack name is not.
        if isinstance(value, dict) and "Fn::Sub" in value:
            return "${AWS::StackName}" in json.dumps(value["Fn::Sub"])
        return isinstance(value, dict) and ("Ref" in value or "Fn::GetAtt" in value)

    for logical_id, resource in template["Resources"].items():
        for name in NAME_PROPERTIES:
            if name in resource.get("Properties", {}):
                assert derived(resource["Properties"][name]), f"{logical_id}.{name} is fixed"
    for output in template["Outputs"].values():
        if "Export" in output:
            assert derived(output["Export"]["Name"])


def test_functions_log_to_their_own_group_and_use_the_stack_layer(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Runtime"] == "python3.13"
    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": "SharedLayer"}]
    handlers = set()
    for function in resources_of(template, "AWS::Serverless::Function").values():
        properties = function["Properties"]
        group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert template["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
        handler_module = properties["Handler"].split(".")[0]
        assert (TEMPLATE_PATH.parent / properties["CodeUri"] / f"{handler_module}.py").is_file()
        handlers.add(handler_module)
    assert len(handlers) == 3
    layer = template["Resources"]["SharedLayer"]
    assert layer["Properties"]["ContentUri"] == "../../layers/shared"
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def test_policies_name_actions_not_wildcards(template: dict[str, Any]) -> None:
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        assert "Policies" not in function["Properties"], f"{name} would get SAM's generated role"
        for sid, statement in role_statements(template, name).items():
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), f"{name} {sid}"
            if sid != "WriteTraces":  # X-Ray offers no resource-level permissions
                assert statement["Resource"] != "*", f"{name} {sid}"


def test_router_role_reaches_only_its_queue_bus_ledger_and_log_group(template: dict[str, Any]) -> None:
    statements = role_statements(template, "RouterFunction")
    assert set(statements) == {
        "ConsumeErrorQueue",
        "PublishErrorEvents",
        "KeepThePublishLedger",
        "WriteOwnLogs",
        "WriteTraces",
    }
    assert statements["ConsumeErrorQueue"]["Resource"] == {"Fn::GetAtt": ["ErrorQueue", "Arn"]}
    assert statements["PublishErrorEvents"]["Action"] == "events:PutEvents"
    assert statements["PublishErrorEvents"]["Resource"] == {"Fn::GetAtt": ["ErrorEventBus", "Arn"]}
    assert statements["KeepThePublishLedger"]["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert statements["WriteOwnLogs"]["Resource"] == {"Fn::GetAtt": ["RouterLogGroup", "Arn"]}


def test_flagger_role_reaches_only_its_table_destination_and_log_group(template: dict[str, Any]) -> None:
    statements = role_statements(template, "FlaggerFunction")
    assert set(statements) == {"KeepNumberFlags", "DeadLetterFailedEvents", "WriteOwnLogs", "WriteTraces"}
    assert statements["KeepNumberFlags"]["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert statements["KeepNumberFlags"]["Resource"] == {"Fn::GetAtt": ["NumberFlagsTable", "Arn"]}
    # The flagger consumes no queue: it may only send its failed events to its own on-failure destination.
    destination = template["Resources"]["FlaggerFunction"]["Properties"]["EventInvokeConfig"][
        "DestinationConfig"
    ]["OnFailure"]["Destination"]
    assert statements["DeadLetterFailedEvents"]["Action"] == "sqs:SendMessage"
    assert statements["DeadLetterFailedEvents"]["Resource"] == destination
    assert statements["WriteOwnLogs"]["Resource"] == {"Fn::GetAtt": ["FlaggerLogGroup", "Arn"]}


def test_every_resource_has_a_comment_saying_why() -> None:
    lines = TEMPLATE_PATH.read_text(encoding="utf-8").splitlines()
    start = lines.index("Resources:")
    end = lines.index("Outputs:")
    for number in range(start + 1, end):
        if re.fullmatch(r"  [A-Za-z0-9]+:", lines[number]):
            assert lines[number - 1].startswith("  # "), f"{lines[number].strip()} has no comment"


def test_outputs_the_cli_and_runner_look_for(template: dict[str, Any]) -> None:
    expected = {
        "ErrorEventBusName",
        "ErrorEventBusArn",
        "AlertsTopicArn",
        "NumberFlagsTableName",
        "IdempotencyTableName",
        "ErrorQueueUrl",
        "ErrorQueueArn",
        "ErrorDeadLetterQueueUrl",
        "ErrorDeadLetterQueueArn",
        "ErrorTargetsDeadLetterQueueUrl",
        "ErrorTargetsDeadLetterQueueArn",
        "FlaggerDeadLetterQueueUrl",
        "FlaggerDeadLetterQueueArn",
        "RouterFunctionName",
        "FlaggerFunctionName",
    }
    assert expected <= set(template["Outputs"])


def test_any_alarm_of_this_account_may_publish_to_the_alerts_topic(template: dict[str, Any]) -> None:
    # So alarms of other stacks can use AlertsTopicArn; KMS and SNS see the alarm's ARN and account.
    alarm_arn = {"Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"}
    topic_statements = template["Resources"]["AlertsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [alarms] = [s for s in topic_statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert alarms["Condition"]["ArnLike"]["aws:SourceArn"] == alarm_arn
    key_statements = template["Resources"]["AlertsKey"]["Properties"]["KeyPolicy"]["Statement"]
    [key_grant] = [s for s in key_statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert key_grant["Condition"]["ArnLike"]["aws:SourceArn"] == alarm_arn
