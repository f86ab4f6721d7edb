"""Resources are created from the templates themselves, so a template change shows up locally."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from aws_emulator.aws import Clients
from aws_emulator.functions import FunctionHost
from aws_emulator.pollers import AsyncSourcePoller
from aws_emulator.provision import SKIPPED, Deployment, Provisioner, local_policy, support_of
from aws_emulator.templates import TemplateError, load_stack, stack_order

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"

PRODUCER = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Flavour: {Type: String, Default: plain}
Conditions:
  IsFancy: !Equals [!Ref Flavour, fancy]
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      KmsMasterKeyId: alias/aws/sns
  FancyQueue:
    Type: AWS::SQS::Queue
    Condition: IsFancy
Outputs:
  TopicArn:
    Value: !Ref Topic
    Export: {Name: !Sub "${AWS::StackName}-TopicArn"}
"""

CONSUMER = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  ProducerStack: {Type: String, Default: Producer}
  BatchSize: {Type: Number, Default: 25}
Resources:
  DeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties: {SqsManagedSseEnabled: true}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      SqsManagedSseEnabled: true
      VisibilityTimeout: 180
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetterQueue.Arn
        maxReceiveCount: 3
  WorkQueuePolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref WorkQueue]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: sns.amazonaws.com}
            Action: sqs:SendMessage
            Resource: !GetAtt WorkQueue.Arn
          - Effect: Deny
            Principal: "*"
            Action: sqs:*
            Resource: !GetAtt WorkQueue.Arn
            Condition: {Bool: {aws:SecureTransport: "false"}}
  Subscription:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !ImportValue {"Fn::Sub": "${ProducerStack}-TopicArn"}
      Protocol: sqs
      Endpoint: !GetAtt WorkQueue.Arn
      RawMessageDelivery: true
      FilterPolicyScope: MessageAttributes
      FilterPolicy: {ErrorCode: [{exists: true}]}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: sid, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: shard, AttributeType: S}
      KeySchema:
        - {AttributeName: sid, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      GlobalSecondaryIndexes:
        - IndexName: ByShard
          KeySchema: [{AttributeName: shard, KeyType: HASH}]
          Projection: {ProjectionType: KEYS_ONLY}
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
      SSESpecification: {SSEEnabled: true}
  Bus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub "${AWS::StackName}-bus"
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Handler: worker_handler.handler
      Runtime: python3.13
      Environment:
        Variables:
          TABLE_NAME: !Ref Table
          BUS_ARN: !GetAtt Bus.Arn
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: !Ref BatchSize
            MaximumBatchingWindowInSeconds: 30
            FunctionResponseTypes: [ReportBatchItemFailures]
  FlagRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
      EventPattern: {source: [custom.test], detail: {Actions: [flag]}}
      Targets:
        - Id: Worker
          Arn: !GetAtt Worker.Arn
          DeadLetterConfig: {Arn: !GetAtt DeadLetterQueue.Arn}
        - Id: Archive
          Arn: !GetAtt DeadLetterQueue.Arn
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Version: "2012-10-17", Statement: []}
Outputs:
  WorkQueueUrl: {Value: !Ref WorkQueue}
  TableName: {Value: !Ref Table}
  RoleArn: {Value: !GetAtt Role.Arn}
  BusArn: {Value: !GetAtt Bus.Arn}
"""


NEW_RULE = """
  # Carrier filtering (30007) goes to the flagger too.
  CarrierFilteringRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref ErrorEventBus
      EventPattern:
        detail:
          ErrorCode: ["30007"]
      Targets:
        - Id: Flagger
          Arn: !GetAtt FlaggerFunction.Arn
