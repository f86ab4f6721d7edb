"""Find the pipeline from its four stacks' CloudFormation outputs.

Nothing about a deployment is configured twice: URLs, topic, bucket, tables
and queues are whatever the stacks' outputs say, read with DescribeStacks the
same way against AWS and against the local runner (which registers the stacks
it provisions with their resolved outputs). Queues are found by the outputs
naming convention — ``<Name>QueueUrl`` and ``<Name>DeadLetterQueueUrl`` — so a
stack that adds a queue needs no change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.errors import PipelineUnavailableError, UsageError

INGEST = "ingest"
ARCHIVE = "s3"
STATUS_STORE = "dynamo"
ERROR_ROUTER = "errors"

# Role → default stack name, which is the stack's folder under aws_stacks/.
DEFAULT_STACK_NAMES: Mapping[str, str] = {
    INGEST: "StatusCallbackHandler",
    ARCHIVE: "SaveStatusCallbackToS3",
    STATUS_STORE: "SaveStatusCallbackToDynamo",
    ERROR_ROUTER: "CheckForStatusCallbackErrors",
}
ROLES: tuple[str, ...] = tuple(DEFAULT_STACK_NAMES)

QUEUE_URL_SUFFIX = "QueueUrl"
QUEUE_ARN_SUFFIX = "QueueArn"
DEAD_LETTER_SUFFIX = "DeadLetter"

# Output keys the tool reads (contract with the stacks' templates).
API_BASE_URL = "ApiBaseUrl"
CALLBACK_URL = "CallbackUrl"
CALLBACK_WITH_PARAMS_URL = "CallbackWithParamsUrl"
TOPIC_ARN = "TopicArn"
AUTH_TOKEN_SECRET_NAME = "AuthTokenSecretName"  # noqa: S105 - an output key, not a secret
ARCHIVE_BUCKET_NAME = "ArchiveBucketName"
ARCHIVE_PREFIX = "ArchivePrefix"
GLUE_DATABASE_NAME = "GlueDatabaseName"
GLUE_TABLE_NAME = "GlueTableName"
ATHENA_WORKGROUP_NAME = "AthenaWorkGroupName"
STATUS_TABLE_NAME = "StatusTableName"
ERROR_EVENT_BUS_NAME = "ErrorEventBusName"
ERROR_EVENT_BUS_ARN = "ErrorEventBusArn"
ALERTS_TOPIC_ARN = "AlertsTopicArn"
NUMBER_FLAGS_TABLE_NAME = "NumberFlagsTableName"
ALERTS_INBOX_QUEUE_URL = "AlertsInboxQueueUrl"
IDEMPOTENCY_TABLE_NAME = "IdempotencyTableName"
EXECUTE_API_DOMAIN = "ExecuteApiDomain"
CALLBACK_ROUTES = "CallbackRoutes"
PUBLIC_BASE_URL = "PublicBaseUrl"
REJECTED_BUCKET_NAME = "RejectedBucketName"
REJECTED_PREFIX_OUTPUT = "RejectedPrefix"
VALIDATOR_LOG_GROUP_NAME = "ValidatorLogGroupName"
API_ACCESS_LOG_GROUP_NAME = "ApiAccessLogGroupName"
VALIDATOR_FUNCTION_NAME = "ValidatorFunctionName"
ARCHIVER_FUNCTION_NAME = "ArchiverFunctionName"
WRITER_FUNCTION_NAME = "WriterFunctionName"
ROUTER_FUNCTION_NAME = "RouterFunctionName"
ALERTER_FUNCTION_NAME = "AlerterFunctionName"
FLAGGER_FUNCTION_NAME = "FlaggerFunctionName"

# Stack parameters the tool reads (DescribeStacks ``Parameters``).
BATCHING_WINDOW_PARAMETER = "MaximumBatchingWindowInSeconds"

_MISSING_STACK_CODES = frozenset({"ValidationError", "StackNotFoundException"})


@dataclass(frozen=True)
class StackNames:
    """The CloudFormation stack name for each role, e.g. a second environment's."""

    by_role: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STACK_NAMES))

    @classmethod
    def build(
        cls,
        prefix: str = "",
        suffix: str = "",
        overrides: Mapping[str, str | None] | None = None,
    ) -> StackNames:
        """Default names wrapped in a prefix/suffix; an explicit name wins over both."""
        names = {role: f"{prefix}{default}{suffix}" for role, default in DEFAULT_STACK_NAMES.items()}
        for role, name in (overrides or {}).items():
            if role not in DEFAULT_STACK_NAMES:
                raise UsageError(f"unknown stack role {role!r}")
            if name:
                names[role] = name
        return cls(names)

    def __getitem__(self, role: str) -> str:
        return self.by_role[role]


