"""A deployed pipeline inside moto, as the CLI finds one: four stacks and what their outputs name.

Queues (with their redrive policies) and DynamoDB tables are created from the
real templates' definitions, so the CLI is tested against the queue names and
key layouts the stacks actually declare. Each stack is then registered in
moto's CloudFormation as a placeholder resource plus the outputs a deployment
resolves, which is all the CLI reads.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from aws_emulator.templates import load_template
from status_callbacks.domain.rejected import RejectedRequest, plan_rejected_objects, string_attributes
from status_callbacks.domain.tokens import AuthTokens
from status_callbacks.domain.validation import Destination, Rejection, validate_callback
from tests.support.api_gateway import forward
from tests.support.signing import TwilioRequest
from twilio_callbacks_cli.discovery import DEFAULT_STACK_NAMES

REPO_ROOT = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO_ROOT / "aws_stacks"
REGION = "us-east-1"
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
API_DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
API_BASE_URL = f"https://{API_DOMAIN}"
CALLBACK_ROUTES = "POST /twilio,POST /twilio-params"
NUMBER_FLAGS_TABLE = "NumberFlagsTable"

# Used when the error router's template does not declare its flags table (yet).
_FALLBACK_NUMBER_FLAGS_TABLE = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [
        {"AttributeName": "phone_number", "AttributeType": "S"},
        {"AttributeName": "error_code", "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "phone_number", "KeyType": "HASH"},
        {"AttributeName": "error_code", "KeyType": "RANGE"},
    ],
}
_TABLE_PROPERTIES = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


@functools.cache
def template_of(stack_folder: str) -> dict[str, Any]:
    """A stack's template (parsed once per session; read only), or an empty one while it is not written."""
    path = STACKS_DIR / stack_folder / "template.yaml"
    return load_template(path) if path.exists() else {"Resources": {}, "Outputs": {}}


def table_definition(template: Mapping[str, Any], logical_id: str) -> dict[str, Any] | None:
    """CreateTable arguments for a template's table (keys, indexes, billing)."""
    resource = template.get("Resources", {}).get(logical_id)
    if not resource or resource.get("Type") != "AWS::DynamoDB::Table":
        return None
    properties = resource["Properties"]
    return {name: properties[name] for name in _TABLE_PROPERTIES if name in properties}


@dataclass
class FakeStack:
    """One stack's resources in moto and the outputs a deployment would show."""

    name: str
    outputs: dict[str, str] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)


def _parameter_value(template: Mapping[str, Any], value: Any) -> Any:
    # A `!Ref Parameter` deploys as the parameter's default.
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def _create_queues(sqs: Any, stack: FakeStack, template: Mapping[str, Any]) -> None:
    resources = template.get("Resources", {})
    queues = {lid: res for lid, res in resources.items() if res.get("Type") == "AWS::SQS::Queue"}
    arns: dict[str, str] = {}
    # Dead-letter queues first: a redrive policy names its DLQ's ARN.
    for logical_id in sorted(queues, key=lambda lid: "RedrivePolicy" in queues[lid].get("Properties", {})):
        attributes: dict[str, str] = {}
        redrive = queues[logical_id].get("Properties", {}).get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": arns[target],
                    "maxReceiveCount": int(_parameter_value(template, redrive["maxReceiveCount"])),
                }
            )
        url = sqs.create_queue(QueueName=f"{stack.name}-{logical_id}", Attributes=attributes)["QueueUrl"]
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        stack.physical[logical_id] = url
        stack.physical[f"{logical_id}.Arn"] = arns[logical_id]
    # Outputs that point at a queue resolve as CloudFormation would.
    for key, output in template.get("Outputs", {}).items():
        value = output.get("Value")
        if isinstance(value, dict) and value.get("Ref") in queues:
            stack.outputs[key] = stack.physical[value["Ref"]]
        elif isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if logical_id in queues and attribute == "Arn":
                stack.outputs[key] = stack.physical[f"{logical_id}.Arn"]


def register_stack(cloudformation: Any, stack: FakeStack) -> None:
    """Make CloudFormation describe the stack with these outputs."""
    body = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in stack.outputs.items()},
    }
    with warnings.catch_warnings():
        # moto creates nothing for the placeholder and says so; that is the point of it.
        warnings.simplefilter("ignore", UserWarning)
        cloudformation.create_stack(StackName=stack.name, TemplateBody=json.dumps(body))


@dataclass
class FakePipeline:
    """The four stacks, their resources and handles to the moto clients."""

    stacks: dict[str, FakeStack]
    clients: dict[str, Any]

    def output(self, key: str) -> str:
        for stack in self.stacks.values():
            if key in stack.outputs:
                return stack.outputs[key]
        raise KeyError(key)

    @property
    def sqs(self) -> Any:
        return self.clients["sqs"]

    @property
    def dynamodb(self) -> Any:
        return self.clients["dynamodb"]

    @property
    def s3(self) -> Any:
        return self.clients["s3"]