"""


def write_stack(root: Path, name: str, template: str) -> Path:
    folder = root / name
    (folder / "worker").mkdir(parents=True)
    (folder / "worker" / "worker_handler.py").write_text("def handler(event, context):\n    return None\n")
    (folder / "template.yaml").write_text(template, encoding="utf-8")
    return folder


def deploy(clients: Clients, *folders: Path) -> Deployment:
    provisioner = Provisioner(
        clients, region=REGION, account_id="123456789012", api_base_url="http://127.0.0.1:3000"
    )
    return provisioner.deploy([load_stack(folder, REGION) for folder in folders])


@pytest.fixture
def deployment(clients: Clients, tmp_path: Path) -> Deployment:
    # Consumer first on purpose: its import of the producer's export decides the order
    return deploy(
        clients, write_stack(tmp_path, "Consumer", CONSUMER), write_stack(tmp_path, "Producer", PRODUCER)
    )


def attributes_of(clients: Clients, url: str) -> dict[str, str]:
    return dict(clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def test_stacks_are_provisioned_after_the_stacks_they_import_from(deployment: Deployment) -> None:
    assert [stack.name for stack in deployment.stacks] == ["Producer", "Consumer"]
    assert deployment.exports == {"Producer-TopicArn": deployment.stack("Producer").outputs["TopicArn"][0]}


def test_queues_get_the_template_attributes(deployment: Deployment, clients: Clients) -> None:
    url = deployment.stack("Consumer").outputs["WorkQueueUrl"][0]

    attributes = attributes_of(clients, url)

    assert attributes["VisibilityTimeout"] == "180"
    assert attributes["SqsManagedSseEnabled"] == "true"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 3
    assert redrive["deadLetterTargetArn"].endswith(
        ":Consumer-DeadLetterQueue-" + redrive["deadLetterTargetArn"][-12:]
    )
    # The TLS-only deny is dropped (the local endpoint is http); the rest of the policy is kept
    statements = json.loads(attributes["Policy"])["Statement"]
    assert [statement["Effect"] for statement in statements] == ["Allow"]


def test_subscriptions_keep_raw_delivery_and_filter_policy(deployment: Deployment, clients: Clients) -> None:
    topic = deployment.exports["Producer-TopicArn"]
    (subscription,) = clients.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]

    attributes = clients.sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])[
        "Attributes"
    ]

    assert attributes["RawMessageDelivery"] == "true"
    assert attributes["FilterPolicyScope"] == "MessageAttributes"
    assert json.loads(attributes["FilterPolicy"]) == {"ErrorCode": [{"exists": True}]}


def test_tables_get_keys_indexes_and_ttl(deployment: Deployment, clients: Clients) -> None:
    name = deployment.stack("Consumer").outputs["TableName"][0]

    table = clients.dynamodb.describe_table(TableName=name)["Table"]
    ttl = clients.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]

    assert [key["AttributeName"] for key in table["KeySchema"]] == ["sid", "sk"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["ByShard"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_functions_and_event_sources_run_in_process(deployment: Deployment) -> None:
    (function,) = deployment.functions
    (mapping,) = deployment.event_sources

    assert function.code_folder is not None and function.code_folder.name == "worker"
    assert function.handler == "worker_handler.handler"
    assert function.environment["TABLE_NAME"] == deployment.stack("Consumer").outputs["TableName"][0]
    assert function.environment["BUS_ARN"] == deployment.stack("Consumer").outputs["BusArn"][0]
    assert deployment.function(mapping.function) == function
    assert (mapping.batch_size, mapping.batching_window, mapping.report_batch_item_failures) == (
        25,
        30.0,
        True,
    )


def test_rule_targets_moto_cannot_deliver_get_an_internal_queue(
    deployment: Deployment, clients: Clients
) -> None:
    bus = deployment.stack("Consumer").outputs["BusArn"][0].rsplit("/", 1)[-1]
    (rule,) = clients.events.list_rules(EventBusName=bus)["Rules"]

    targets = {
        target["Id"]: target["Arn"]
        for target in clients.events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
    }

    assert json.loads(rule["EventPattern"]) == {"source": ["custom.test"], "detail": {"Actions": ["flag"]}}
    # The queue target is moto's to deliver; the function's place is taken by an internal queue
    assert targets["Archive"].rsplit(":", 1)[-1].startswith("Consumer-DeadLetterQueue-")
    assert targets["Worker"].rsplit(":", 1)[-1].startswith("local-runner-")
    (source,) = deployment.async_sources
    assert (source.kind, source.target_id, source.target_arn) == (
        "eventbridge",
        "Worker",
        deployment.functions[0].arn,
    )
    assert source.dead_letter_arn and source.dead_letter_arn.endswith(targets["Archive"].rsplit(":", 1)[-1])


def test_false_conditions_skip_resources_and_skipped_types_still_resolve(
    deployment: Deployment, clients: Clients
) -> None:
    assert "FancyQueue" not in deployment.stack("Producer").resources
    assert (
        deployment.stack("Consumer")
        .outputs["RoleArn"][0]
        .startswith("arn:aws:iam::123456789012:role/Consumer-Role-")
    )
    assert deployment.stack("Consumer").resources["Role"].handling == SKIPPED
    assert support_of("AWS::Made::Up").handling == SKIPPED


def test_local_policy_drops_only_tls_denies() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Effect": "Deny", "Action": "s3:DeleteObject"},
        ],
    }

    assert json.loads(local_policy(policy))["Statement"] == [{"Effect": "Deny", "Action": "s3:DeleteObject"}]


def test_a_new_rule_in_the_error_template_shows_up_without_runner_changes(
    clients: Clients, tmp_path: Path
) -> None:
    # Given copies of the real ingest and error stacks, the error stack gaining a rule for 30007
    for name in ("StatusCallbackHandler", "CheckForStatusCallbackErrors"):
        shutil.copytree(REPO / "aws_stacks" / name, tmp_path / name)
    template_path = tmp_path / "CheckForStatusCallbackErrors" / "template.yaml"
    text = template_path.read_text(encoding="utf-8")
    template_path.write_text(text.replace("\nResources:\n", "\nResources:" + NEW_RULE, 1), encoding="utf-8")

    # When both are provisioned
    deployment = deploy(
        clients, tmp_path / "StatusCallbackHandler", tmp_path / "CheckForStatusCallbackErrors"
    )

    # Then moto has the new rule with its pattern, and the flagger is its (runner-delivered) target
    bus = deployment.stack("CheckForStatusCallbackErrors").outputs["ErrorEventBusName"][0]
    patterns = {
        json.dumps(json.loads(rule["EventPattern"]), sort_keys=True)
        for rule in clients.events.list_rules(EventBusName=bus)["Rules"]
    }
    assert json.dumps({"detail": {"ErrorCode": ["30007"]}}, sort_keys=True) in patterns
    assert {source.logical_id for source in deployment.async_sources} >= {
        "CarrierFilteringRule",
        "FlagNumberRule",
    }


STACKS = (
    "StatusCallbackHandler",
    "SaveStatusCallbackToS3",
    "SaveStatusCallbackToDynamo",
    "CheckForStatusCallbackErrors",
)


def tracing_of(deployment: Deployment) -> dict[str, set[str]]:
    modes: dict[str, set[str]] = {}
    for function in deployment.functions:
        modes.setdefault(function.stack, set()).add(function.tracing)
    return modes


def test_the_real_stacks_deploy_every_function_with_memory_and_the_tracing_parameter_default(
    clients: Clients,
) -> None:
    # Given the four stacks as committed, deployed with their parameter defaults
    deployment = deploy(clients, *(REPO / "aws_stacks" / name for name in STACKS))

    # Then every function has a tracing mode and memory, and X-Ray is off (Tracing defaults to PassThrough)
    assert {function.stack for function in deployment.functions} == set(STACKS)
    assert all(function.memory_size >= 128 for function in deployment.functions)
    assert all(function.tracing in ("Active", "PassThrough") for function in deployment.functions)
    assert {mode for modes in tracing_of(deployment).values() for mode in modes} == {"PassThrough"}


def test_a_tracing_override_reaches_every_function(clients: Clients) -> None:
    # Given the four stacks deployed with Tracing=Active
    provisioner = Provisioner(
        clients,
        region=REGION,
        account_id="123456789012",
        api_base_url="http://127.0.0.1:3000",
        parameter_overrides={"Tracing": "Active"},
    )
    deployment = provisioner.deploy([load_stack(REPO / "aws_stacks" / name, REGION) for name in STACKS])

    # Then an override without a stack prefix reaches every stack's functions
    assert {mode for modes in tracing_of(deployment).values() for mode in modes} == {"Active"}


def test_stack_order_rejects_import_cycles(tmp_path: Path) -> None:
    first = load_stack(write_stack(tmp_path, "Producer", PRODUCER), REGION)
    second = load_stack(write_stack(tmp_path, "Consumer", CONSUMER), REGION)

    with pytest.raises(ValueError, match="cycle"):
        stack_order(
            [first, second], {"Producer": {"a"}, "Consumer": {"b"}}, {"Producer": {"b"}, "Consumer": {"a"}}
        )


SNS_CONSUMER = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  ProbeFile: {Type: String}
Resources:
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Handler: sns_probe_handler.handler
      Runtime: python3.13
      Environment:
        Variables:
          PROBE_FILE: !Ref ProbeFile
      Events:
        Errors:
          Type: SNS
          Properties:
            Topic: !ImportValue Producer-TopicArn
            FilterPolicy: {ErrorCode: [{exists: true}]}
"""