@dataclass(frozen=True)
class DeployedStack:
    """One stack as CloudFormation describes it."""

    role: str
    name: str
    status: str
    outputs: Mapping[str, str]
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueRef:
    """A queue named in a stack's outputs."""

    name: str
    url: str
    stack: str
    output_key: str
    arn: str | None = None

    @property
    def is_dead_letter(self) -> bool:
        return self.name.endswith(DEAD_LETTER_SUFFIX)

    @property
    def is_inbox(self) -> bool:
        """A queue people read (the alerts inbox): nothing drains it, so its depth is no backlog."""
        return self.output_key == ALERTS_INBOX_QUEUE_URL

    @property
    def base_name(self) -> str:
        """``Ingest`` for both ``IngestQueueUrl`` and ``IngestDeadLetterQueueUrl``."""
        return self.name.removesuffix(DEAD_LETTER_SUFFIX) if self.is_dead_letter else self.name

    @property
    def queue_name(self) -> str:
        """The SQS queue name, the URL's last segment."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Pipeline:
    """The deployed stacks found, and those that are not there."""

    stacks: Mapping[str, DeployedStack]
    missing: Mapping[str, str] = field(default_factory=dict)

    def output(self, key: str) -> str | None:
        """An output's value from whichever stack declares it."""
        for stack in self.stacks.values():
            if key in stack.outputs:
                return stack.outputs[key]
        return None

    def require(self, key: str, role: str) -> str:
        """An output the command cannot work without, with a message naming its stack."""
        value = self.output(key)
        if value:
            return value
        if role in self.missing:
            raise PipelineUnavailableError(
                f"stack {self.missing[role]!r} is not deployed, so {key} is unknown. {_HOW_TO_START}"
            )
        stack = self.stacks[role].name if role in self.stacks else DEFAULT_STACK_NAMES[role]
        raise PipelineUnavailableError(f"stack {stack!r} has no output {key!r}")

    def queues(self) -> list[QueueRef]:
        """Every queue and dead-letter queue in the outputs, in stack order."""
        found: list[QueueRef] = []
        for stack in self.stacks.values():
            for key, value in stack.outputs.items():
                if key.endswith(QUEUE_URL_SUFFIX) and key != QUEUE_URL_SUFFIX:
                    name = key.removesuffix(QUEUE_URL_SUFFIX)
                    arn = stack.outputs.get(name + QUEUE_ARN_SUFFIX)
                    found.append(QueueRef(name, value, stack.name, key, arn))
        return found

    def dead_letter_queues(self) -> list[QueueRef]:
        return [queue for queue in self.queues() if queue.is_dead_letter]

    def work_queues(self) -> list[QueueRef]:
        return [queue for queue in self.queues() if not queue.is_dead_letter and not queue.is_inbox]

    def paired_source(self, dead_letter: QueueRef) -> QueueRef | None:
        """The queue whose failures land in this DLQ, by the outputs naming convention."""
        for queue in self.work_queues():
            if queue.stack == dead_letter.stack and queue.name == dead_letter.base_name:
                return queue
        return None


_HOW_TO_START = (
    "Start the local pipeline with `twilio-callbacks local` (and export the AWS_ENDPOINT_URL it prints), "
    "or deploy the stacks with `sam deploy`; use --stack-prefix/--stack-suffix or --*-stack for other names."
)


def _describe(cloudformation: object, name: str) -> dict[str, object] | None:
    try:
        response = cloudformation.describe_stacks(StackName=name)  # type: ignore[attr-defined]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code in _MISSING_STACK_CODES and "does not exist" in message:
            return None
        raise PipelineUnavailableError(f"cannot describe stack {name!r}: {message or code}") from error
    stacks = response.get("Stacks", [])
    return stacks[0] if stacks else None


def discover(
    target: AwsTarget,
    names: StackNames,
    roles: Sequence[str] = ROLES,
) -> Pipeline:
    """Describe the stacks of the given roles; fail when none of them is there."""
    cloudformation = target.client("cloudformation")
    found: dict[str, DeployedStack] = {}
    missing: dict[str, str] = {}
    try:
        for role in roles:
            description = _describe(cloudformation, names[role])
            if description is None or str(description.get("StackStatus", "")).startswith("DELETE"):
                missing[role] = names[role]
                continue
            outputs = {
                str(output["OutputKey"]): str(output.get("OutputValue", ""))
                for output in _as_dicts(description.get("Outputs"))
            }
            parameters = {
                str(parameter["ParameterKey"]): str(parameter.get("ParameterValue", ""))
                for parameter in _as_dicts(description.get("Parameters"))
            }
            found[role] = DeployedStack(
                role, names[role], str(description.get("StackStatus")), outputs, parameters
            )
    except EndpointConnectionError as error:
        raise PipelineUnavailableError(
            f"cannot reach the AWS endpoint {error.kwargs.get('endpoint_url', '')}. {_HOW_TO_START}"
        ) from error
    except BotoCoreError as error:
        raise PipelineUnavailableError(f"cannot read the stacks: {error}") from error
    if not found:
        listed = ", ".join(missing.values())
        raise PipelineUnavailableError(f"stack(s) not found: {listed}. {_HOW_TO_START}")
    return Pipeline(found, missing)


def _as_dicts(value: object) -> Iterable[Mapping[str, object]]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    return []