def build_pipeline(roles: tuple[str, ...] = tuple(DEFAULT_STACK_NAMES), prefix: str = "") -> FakePipeline:
    """Create the resources of the given stacks in moto and register the stacks."""
    clients = {
        name: boto3.client(name, region_name=REGION)
        for name in ("sqs", "dynamodb", "s3", "sns", "events", "secretsmanager", "cloudformation")
    }
    stacks: dict[str, FakeStack] = {}
    for role in roles:
        folder = DEFAULT_STACK_NAMES[role]
        stack = FakeStack(f"{prefix}{folder}")
        template = template_of(folder)
        _create_queues(clients["sqs"], stack, template)
        if role == "ingest":
            topic = clients["sns"].create_topic(Name=f"{stack.name}-CallbackTopic")["TopicArn"]
            secret = f"{stack.name}-TwilioStatusCallbackHandler"
            clients["secretsmanager"].create_secret(
                Name=secret, SecretString=json.dumps({"AUTH_TOKEN": AUTH_TOKEN})
            )
            rejected = f"{stack.name.lower()}-rejectedrequestsbucket"
            clients["s3"].create_bucket(Bucket=rejected)
            stack.outputs.update(
                ApiBaseUrl=API_BASE_URL,
                CallbackUrl=f"{API_BASE_URL}/twilio",
                CallbackWithParamsUrl=f"{API_BASE_URL}/twilio-params",
                TopicArn=topic,
                AuthTokenSecretName=secret,
                ExecuteApiDomain=API_DOMAIN,
                CallbackRoutes=CALLBACK_ROUTES,
                RejectedBucketName=rejected,
                RejectedPrefix="rejected/",
            )
        elif role == "s3":
            bucket = f"{stack.name.lower()}-archivebucket"
            clients["s3"].create_bucket(Bucket=bucket)
            stack.outputs.update(
                ArchiveBucketName=bucket,
                ArchivePrefix="callbacks/",
                GlueDatabaseName=f"{stack.name.lower()}_archive",
                GlueTableName="callbacks",
                AthenaWorkGroupName=f"{stack.name}-analysts",
            )
        elif role == "dynamo":
            definition = table_definition(template, "StatusTable")
            assert definition is not None, "the Dynamo stack's template declares StatusTable"
            clients["dynamodb"].create_table(TableName=f"{stack.name}-StatusTable", **definition)
            stack.outputs["StatusTableName"] = f"{stack.name}-StatusTable"
        else:
            bus = clients["events"].create_event_bus(Name=f"{stack.name}-ErrorBus")["EventBusArn"]
            alerts = clients["sns"].create_topic(Name=f"{stack.name}-Alerts")["TopicArn"]
            definition = table_definition(template, NUMBER_FLAGS_TABLE) or _FALLBACK_NUMBER_FLAGS_TABLE
            clients["dynamodb"].create_table(TableName=f"{stack.name}-{NUMBER_FLAGS_TABLE}", **definition)
            stack.outputs.update(
                ErrorEventBusName=f"{stack.name}-ErrorBus",
                ErrorEventBusArn=bus,
                AlertsTopicArn=alerts,
                NumberFlagsTableName=f"{stack.name}-{NUMBER_FLAGS_TABLE}",
            )
        register_stack(clients["cloudformation"], stack)
        stacks[role] = stack
    return FakePipeline(stacks, clients)


# --- the rejected-request store, as the validator fills it ---------------------------------------

WRONG_AUTH_TOKEN = "fedcba9876543210fedcba9876543210"


def rejected_by_validator(
    request: TwilioRequest,
    message_id: str,
    received_at: int,
    token: str = WRONG_AUTH_TOKEN,
    public_base_url: str | None = None,
) -> RejectedRequest:
    """The request the validator keeps for this HTTP request when it decides with ``token``.

    The request goes through api.yaml's mapping as API Gateway forwards it, then
    through the layer's own validation.
    """
    message = forward(request)
    result = validate_callback(
        message.body,
        message.attributes,
        AuthTokens(token),
        received_at,
        public_base_url,
        destination=Destination.of(API_DOMAIN, CALLBACK_ROUTES),
    )
    assert isinstance(result, Rejection), f"the validator accepts this request: {result}"
    return RejectedRequest(
        message_id=message_id,
        received_at=received_at,
        reason=result.reason,
        body=message.body,
        attributes=string_attributes(message.attributes),
        detail=result.detail,
        source_ip=result.source_ip,
    )


def keep_rejected(pipeline: FakePipeline, requests: list[RejectedRequest]) -> list[str]:
    """Write requests to the store as one validator invocation does; the keys written."""
    keys = []
    for rejected_object in plan_rejected_objects(requests):
        pipeline.s3.put_object(
            Bucket=pipeline.output("RejectedBucketName"), Key=rejected_object.key, Body=rejected_object.body()
        )
        keys.append(rejected_object.key)
    return keys


def rejected_keys(pipeline: FakePipeline) -> list[str]:
    """Every object in the rejected-request store."""
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.output("RejectedBucketName"), Prefix="rejected/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def replace_outputs(pipeline: FakePipeline, role: str, **outputs: str | None) -> None:
    """Redeploy one stack with some outputs changed (None removes one)."""
    stack = pipeline.stacks[role]
    pipeline.clients["cloudformation"].delete_stack(StackName=stack.name)
    for key, value in outputs.items():
        if value is None:
            stack.outputs.pop(key, None)
        else:
            stack.outputs[key] = value
    register_stack(pipeline.clients["cloudformation"], stack)