SNS_PROBE_HANDLER = """
import json
import os


def handler(event, context):
    with open(os.environ["PROBE_FILE"], "a", encoding="utf-8") as probe:
        probe.write(json.dumps(event) + "\\n")
"""


def test_a_direct_sns_subscription_of_a_function_is_delivered_by_the_runner(
    clients: Clients, tmp_path: Path
) -> None:
    # Given a function subscribed straight to a topic, with a filter policy
    consumer = write_stack(tmp_path, "SnsConsumer", SNS_CONSUMER)
    (consumer / "worker" / "sns_probe_handler.py").write_text(SNS_PROBE_HANDLER, encoding="utf-8")
    probe_file = tmp_path / "probe.jsonl"
    provisioner = Provisioner(
        clients,
        region=REGION,
        account_id="123456789012",
        api_base_url="http://127.0.0.1:3000",
        parameter_overrides={"ProbeFile": str(probe_file)},
    )
    deployment = provisioner.deploy(
        [load_stack(write_stack(tmp_path, "Producer", PRODUCER), REGION), load_stack(consumer, REGION)]
    )
    (source,) = deployment.async_sources
    (function,) = deployment.functions
    host = FunctionHost(deployment.functions, {})
    host.load()
    try:
        poller = AsyncSourcePoller(
            source, host, clients=clients, region=REGION, stop=threading.Event(), function=function
        )
        # When one notification carries an ErrorCode and one does not
        topic = deployment.exports["Producer-TopicArn"]
        clients.sns.publish(TopicArn=topic, Message='{"ok": true}')
        clients.sns.publish(
            TopicArn=topic,
            Message='{"error": true}',
            MessageAttributes={"ErrorCode": {"DataType": "String", "StringValue": "30003"}},
        )
        deadline = time.monotonic() + 10
        while not probe_file.exists() and time.monotonic() < deadline:
            poller.poll_once()
    finally:
        host.close()

    # Then the function got only the matching one, in the shape SNS invokes Lambda with
    (event,) = [json.loads(line) for line in probe_file.read_text(encoding="utf-8").splitlines()]
    (record,) = event["Records"]
    assert source.kind == "sns"
    assert record["EventSource"] == "aws:sns"
    assert record["EventSubscriptionArn"] == source.source_arn
    assert record["Sns"]["TopicArn"] == topic
    assert record["Sns"]["Message"] == '{"error": true}'
    assert record["Sns"]["MessageAttributes"]["ErrorCode"]["Value"] == "30003"


