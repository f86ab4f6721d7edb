"""aws_stacks/StatusCallbackHandler/template.yaml: lint-clean, and the properties the design relies on."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from aws_emulator.templates import load_template
from tests.support.api_gateway import API_YAML, REPO_ROOT

pytestmark = pytest.mark.templates

TEMPLATE_PATH = REPO_ROOT / "aws_stacks" / "StatusCallbackHandler" / "template.yaml"
FIXED_NAME_PROPERTIES = {
    "QueueName",
    "TopicName",
    "FunctionName",
    "RoleName",
    "TableName",
    "BucketName",
    "LogGroupName",
    "Name",
    "LayerName",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_is_clean_with_api_yaml_included(template):
    # CloudFormation runs AWS::Include before the SAM transform; lint what it will actually see.
    included = json.loads(json.dumps(template))
    included["Resources"]["CallbackApi"]["Properties"]["DefinitionBody"] = yaml.safe_load(
        API_YAML.read_text(encoding="utf-8")
    )
    matches = lint(json.dumps(included), config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def test_ingest_queue_redrives_to_a_dead_letter_queue(template):
    queue = template["Resources"]["IngestQueue"]["Properties"]
    dlq = template["Resources"]["IngestDeadLetterQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 5
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    # A dead-lettered message keeps its first enqueue time, so the DLQ must keep messages longer.
    assert queue["MessageRetentionPeriod"] < dlq["MessageRetentionPeriod"]


def test_every_queue_and_the_topic_are_encrypted(template):
    for queue in resources_of_type(template, "AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    [topic] = resources_of_type(template, "AWS::SNS::Topic").values()
    assert topic["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"


def test_validator_reports_batch_item_failures_with_bounded_batches(template):
    function = template["Resources"]["ValidatorFunction"]["Properties"]
    event = function["Events"]["IngestQueue"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["BatchSize"] == {"Ref": "BatchSize"}
    assert event["Properties"]["MaximumBatchingWindowInSeconds"] == {"Ref": "MaximumBatchingWindowInSeconds"}
    # Up to 100 callbacks share an invocation's fixed costs; a one-second window keeps ingest fast,
    # and batches above 10 need a window of at least one second
    batch_size = template["Parameters"]["BatchSize"]
    assert (batch_size["Default"], batch_size["MaxValue"]) == (100, 100)
    window = template["Parameters"]["MaximumBatchingWindowInSeconds"]
    assert window["Default"] == window["MinValue"] == 1


def test_visibility_timeout_covers_six_function_timeouts_plus_the_batching_window(template):
    timeout = template["Resources"]["ValidatorFunction"]["Properties"]["Timeout"]
    visibility = template["Resources"]["IngestQueue"]["Properties"]["VisibilityTimeout"]
    window = template["Parameters"]["MaximumBatchingWindowInSeconds"]["MaxValue"]
    assert visibility >= 6 * timeout + window


def test_validator_runs_python313_on_arm64_with_the_shared_layer(template):
    function = template["Resources"]["ValidatorFunction"]["Properties"]
    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    assert function["Handler"] == "validator_handler.handler"
    assert function["Layers"] == [{"Ref": "SharedLayer"}]
    layer = template["Resources"]["SharedLayer"]
    assert layer["Properties"]["ContentUri"] == "../../layers/shared"
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def test_function_logs_to_its_own_log_group_with_retention(template):
    function = template["Resources"]["ValidatorFunction"]["Properties"]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "ValidatorLogGroup"}
    for group in resources_of_type(template, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


def test_no_fixed_resource_names(template):
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        # A name derived from the stack's own name is not fixed: two environments never collide.
        fixed = {
            key
            for key in FIXED_NAME_PROPERTIES & set(properties)
            if "${AWS::StackName}" not in json.dumps(properties[key])
        }
        assert not fixed, f"{name} sets {fixed}"
    for output in template["Outputs"].values():
        if "Export" in output:
            assert "${AWS::StackName}" in output["Export"]["Name"]["Fn::Sub"]


def test_exports_for_the_consumer_stacks(template):
    exports = {o["Export"]["Name"]["Fn::Sub"] for o in template["Outputs"].values() if "Export" in o}
    assert exports == {"${AWS::StackName}-TopicArn", "${AWS::StackName}-TopicName"}


def test_outputs_follow_the_naming_convention(template):
    assert set(template["Outputs"]) == {
        "ApiBaseUrl",
        "CallbackUrl",
        "CallbackWithParamsUrl",
        "IngestQueueUrl",
        "IngestQueueArn",
        "IngestDeadLetterQueueUrl",
        "IngestDeadLetterQueueArn",
        "TopicArn",
        "TopicName",
        "ValidatorFunctionName",
        "AuthTokenSecretName",
        "ExecuteApiDomain",
        "CallbackRoutes",
        "PublicBaseUrl",
        "RejectedBucketName",
        "RejectedPrefix",
        "ValidatorLogGroupName",
        "ApiAccessLogGroupName",
    }


def test_secret_is_read_at_run_time_never_put_in_the_environment(template):
    variables = template["Resources"]["ValidatorFunction"]["Properties"]["Environment"]["Variables"]
    assert set(variables) == {
        "AUTH_TOKEN_SECRET_NAME",
        "PUBLIC_BASE_URL",
        "API_DOMAIN",
        "CALLBACK_ROUTES",
        "TOPIC_ARN",
        "REJECTED_BUCKET",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
    assert variables["AUTH_TOKEN_SECRET_NAME"] == {"Ref": "AuthTokenSecretName"}
    assert "resolve:secretsmanager" not in TEMPLATE_PATH.read_text(encoding="utf-8")
    assert template["Parameters"]["AuthTokenSecretName"]["Default"] == "TwilioStatusCallbackHandler"


def test_iam_is_least_privilege(template):
    function = template["Resources"]["ValidatorFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["ValidatorRole", "Arn"]}
    assert "Policies" not in function
    [policy] = template["Resources"]["ValidatorRole"]["Properties"]["Policies"]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_sid) == {
        "ConsumeIngestQueue",
        "ReadAuthTokens",
        "PublishRecords",
        "EncryptRecordsForTheTopic",
        "KeepRejectedRequests",
        "WriteOwnLogs",
        "WriteTraces",
    }
    assert by_sid["ConsumeIngestQueue"]["Resource"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    # The rejected store: create objects under its prefix, nothing else (no read, no delete).
    assert by_sid["KeepRejectedRequests"]["Action"] == "s3:PutObject"
    assert by_sid["KeepRejectedRequests"]["Resource"] == {
        "Fn::Sub": "${RejectedRequestsBucket.Arn}/rejected/*"
    }
    assert by_sid["WriteOwnLogs"]["Resource"] == {"Fn::GetAtt": ["ValidatorLogGroup", "Arn"]}
    assert by_sid["ReadAuthTokens"]["Action"] == "secretsmanager:GetSecretValue"
    assert by_sid["ReadAuthTokens"]["Resource"]["Fn::Sub"].endswith(":secret:${AuthTokenSecretName}-??????")
    assert by_sid["PublishRecords"] == {
        "Sid": "PublishRecords",
        "Effect": "Allow",
        "Action": "sns:Publish",
        "Resource": {"Ref": "CallbackTopic"},
    }
    # What SNS asks KMS for on a publisher's behalf; no wildcard action families.
    assert by_sid["EncryptRecordsForTheTopic"]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert by_sid["EncryptRecordsForTheTopic"]["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "sns.${AWS::Region}.amazonaws.com"
    }
    api_role = template["Resources"]["ApiToIngestQueueRole"]["Properties"]
    [policy] = api_role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["IngestQueue", "Arn"]}}
    ]
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert not re.search(r"Action:\s*['\"]?\*", text)
    assert not re.search(r"-\s*['\"]?[a-z0-9]+:\*['\"]?\s*$", text, re.MULTILINE)


def test_http_api_is_included_from_api_yaml_with_throttling_and_access_logs(template):
    api = template["Resources"]["CallbackApi"]["Properties"]
    assert api["DefinitionBody"] == {
        "Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "api.yaml"}}
    }
    assert api["StageName"] == "$default"
    assert api["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }
    assert api["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert "CorsConfiguration" not in api
    access_log = json.loads(api["AccessLogSettings"]["Format"])
    assert not any("header" in value or "querystring" in value for value in access_log.values())


def test_alarms_notify_the_alarm_topic_only_when_one_is_given(template):
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert set(alarms) == {"IngestDeadLetterQueueAlarm", "SignatureRejectionsAlarm", "ValidatorErrorsAlarm"}
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""


def test_alarm_metric_names_are_the_ones_the_validator_emits(template):
    import validator_handler

    from status_callbacks.domain.validation import RejectionReason

    emitted = {
        validator_handler.PUBLISH_FAILURES_METRIC,
        validator_handler.TOKENS_UNAVAILABLE_METRIC,
        validator_handler.VALIDATION_ERRORS_METRIC,
        validator_handler.NOT_KEPT_METRIC,
    } | {validator_handler.rejection_metric(reason) for reason in RejectionReason}
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")

    def custom_metrics(alarm: str) -> set[str]:
        return {
            query["MetricStat"]["Metric"]["MetricName"]
            for query in alarms[alarm]["Properties"]["Metrics"]
            if "MetricStat" in query and query["MetricStat"]["Metric"]["Namespace"] == "TwilioStatusCallbacks"
        }

    assert custom_metrics("SignatureRejectionsAlarm") == {
        validator_handler.rejection_metric(RejectionReason.INVALID_SIGNATURE),
        validator_handler.rejection_metric(RejectionReason.MISSING_SIGNATURE),
        validator_handler.rejection_metric(RejectionReason.UNKNOWN_DESTINATION),
        validator_handler.rejection_metric(RejectionReason.PUBLIC_BASE_URL_MISMATCH),
    }
    assert custom_metrics("ValidatorErrorsAlarm") == {
        validator_handler.PUBLISH_FAILURES_METRIC,
        validator_handler.TOKENS_UNAVAILABLE_METRIC,
        validator_handler.VALIDATION_ERRORS_METRIC,
        validator_handler.NOT_KEPT_METRIC,
    }
    assert custom_metrics("ValidatorErrorsAlarm") <= emitted
    variables = template["Resources"]["ValidatorFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "TwilioStatusCallbacks"
    # Alarms select the service dimension Powertools adds: the stack name.
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}


def test_every_resource_has_a_why_comment_above_it():
    lines = TEMPLATE_PATH.read_text(encoding="utf-8").splitlines()
    start = lines.index("Resources:")
    end = lines.index("Outputs:")
    for index in range(start + 1, end):
        if re.match(r"^  [A-Za-z0-9]+:\s*$", lines[index]):
            assert lines[index - 1].startswith("  # "), f"no comment above {lines[index].strip()}"


def test_validator_admits_only_this_api_domain_and_the_routes_api_yaml_declares(template):
    # Given the validator's environment and the routes api.yaml declares
    variables = template["Resources"]["ValidatorFunction"]["Properties"]["Environment"]["Variables"]
    api = load_template(TEMPLATE_PATH.parent / "api.yaml")
    declared = {f"{method.upper()} {path}" for path, item in api["paths"].items() for method in item}
    # Then its CALLBACK_ROUTES (and the CallbackRoutes output replay reads) are exactly those route keys
    lookup = variables["CALLBACK_ROUTES"]["Fn::FindInMap"]
    assert template["Outputs"]["CallbackRoutes"]["Value"] == {"Fn::FindInMap": lookup}
    routes = template["Mappings"][lookup[0]][lookup[1]][lookup[2]]
    assert set(routes.split(",")) == declared == {"POST /twilio", "POST /twilio-params"}
    assert variables["API_DOMAIN"] == {
        "Fn::Sub": "${CallbackApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    }