def test_log_groups_are_created_with_their_retention_and_functions_name_theirs(clients: Clients) -> None:
    # Given the four stacks deployed
    deployment = deploy(clients, *(REPO / "aws_stacks" / name for name in STACKS))

    # Then every template log group exists in moto with the LogRetentionInDays default
    groups = {
        group["logGroupName"]: group.get("retentionInDays")
        for group in clients.logs.describe_log_groups()["logGroups"]
    }
    ingest = deployment.stack("StatusCallbackHandler")
    assert groups[ingest.outputs["ValidatorLogGroupName"][0]] == 30
    assert groups[ingest.outputs["ApiAccessLogGroupName"][0]] == 30
    # and each function writes to its LoggingConfig group, the API's stage to its access log group
    validator = deployment.function(ingest.outputs["ValidatorFunctionName"][0])
    assert validator is not None
    assert validator.log_group_name == ingest.outputs["ValidatorLogGroupName"][0]
    assert all(function.log_group_name in groups for function in deployment.functions)
    (api,) = deployment.apis
    assert api.access_log is not None
    assert api.access_log.log_group == ingest.outputs["ApiAccessLogGroupName"][0]
    assert "$context.integrationErrorMessage" in api.access_log.format


def deploy_ingest_and_errors(clients: Clients, **overrides: str) -> Deployment:
    provisioner = Provisioner(
        clients,
        region=REGION,
        account_id="123456789012",
        api_base_url="http://127.0.0.1:3000",
        parameter_overrides=overrides,
    )
    names = ("StatusCallbackHandler", "CheckForStatusCallbackErrors")
    return provisioner.deploy([load_stack(REPO / "aws_stacks" / name, REGION) for name in names])


def test_outputs_whose_condition_is_false_stay_absent(clients: Clients) -> None:
    # Given the template defaults: no alerts inbox, no PublicBaseUrl
    deployment = deploy_ingest_and_errors(clients)

    errors = deployment.stack("CheckForStatusCallbackErrors")
    ingest = deployment.stack("StatusCallbackHandler")
    assert "AlertsInboxQueueUrl" not in errors.outputs
    assert "AlertsInboxQueue" not in errors.resources
    assert "PublicBaseUrl" not in ingest.outputs
    assert "AlertsTopicArn" in errors.outputs


def test_the_alerts_inbox_is_a_queue_subscribed_with_the_envelope(clients: Clients) -> None:
    deployment = deploy_ingest_and_errors(clients, AlertsInbox="Enabled")

    errors = deployment.stack("CheckForStatusCallbackErrors")
    inbox_url = errors.outputs["AlertsInboxQueueUrl"][0]
    topic = errors.outputs["AlertsTopicArn"][0]
    subscriptions = clients.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    (inbox,) = [item for item in subscriptions if item["Endpoint"].endswith(inbox_url.rsplit("/", 1)[-1])]
    attributes = clients.sns.get_subscription_attributes(SubscriptionArn=inbox["SubscriptionArn"])[
        "Attributes"
    ]
    assert attributes.get("RawMessageDelivery", "false") == "false"

    # When something publishes to the alerts topic with a subject
    clients.sns.publish(TopicArn=topic, Subject="[info] Twilio error 30003", Message="text")

    # Then the inbox holds the SNS envelope, subject included
    (message,) = clients.sqs.receive_message(QueueUrl=inbox_url, WaitTimeSeconds=5)["Messages"]
    envelope = json.loads(message["Body"])
    assert (envelope["Subject"], envelope["Message"]) == ("[info] Twilio error 30003", "text")


def ingest_provisioner(clients: Clients) -> Provisioner:
    provisioner = Provisioner(
        clients,
        region=REGION,
        account_id="123456789012",
        api_base_url="http://127.0.0.1:3000",
        parameter_overrides={"PublicBaseUrl": "http://127.0.0.1:3000"},
    )
    provisioner.deploy([load_stack(REPO / "aws_stacks" / "StatusCallbackHandler", REGION)])
    return provisioner


def test_an_update_re_resolves_environments_and_outputs_and_keeps_the_data(clients: Clients) -> None:
    # Given the ingest stack with a message waiting in its queue
    provisioner = ingest_provisioner(clients)
    stack = provisioner.deployment.stack("StatusCallbackHandler")
    queue_url = stack.outputs["IngestQueueUrl"][0]
    clients.sqs.send_message(QueueUrl=queue_url, MessageBody="kept")

    # When PublicBaseUrl changes
    changed = provisioner.update("StatusCallbackHandler", {"PublicBaseUrl": "https://hooks.example.com/v1"})

    # Then the validator alone is reconfigured, the outputs follow, and the queue is the same one
    assert [function.logical_id for function in changed] == ["ValidatorFunction"]
    validator = provisioner.deployment.function(stack.outputs["ValidatorFunctionName"][0])
    assert (
        validator is not None and validator.environment["PUBLIC_BASE_URL"] == "https://hooks.example.com/v1"
    )
    assert stack.parameters["PublicBaseUrl"] == "https://hooks.example.com/v1"
    assert stack.outputs["CallbackUrl"][0] == "https://hooks.example.com/v1/twilio"
    assert stack.outputs["PublicBaseUrl"][0] == "https://hooks.example.com/v1"
    assert stack.outputs["IngestQueueUrl"][0] == queue_url
    (message,) = clients.sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert message["Body"] == "kept"


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"BatchSize": "50"}, r"ValidatorFunctionIngestQueue .*BatchSize"),
        ({"LogRetentionInDays": "7"}, r"LogGroup \(AWS::Logs::LogGroup\).*RetentionInDays"),
        ({"PublicBaseUrl": "https://hooks.example.com/"}, "does not match"),
        ({"Nope": "1"}, "declares no parameter"),
    ],
)
def test_an_update_the_runner_cannot_apply_is_refused_before_anything_changes(
    clients: Clients, changes: dict[str, str], refusal: str
) -> None:
    provisioner = ingest_provisioner(clients)
    stack = provisioner.deployment.stack("StatusCallbackHandler")
    before = (dict(stack.parameters), dict(stack.outputs), list(provisioner.deployment.functions))

    with pytest.raises(TemplateError, match=refusal):
        provisioner.update("StatusCallbackHandler", changes)

    assert (stack.parameters, stack.outputs, provisioner.deployment.functions) == before


def test_an_update_that_would_create_a_resource_is_refused(clients: Clients, tmp_path: Path) -> None:
    provisioner = Provisioner(
        clients, region=REGION, account_id="123456789012", api_base_url="http://127.0.0.1:3000"
    )
    provisioner.deploy([load_stack(write_stack(tmp_path, "Producer", PRODUCER), REGION)])

    with pytest.raises(TemplateError, match="Producer/FancyQueue: the update would create it"):
        provisioner.update("Producer", {"Flavour": "fancy"})


def test_a_template_rule_refuses_parameters_before_anything_is_created(clients: Clients) -> None:
    # Given the archive stack with an expiration that is not after the transition (S3 would refuse it)
    provisioner = Provisioner(
        clients,
        region=REGION,
        account_id="123456789012",
        api_base_url="http://127.0.0.1:3000",
        parameter_overrides={"ArchiveTransitionDays": "90", "ArchiveExpirationDays": "60"},
    )
    stack = load_stack(REPO / "aws_stacks" / "SaveStatusCallbackToS3", REGION)

    # Then the deploy is refused with the rule's description, as CloudFormation refuses it
    with pytest.raises(TemplateError, match="ArchiveExpirationDays must be 0 or more than"):
        provisioner.deploy([stack])
    assert clients.s3.list_buckets()["Buckets"] == []
