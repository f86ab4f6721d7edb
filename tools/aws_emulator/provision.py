"""Create the stacks' resources in the emulator, straight from their templates.

Each translated template is walked in dependency order (``Ref``/``GetAtt``/
``Sub``/``DependsOn``); resources whose ``Condition`` is false are left out.
Every resource type is handled one of three ways (``SUPPORT`` is the table):

- **moto**: created through the AWS API on the moto server, with the
  template's properties (queues, topics, subscriptions, tables, buckets,
  event buses, rules, secrets, keys, parameters, policies);
- **in-process**: the runner plays the part (Lambda functions and their
  event source mappings and async invoke settings run in this process; the
  HTTP API is served by the local gateway);
- **skipped**: no local meaning (IAM, alarms, Glue/Athena …).
  ``Ref``/``GetAtt`` still return well-formed names and ARNs.

Where moto cannot deliver what the template wires up — an EventBridge rule
target that is a Lambda function or an SNS topic, an SNS subscription of a
Lambda function — an internal queue takes the target's place in moto (same
rule, same pattern, same filter policy) and the runner delivers from it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aws_emulator.aws import Clients
from aws_emulator.intrinsics import (
    IntrinsicError,
    PseudoParameters,
    Resolver,
    referenced_resources,
    rule_failures,
)
from aws_emulator.templates import (
    StackTemplate,
    TemplateError,
    imported_expressions,
    stack_order,
)

MOTO = "moto"
IN_PROCESS = "in-process"
SKIPPED = "skipped"

INTERNAL_PREFIX = "local-runner"
# Lambda's async invocation defaults (EventBridge and SNS invoke functions asynchronously).
ASYNC_MAX_RETRIES = 2
ASYNC_MAX_EVENT_AGE = 21600
# EventBridge's default retry policy for a target.
TARGET_MAX_RETRIES = 185
TARGET_MAX_EVENT_AGE = 86400


@dataclass(frozen=True)
class ResourceSupport:
    """How the runner handles one resource type, and why."""

    handling: str
    note: str


SUPPORT: Mapping[str, ResourceSupport] = {
    "AWS::SQS::Queue": ResourceSupport(MOTO, "all attributes incl. RedrivePolicy, SSE, FIFO"),
    "AWS::SQS::QueuePolicy": ResourceSupport(MOTO, "set as the queues' Policy, without TLS-only denies"),
    "AWS::SQS::QueueInlinePolicy": ResourceSupport(
        MOTO, "set as the queue's Policy, without TLS-only denies"
    ),
    "AWS::SNS::Topic": ResourceSupport(MOTO, "attributes, inline subscriptions"),
    "AWS::SNS::Subscription": ResourceSupport(
        MOTO, "sqs: RawMessageDelivery/FilterPolicy/Scope/RedrivePolicy; lambda: internal queue + runner"
    ),
    "AWS::SNS::TopicPolicy": ResourceSupport(MOTO, "set as the topics' Policy, without TLS-only denies"),
    "AWS::SNS::TopicInlinePolicy": ResourceSupport(
        MOTO, "set as the topic's Policy, without TLS-only denies"
    ),
    "AWS::DynamoDB::Table": ResourceSupport(MOTO, "keys, GSIs/LSIs, billing, streams, SSE, TTL"),
    "AWS::S3::Bucket": ResourceSupport(
        MOTO, "encryption, versioning, public access block, ownership, tags (lifecycle: no local effect)"
    ),
    "AWS::S3::BucketPolicy": ResourceSupport(MOTO, "moto enforces it: TLS-only denies are dropped (http)"),
    "AWS::Events::EventBus": ResourceSupport(MOTO, "custom bus"),
    "AWS::Events::Rule": ResourceSupport(
        MOTO, "pattern evaluated by moto; sqs/logs/bus targets by moto, lambda/sns targets via the runner"
    ),
    "AWS::Events::Archive": ResourceSupport(MOTO, "archive"),
    "AWS::SecretsManager::Secret": ResourceSupport(MOTO, "SecretString or generated value"),
    "AWS::KMS::Key": ResourceSupport(MOTO, "key (no real encryption)"),
    "AWS::KMS::Alias": ResourceSupport(MOTO, "alias"),
    "AWS::SSM::Parameter": ResourceSupport(MOTO, "parameter"),
    "AWS::Lambda::Function": ResourceSupport(IN_PROCESS, "handler imported from its CodeUri folder"),
    "AWS::Lambda::EventSourceMapping": ResourceSupport(
        IN_PROCESS, "SQS poller: BatchSize, window (capped), ReportBatchItemFailures, FilterCriteria"
    ),
    "AWS::Lambda::EventInvokeConfig": ResourceSupport(IN_PROCESS, "async retries and OnFailure destination"),
    "AWS::Lambda::Version": ResourceSupport(IN_PROCESS, "same code as the function"),
    "AWS::Lambda::Alias": ResourceSupport(IN_PROCESS, "same code as the function"),
    "AWS::ApiGatewayV2::Api": ResourceSupport(IN_PROCESS, "served by the local HTTP gateway"),
    "AWS::ApiGatewayV2::Stage": ResourceSupport(
        IN_PROCESS, "stage path prefix; AccessLogSettings rendered to the access log group"
    ),
    "AWS::ApiGatewayV2::Route": ResourceSupport(IN_PROCESS, "served by the local HTTP gateway"),
    "AWS::ApiGatewayV2::Integration": ResourceSupport(IN_PROCESS, "SQS-SendMessage integrations"),
    "AWS::Lambda::LayerVersion": ResourceSupport(SKIPPED, "the layer's package is installed in the venv"),
    "AWS::Lambda::LayerVersionPermission": ResourceSupport(SKIPPED, "no permissions locally"),
    "AWS::Lambda::Permission": ResourceSupport(SKIPPED, "no permissions locally"),
    "AWS::IAM::Role": ResourceSupport(SKIPPED, "IAM is not enforced locally"),
    "AWS::IAM::Policy": ResourceSupport(SKIPPED, "IAM is not enforced locally"),
    "AWS::IAM::ManagedPolicy": ResourceSupport(SKIPPED, "IAM is not enforced locally"),
    "AWS::Logs::LogGroup": ResourceSupport(
        MOTO, "with retention; receives its functions' output and the HTTP API's access log lines"
    ),
    "AWS::Logs::MetricFilter": ResourceSupport(SKIPPED, "no CloudWatch locally"),
    "AWS::Logs::SubscriptionFilter": ResourceSupport(SKIPPED, "no CloudWatch locally"),
    "AWS::CloudWatch::Alarm": ResourceSupport(SKIPPED, "no CloudWatch locally"),
    "AWS::CloudWatch::CompositeAlarm": ResourceSupport(SKIPPED, "no CloudWatch locally"),
    "AWS::CloudWatch::Dashboard": ResourceSupport(SKIPPED, "no CloudWatch locally"),
    "AWS::Glue::Database": ResourceSupport(SKIPPED, "no query engine locally (read S3 directly)"),
    "AWS::Glue::Table": ResourceSupport(SKIPPED, "no query engine locally (read S3 directly)"),
    "AWS::Athena::WorkGroup": ResourceSupport(SKIPPED, "no query engine locally"),
    "AWS::Athena::NamedQuery": ResourceSupport(SKIPPED, "no query engine locally"),
    "AWS::ApiGatewayV2::ApiMapping": ResourceSupport(SKIPPED, "custom domains: use --public-url"),
    "AWS::ApiGatewayV2::DomainName": ResourceSupport(SKIPPED, "custom domains: use --public-url"),
    "AWS::CloudFormation::WaitConditionHandle": ResourceSupport(SKIPPED, "nothing to create"),
}


def support_of(resource_type: str) -> ResourceSupport:
    """The table entry; an unknown type is skipped loudly."""
    return SUPPORT.get(resource_type, ResourceSupport(SKIPPED, "not supported by the local runner"))


# ---------------------------------------------------------------------------------------------
# What provisioning hands to the runtime


@dataclass
class Provisioned:
    """One resource: what Ref and GetAtt return, how it was handled, and its resolved properties."""

    logical_id: str
    ref: Any
    attributes: dict[str, Any] = field(default_factory=dict)
    type: str = ""
    handling: str = MOTO
    # As resolved at creation, so a stack update can tell which resources it would change.
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function the runner invokes in-process."""

    stack: str
    logical_id: str
    name: str
    arn: str
    code_folder: Path | None
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: Mapping[str, str]
    dead_letter_arn: str | None = None
    layer_folders: tuple[Path, ...] = ()
    # X-Ray mode as deployed (TracingConfig.Mode); nothing traces locally, the benchmark prices it.
    tracing: str = "PassThrough"
    # LoggingConfig.LogGroup; without one Lambda writes to /aws/lambda/<name>.
    log_group: str | None = None

    @property
    def log_group_name(self) -> str:
        return self.log_group or f"/aws/lambda/{self.name}"


@dataclass(frozen=True)
class EventSourceSpec:
    """An SQS event source mapping: a poller invokes the function with batches."""

    stack: str
    logical_id: str
    function: str
    queue_arn: str
    batch_size: int
    batching_window: float
    report_batch_item_failures: bool
    filter_patterns: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class InvokeConfigSpec:
    """Lambda's asynchronous invocation settings of one function."""

    function: str
    max_retries: int = ASYNC_MAX_RETRIES
    max_event_age: int = ASYNC_MAX_EVENT_AGE
    on_failure_arn: str | None = None


@dataclass(frozen=True)
class AsyncSourceSpec:
    """An internal queue standing in for a target moto cannot deliver to.

    ``kind`` is ``eventbridge`` (a rule target), or ``sns`` (a topic's
    subscription of a Lambda function). ``target_arn`` is what the template
    wired up: a function, or for a rule also a topic or queue.
    """

    stack: str
    logical_id: str
    kind: str
    source_arn: str
    target_arn: str
    target_id: str
    queue_url: str
    input: str | None = None
    input_path: str | None = None
    input_transformer: Mapping[str, Any] | None = None
    max_retries: int = TARGET_MAX_RETRIES
    max_event_age: int = TARGET_MAX_EVENT_AGE
    dead_letter_arn: str | None = None


@dataclass(frozen=True)
class HttpRouteSpec:
    """One route of an HTTP API and the integration it maps to."""

    method: str
    path: str
    integration: Mapping[str, Any]
    declared_query: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessLogSpec:
    """A stage's AccessLogSettings: the log group its lines go to, and their format."""

    log_group: str
    format: str


@dataclass(frozen=True)
class HttpApiSpec:
    """An HTTP API served by the local gateway."""

    stack: str
    logical_id: str
    api_id: str
    routes: tuple[HttpRouteSpec, ...]
    stage_prefix: str = ""
    access_log: AccessLogSpec | None = None

    @property
    def stage(self) -> str:
        return self.stage_prefix.strip("/") or "$default"


@dataclass
class ProvisionedStack:
    """A stack after provisioning: resources, resolved parameters and outputs."""

    name: str
    description: str
    parameters: dict[str, Any]
    resources: dict[str, Provisioned] = field(default_factory=dict)
    outputs: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)


@dataclass
class Deployment:
    """Everything provisioned, and what the runtime must play in-process."""

    stacks: list[ProvisionedStack] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)
    functions: list[FunctionSpec] = field(default_factory=list)
    event_sources: list[EventSourceSpec] = field(default_factory=list)
    invoke_configs: dict[str, InvokeConfigSpec] = field(default_factory=dict)
    async_sources: list[AsyncSourceSpec] = field(default_factory=list)
    apis: list[HttpApiSpec] = field(default_factory=list)
    layers: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def function(self, reference: str) -> FunctionSpec | None:
        """A function by name, ARN, or qualified (version/alias) ARN."""
        for function in self.functions:
            if reference in (function.name, function.arn):
                return function
            if reference.startswith(function.arn + ":") or reference.startswith(function.name + ":"):
                return function
        return None

    def invoke_config(self, function: FunctionSpec) -> InvokeConfigSpec:
        return self.invoke_configs.get(function.name, InvokeConfigSpec(function.name))

    def stack(self, name: str) -> ProvisionedStack:
        for stack in self.stacks:
            if stack.name == name:
                return stack
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Names, ARNs and property conversion


def physical_name(stack: str, logical_id: str, max_length: int = 80, lowercase: bool = False) -> str:
    """A CloudFormation-style generated name: ``<stack>-<logical id>-<suffix>``, stable across runs."""
    digest = hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()
    suffix = digest[:12].upper()
    room = max_length - len(suffix) - 2
    stack_part = stack[: max(1, room // 2)] if len(stack) + len(logical_id) > room else stack
    logical_part = logical_id[: max(1, room - len(stack_part))]
    name = f"{stack_part}-{logical_part}-{suffix}"
    return name.lower() if lowercase else name


def arn(service: str, resource: str, region: str, account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _is_true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return {str(tag["Key"]): str(tag["Value"]) for tag in value if isinstance(tag, Mapping)}
    if isinstance(value, Mapping):
        return {str(key): str(item) for key, item in value.items()}
    return {}


def local_policy(document: Any) -> str:
    """A resource policy for the emulator: statements denying non-TLS requests are dropped.

    The local endpoint is plain http, and moto enforces bucket policies, so a
    ``Deny`` on ``aws:SecureTransport: false`` would refuse every local call.
    """
    if not isinstance(document, Mapping):
        return _text(document)
    statements = document.get("Statement") or []
    if isinstance(statements, Mapping):
        statements = [statements]
    kept = [statement for statement in statements if not _denies_plain_http(statement)]
    return _text({**document, "Statement": kept})


def _denies_plain_http(statement: Any) -> bool:
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Deny":
        return False
    condition = statement.get("Condition") or {}
    secure = (
        (condition.get("Bool") or {}).get("aws:SecureTransport") if isinstance(condition, Mapping) else None
    )
    return str(secure).lower() == "false"


def _tag_list(value: Any) -> list[dict[str, str]]:
    return [{"Key": key, "Value": item} for key, item in _tags(value).items()]


# ---------------------------------------------------------------------------------------------
# The provisioner


ResourceCreator = Callable[["StackProvisioner", str, dict[str, Any]], Provisioned]


class Provisioner:
    """Provisions a set of stacks into the emulator and collects what runs in-process."""

    def __init__(
        self,
        clients: Clients,
        *,
        region: str,
        account_id: str,
        api_base_url: str,
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.clients = clients
        self.region = region
        self.account_id = account_id
        self.api_base_url = api_base_url.rstrip("/")
        self.parameter_overrides = dict(parameter_overrides or {})
        self.deployment = Deployment()
        # The templates as provisioned, for updates.
        self.templates: dict[str, StackTemplate] = {}

    def pseudo(self, stack_name: str) -> PseudoParameters:
        return PseudoParameters(stack_name=stack_name, region=self.region, account_id=self.account_id)

    def parameter_values(
        self, stack: StackTemplate, changes: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Template defaults, overridden by any override whose name the stack declares, then ``changes``."""
        chosen = {**self.parameter_overrides, **(changes or {})}
        values: dict[str, Any] = {}
        for name, declaration in stack.parameters.items():
            if name in chosen:
                raw: Any = chosen[name]
            elif "Default" in declaration:
                raw = declaration["Default"]
            else:
                raise TemplateError(f"{stack.name}: parameter {name} has no default and no override")
            kind = str(declaration.get("Type", "String"))
            if kind.startswith("List<") or kind == "CommaDelimitedList":
                values[name] = (
                    raw if isinstance(raw, list) else [item.strip() for item in str(raw).split(",")]
                )
            else:
                values[name] = _text(raw)
                _check_parameter(stack.name, name, declaration, values[name])
        refused = rule_failures(stack.template.get("Rules") or {}, values)
        if refused:
            raise TemplateError(f"{stack.name}: {'; '.join(refused)}")
        return values

    def deploy(self, stacks: list[StackTemplate]) -> Deployment:
        """Provision every stack, importers after exporters."""
        exports: dict[str, set[str]] = {}
        imports: dict[str, set[str]] = {}
        for stack in stacks:
            resolver = Resolver(
                self.pseudo(stack.name),
                self.parameter_values(stack),
                stack.template.get("Conditions") or {},
                stack.template.get("Mappings") or {},
            )
            exports[stack.name] = set()
            for output in stack.outputs.values():
                name_expression = (output.get("Export") or {}).get("Name")
                if name_expression is not None:
                    exports[stack.name].add(str(_try_resolve(resolver, name_expression)))
            imports[stack.name] = {
                str(_try_resolve(resolver, expression)) for expression in imported_expressions(stack)
            }
        for stack in stack_order(stacks, exports, imports):
            self.templates[stack.name] = stack
            StackProvisioner(self, stack).provision()
        return self.deployment

    def update(self, stack_name: str, changes: Mapping[str, Any]) -> list[FunctionSpec]:
        """Re-resolve a provisioned stack with changed parameters, as an in-place CloudFormation update.

        Nothing is recreated: queues, buckets and tables keep their contents.
        Only changes that reach function environments and stack outputs are
        supported; any other resource change is refused (TemplateError) before
        anything is applied. Returns the functions whose configuration changed.
        """
        if stack_name not in self.templates:
            raise TemplateError(f"no provisioned stack {stack_name}")
        stack = self.templates[stack_name]
        unknown = sorted(set(changes) - set(stack.parameters))
        if unknown:
            raise TemplateError(f"{stack_name} declares no parameter(s) {', '.join(unknown)}")
        current = self.deployment.stack(stack_name)
        values = self.parameter_values(stack, {**current.parameters, **changes})
        return StackProvisioner(self, stack, values).update(current)

    def localise(self, value: Any) -> Any:
        """Point execute-api URLs of the emulated HTTP APIs at the local gateway."""
        if isinstance(value, str):
            for api in self.deployment.apis:
                host = f"https://{api.api_id}.execute-api.{self.region}.amazonaws.com"
                if value.startswith(host):
                    value = self.api_base_url + value[len(host) :]
            return value
        if isinstance(value, list):
            return [self.localise(item) for item in value]
        if isinstance(value, dict):
            return {key: self.localise(item) for key, item in value.items()}
        return value

    def internal_queue(self, hint: str, visibility_timeout: int = 30) -> tuple[str, str]:
        """A runner-owned queue (URL, ARN) standing in for a target moto cannot deliver to."""
        digest = hashlib.sha256(hint.encode()).hexdigest()[:10]
        name = f"{INTERNAL_PREFIX}-{hint[: 80 - len(INTERNAL_PREFIX) - 12]}-{digest}"
        url = self.clients.sqs.create_queue(
            QueueName=name, Attributes={"VisibilityTimeout": str(visibility_timeout)}
        )["QueueUrl"]
        queue_arn = self.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        return url, queue_arn


def _check_parameter(stack: str, name: str, declaration: Mapping[str, Any], value: str) -> None:
    """Refuse a value CloudFormation would refuse (AllowedValues, AllowedPattern, Min/MaxValue)."""
    allowed = declaration.get("AllowedValues")
    if allowed is not None and value not in [_text(item) for item in allowed]:
        raise TemplateError(f"{stack}: {name}={value!r} is not one of {', '.join(map(_text, allowed))}")
    pattern = declaration.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), value) is None:
        raise TemplateError(f"{stack}: {name}={value!r} does not match {pattern}")
    if str(declaration.get("Type")) == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"{stack}: {name}={value!r} is not a number") from None
        low, high = declaration.get("MinValue"), declaration.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise TemplateError(f"{stack}: {name}={value} is outside {low}..{high}")


def _try_resolve(resolver: Resolver, expression: Any) -> Any:
    try:
        return resolver.resolve(expression)
    except IntrinsicError:
        return json.dumps(expression, sort_keys=True)


class StackProvisioner:
    """Provisions one stack's resources in dependency order and resolves its outputs."""

    def __init__(
        self, owner: Provisioner, stack: StackTemplate, parameters: dict[str, Any] | None = None
    ) -> None:
        self.owner = owner
        self.stack = stack
        self.clients = owner.clients
        self.deployment = owner.deployment
        self.result = ProvisionedStack(
            name=stack.name,
            description=str(stack.template.get("Description", "")),
            parameters=owner.parameter_values(stack) if parameters is None else parameters,
        )
        self.resolver = Resolver(
            owner.pseudo(stack.name),
            self.result.parameters,
            stack.template.get("Conditions") or {},
            stack.template.get("Mappings") or {},
            ref=self._ref,
            get_att=self._get_att,
            import_value=self._import_value,
        )

    # -- context used by the resource creators ------------------------------------------------

    @property
    def region(self) -> str:
        return self.owner.region

    @property
    def account_id(self) -> str:
        return self.owner.account_id

    def name(self, logical_id: str, max_length: int = 80, lowercase: bool = False) -> str:
        return physical_name(self.stack.name, logical_id, max_length, lowercase)

    def arn(self, service: str, resource: str) -> str:
        return arn(service, resource, self.region, self.account_id)

    def note(self, message: str) -> None:
        self.deployment.notes.append(f"{self.stack.name}: {message}")

    # -- intrinsic lookups --------------------------------------------------------------------

    def _ref(self, logical_id: str) -> Any:
        resource = self.result.resources.get(logical_id)
        if resource is None:
            raise IntrinsicError(f"{self.stack.name}: Ref to unknown or not created resource {logical_id}")
        return resource.ref

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.result.resources.get(logical_id)
        if resource is None:
            raise IntrinsicError(f"{self.stack.name}: GetAtt of unknown or not created resource {logical_id}")
        if attribute in resource.attributes:
            return resource.attributes[attribute]
        if resource.handling == SKIPPED:
            # Good enough for a resource that has no local meaning.
            return resource.attributes.get("Arn", resource.ref)
        raise IntrinsicError(
            f"{self.stack.name}: {logical_id} ({resource.type}) has no attribute {attribute}"
        )

    def _import_value(self, name: str) -> Any:
        if name not in self.deployment.exports:
            raise IntrinsicError(
                f"{self.stack.name}: Fn::ImportValue {name!r}: no provisioned stack exports it"
            )
        return self.deployment.exports[name]

    # -- provisioning -------------------------------------------------------------------------

    def provision(self) -> ProvisionedStack:
        resources = self.stack.resources
        for logical_id in self._creation_order():
            definition = resources[logical_id]
            condition = definition.get("Condition")
            if condition and not self.resolver.condition(str(condition)):
                continue
            kind = str(definition.get("Type"))
            support = support_of(kind)
            if kind not in SUPPORT:
                self.note(f"{logical_id} ({kind}) is not supported locally and was skipped")
            try:
                properties = self.resolver.resolve(definition.get("Properties") or {})
                creator = _CREATORS.get(kind, _skipped)
                provisioned = creator(self, logical_id, copy.deepcopy(properties))
            except IntrinsicError as error:
                raise TemplateError(f"{self.stack.name}/{logical_id}: {error}") from error
            provisioned.properties = properties
            provisioned.type = kind
            provisioned.handling = support.handling if kind in SUPPORT else SKIPPED
            self.result.resources[logical_id] = provisioned
        self.result.outputs = self._outputs()
        for value, _, export_name in self.result.outputs.values():
            if export_name:
                self.deployment.exports[export_name] = value
        self.deployment.stacks.append(self.result)
        return self.result

    def update(self, current: ProvisionedStack) -> list[FunctionSpec]:
        """Apply this provisioner's parameters to ``current`` in place (see `Provisioner.update`)."""
        self.result.resources = dict(current.resources)
        resolved: dict[str, dict[str, Any]] = {}
        reconfigured: list[FunctionSpec] = []
        for logical_id in self._creation_order():
            definition = self.stack.resources[logical_id]
            condition = definition.get("Condition")
            wanted = not condition or self.resolver.condition(str(condition))
            existing = current.resources.get(logical_id)
            if wanted != (existing is not None):
                action = "create" if wanted else "delete"
                raise TemplateError(
                    f"{self.stack.name}/{logical_id}: the update would {action} it; "
                    "the local runner updates function environments and outputs only"
                )
            if existing is None:
                continue
            try:
                properties = self.resolver.resolve(definition.get("Properties") or {})
            except IntrinsicError as error:
                raise TemplateError(f"{self.stack.name}/{logical_id}: {error}") from error
            changed = sorted(
                key
                for key in {*properties, *existing.properties}
                if properties.get(key) != existing.properties.get(key)
            )
            if not changed:
                continue
            if existing.type != "AWS::Lambda::Function" or changed != ["Environment"]:
                raise TemplateError(
                    f"{self.stack.name}/{logical_id} ({existing.type}): the update would change "
                    f"{', '.join(changed)}; the local runner updates function environments and outputs only"
                )
            resolved[logical_id] = properties
            reconfigured.append(self._reconfigured(str(existing.ref), properties))
        outputs = self._outputs()
        exports = {export: value for value, _, export in outputs.values() if export}
        before = {export: value for value, _, export in current.outputs.values() if export}
        if exports != before:
            raise TemplateError(
                f"{self.stack.name}: the update would change its exports, which other stacks import"
            )
        for logical_id, properties in resolved.items():
            current.resources[logical_id].properties = properties
        functions = {function.name: function for function in reconfigured}
        self.deployment.functions = [functions.get(spec.name, spec) for spec in self.deployment.functions]
        current.parameters = self.result.parameters
        current.outputs = outputs
        return reconfigured

    def _reconfigured(self, name: str, properties: Mapping[str, Any]) -> FunctionSpec:
        function = self.deployment.function(name)
        if function is None:
            raise TemplateError(f"{self.stack.name}: no function {name}")
        return replace(function, environment=_environment_variables(self.owner, properties))

    def _creation_order(self) -> list[str]:
        resources = self.stack.resources
        ids = set(resources)
        dependencies: dict[str, set[str]] = {}
        for logical_id, definition in resources.items():
            needed = referenced_resources(definition.get("Properties") or {}, ids)
            depends_on = definition.get("DependsOn") or []
            needed |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
            dependencies[logical_id] = needed & ids - {logical_id}
        ordered: list[str] = []
        done: set[str] = set()
        pending = sorted(ids)
        while pending:
            ready = [logical_id for logical_id in pending if dependencies[logical_id] <= done]
            if not ready:
                raise TemplateError(f"{self.stack.name}: circular dependency among {', '.join(pending)}")
            for logical_id in ready:
                ordered.append(logical_id)
                done.add(logical_id)
                pending.remove(logical_id)
        return ordered

    def _outputs(self) -> dict[str, tuple[str, str, str | None]]:
        """Each output whose condition holds: (value, description, export name)."""
        outputs: dict[str, tuple[str, str, str | None]] = {}
        for key, output in self.stack.outputs.items():
            condition = output.get("Condition")
            if condition and not self.resolver.condition(str(condition)):
                continue
            try:
                value = self.owner.localise(self.resolver.resolve(output.get("Value")))
                export = output.get("Export")
                export_name = str(self.resolver.resolve(export["Name"])) if export else None
            except IntrinsicError as error:
                raise TemplateError(f"{self.stack.name}/Outputs/{key}: {error}") from error
            text = ",".join(map(_text, value)) if isinstance(value, list) else _text(value)
            outputs[key] = (text, str(output.get("Description", "")), export_name)
        return outputs


# ---------------------------------------------------------------------------------------------
# Resource creators (one per supported type)


def _skipped(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    return _synthetic(ctx, logical_id, properties, ctx.stack.resources[logical_id].get("Type", ""))


def _synthetic(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any], kind: str) -> Provisioned:
    """Well-formed Ref/GetAtt values for a resource that is not created."""
    name = ctx.name(logical_id, 64)
    if kind.startswith("AWS::IAM::Role"):
        name = str(properties.get("RoleName") or name)
        return Provisioned(
            logical_id, name, {"Arn": f"arn:aws:iam::{ctx.account_id}:role/{name}", "RoleId": name}
        )
    if kind == "AWS::IAM::ManagedPolicy":
        policy_arn = f"arn:aws:iam::{ctx.account_id}:policy/{properties.get('ManagedPolicyName') or name}"
        return Provisioned(logical_id, policy_arn, {"PolicyArn": policy_arn})
    if kind == "AWS::Lambda::LayerVersion":
        return Provisioned(logical_id, ctx.arn("lambda", f"layer:{name}:1"))
    if kind == "AWS::CloudWatch::Alarm":
        alarm = str(properties.get("AlarmName") or name)
        return Provisioned(logical_id, alarm, {"Arn": ctx.arn("cloudwatch", f"alarm:{alarm}")})
    if kind == "AWS::Athena::NamedQuery":
        return Provisioned(logical_id, str(uuid.uuid5(uuid.NAMESPACE_URL, name)))
    if kind in ("AWS::Glue::Database", "AWS::Glue::Table"):
        given = (properties.get("DatabaseInput") or properties.get("TableInput") or {}).get("Name")
        return Provisioned(logical_id, str(given or name.lower().replace("-", "_")))
    if kind == "AWS::Athena::WorkGroup":
        return Provisioned(logical_id, str(properties.get("Name") or name))
    service = kind.split("::")[1].lower() if kind.count("::") == 2 else "local"
    return Provisioned(logical_id, name, {"Arn": ctx.arn(service, name)})


def _log_group(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("LogGroupName") or ctx.name(logical_id, 512))
    request: dict[str, Any] = {"logGroupName": name}
    if properties.get("Tags"):
        request["tags"] = _tags(properties["Tags"])
    ctx.clients.logs.create_log_group(**request)
    if "RetentionInDays" in properties:
        ctx.clients.logs.put_retention_policy(
            logGroupName=name, retentionInDays=int(properties["RetentionInDays"])
        )
    return Provisioned(logical_id, name, {"Arn": ctx.arn("logs", f"log-group:{name}:*")})


def _layer(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("LayerName") or ctx.name(logical_id, 64))
    layer_arn = ctx.arn("lambda", f"layer:{name}:1")
    folder = ctx.stack.code_folder(properties.get("Content"))
    if folder is not None:
        ctx.deployment.layers[layer_arn] = folder
    return Provisioned(logical_id, layer_arn)


def _queue(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    fifo = _is_true(properties.get("FifoQueue"))
    name = str(properties.get("QueueName") or ctx.name(logical_id, 75 if fifo else 80))
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    attribute_names = (
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "SqsManagedSseEnabled",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
    )
    attributes = {key: _text(properties[key]) for key in attribute_names if key in properties}
    if "RedrivePolicy" in properties:
        policy = dict(properties["RedrivePolicy"])
        policy["maxReceiveCount"] = int(policy.get("maxReceiveCount", 10))
        attributes["RedrivePolicy"] = json.dumps(policy)
    request: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if properties.get("Tags"):
        request["tags"] = _tags(properties["Tags"])
    url = ctx.clients.sqs.create_queue(**request)["QueueUrl"]
    queue_arn = ctx.arn("sqs", name)
    return Provisioned(logical_id, url, {"Arn": queue_arn, "QueueName": name, "QueueUrl": url})


def _queue_policy(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    urls = properties.get("Queues") or [properties.get("Queue")]
    for url in urls:
        ctx.clients.sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": local_policy(properties.get("PolicyDocument", {}))}
        )
    return Provisioned(logical_id, ctx.name(logical_id))


def _topic(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    fifo = _is_true(properties.get("FifoTopic"))
    name = str(properties.get("TopicName") or ctx.name(logical_id, 251 if fifo else 256))
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    attribute_names = (
        "DisplayName",
        "KmsMasterKeyId",
        "FifoTopic",
        "ContentBasedDeduplication",
        "SignatureVersion",
        "TracingConfig",
    )
    request: dict[str, Any] = {
        "Name": name,
        "Attributes": {key: _text(properties[key]) for key in attribute_names if key in properties},
    }
    if properties.get("Tags"):
        request["Tags"] = _tag_list(properties["Tags"])
    topic_arn = ctx.clients.sns.create_topic(**request)["TopicArn"]
    for index, subscription in enumerate(properties.get("Subscription") or []):
        _subscribe(ctx, f"{logical_id}Subscription{index}", topic_arn, dict(subscription))
    return Provisioned(logical_id, topic_arn, {"TopicArn": topic_arn, "TopicName": name})


def _topic_policy(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    topics = properties.get("Topics") or [properties.get("TopicArn")]
    for topic_arn in topics:
        ctx.clients.sns.set_topic_attributes(
            TopicArn=topic_arn,
            AttributeName="Policy",
            AttributeValue=local_policy(properties.get("PolicyDocument", {})),
        )
    return Provisioned(logical_id, ctx.name(logical_id))


def _subscription(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    subscription_arn = _subscribe(ctx, logical_id, str(properties["TopicArn"]), properties)
    return Provisioned(logical_id, subscription_arn, {"Arn": subscription_arn})


def _subscribe(ctx: StackProvisioner, logical_id: str, topic_arn: str, properties: dict[str, Any]) -> str:
    protocol = str(properties.get("Protocol", "")).lower()
    endpoint = str(properties.get("Endpoint", ""))
    attribute_names = ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy")
    attributes = {key: _text(properties[key]) for key in attribute_names if key in properties}
    if protocol == "lambda":
        # moto would try to run the function itself; an internal queue with the same filter
        # policy receives what the function would, and the runner invokes it.
        queue_url, queue_arn = ctx.owner.internal_queue(f"{ctx.stack.name}-{logical_id}")
        attributes.pop("RawMessageDelivery", None)
        subscription_arn = ctx.clients.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        redrive = properties.get("RedrivePolicy") or {}
        ctx.deployment.async_sources.append(
            AsyncSourceSpec(
                stack=ctx.stack.name,
                logical_id=logical_id,
                kind="sns",
                source_arn=subscription_arn,
                target_arn=endpoint,
                target_id=logical_id,
                queue_url=queue_url,
                dead_letter_arn=redrive.get("deadLetterTargetArn") if isinstance(redrive, Mapping) else None,
            )
        )
        return str(subscription_arn)
    if protocol != "sqs":
        ctx.note(f"{logical_id}: {protocol} subscriptions are not delivered locally")
        return ctx.arn("sns", f"{topic_arn.rsplit(':', 1)[-1]}:{uuid.uuid4()}")
    response = ctx.clients.sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=endpoint,
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )
    return str(response["SubscriptionArn"])


_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
_LSI_KEYS = ("IndexName", "KeySchema", "Projection")


def _table(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("TableName") or ctx.name(logical_id, 255))
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = {
            key: int(value) for key, value in properties["ProvisionedThroughput"].items()
        }
    if properties.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {key: index[key] for key in _GSI_KEYS if key in index}
            for index in properties["GlobalSecondaryIndexes"]
        ]
    if properties.get("LocalSecondaryIndexes"):
        request["LocalSecondaryIndexes"] = [
            {key: index[key] for key in _LSI_KEYS if key in index}
            for index in properties["LocalSecondaryIndexes"]
        ]
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = properties.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {
            "Enabled": _is_true(sse.get("SSEEnabled")),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    if "TableClass" in properties:
        request["TableClass"] = properties["TableClass"]
    if properties.get("Tags"):
        request["Tags"] = _tag_list(properties["Tags"])
    description = ctx.clients.dynamodb.create_table(**request)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and _is_true(ttl.get("Enabled")):
        ctx.clients.dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    attributes = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return Provisioned(logical_id, name, attributes)


def _bucket(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("BucketName") or ctx.name(logical_id, 63, lowercase=True))
    s3 = ctx.clients.s3
    request: dict[str, Any] = {"Bucket": name}
    if ctx.region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
    s3.create_bucket(**request)
    encryption = properties.get("BucketEncryption")
    if encryption:
        rules = [
            {
                (
                    "ApplyServerSideEncryptionByDefault" if key == "ServerSideEncryptionByDefault" else key
                ): value
                for key, value in rule.items()
                if key in ("ServerSideEncryptionByDefault", "BucketKeyEnabled")
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    public_access = properties.get("PublicAccessBlockConfiguration")
    if public_access:
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={key: _is_true(value) for key, value in public_access.items()},
        )
    ownership = properties.get("OwnershipControls")
    if ownership:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=ownership)
    if properties.get("Tags"):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tag_list(properties["Tags"])})
    for ignored in ("LifecycleConfiguration", "NotificationConfiguration", "ReplicationConfiguration"):
        if ignored in properties:
            ctx.note(f"{logical_id}: {ignored} has no local effect")
    return Provisioned(
        logical_id,
        name,
        {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{ctx.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{ctx.region}.amazonaws.com",
        },
    )


def _bucket_policy(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    ctx.clients.s3.put_bucket_policy(
        Bucket=properties["Bucket"], Policy=local_policy(properties["PolicyDocument"])
    )
    return Provisioned(logical_id, ctx.name(logical_id))


def _event_bus(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("Name") or ctx.name(logical_id, 256))
    request: dict[str, Any] = {"Name": name}
    if properties.get("Tags"):
        request["Tags"] = _tag_list(properties["Tags"])
    bus_arn = ctx.clients.events.create_event_bus(**request)["EventBusArn"]
    return Provisioned(logical_id, name, {"Arn": bus_arn, "Name": name})


def _rule(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("Name") or ctx.name(logical_id, 64))
    bus = str(properties.get("EventBusName") or "default")
    request: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": properties.get("State", "ENABLED")}
    for key in ("Description", "ScheduleExpression", "RoleArn"):
        if key in properties:
            request[key] = properties[key]
    if "EventPattern" in properties:
        request["EventPattern"] = _text(properties["EventPattern"])
    if "ScheduleExpression" in properties:
        ctx.note(f"{logical_id}: schedules do not fire locally")
    rule_arn = ctx.clients.events.put_rule(**request)["RuleArn"]
    targets = []
    for target in properties.get("Targets") or []:
        delivered = _rule_target(ctx, logical_id, rule_arn, dict(target))
        if delivered is not None:
            targets.append(delivered)
    if targets:
        response = ctx.clients.events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        if response.get("FailedEntryCount"):
            raise TemplateError(
                f"{ctx.stack.name}/{logical_id}: targets refused: {response['FailedEntries']}"
            )
    bus_name = bus.rsplit("/", 1)[-1]
    ref = name if bus_name == "default" else f"{bus_name}|{name}"
    return Provisioned(logical_id, ref, {"Arn": rule_arn})


def _rule_target(
    ctx: StackProvisioner, logical_id: str, rule_arn: str, target: dict[str, Any]
) -> dict[str, Any] | None:
    """The target to give moto: the template's own, or an internal queue standing in for it."""
    target_arn = str(target["Arn"])
    service = target_arn.split(":")[2] if target_arn.count(":") >= 5 else ""
    transforms = {key for key in ("Input", "InputPath") if key in target}
    if service in ("logs", "events") or (service == "sqs" and not transforms):
        return target
    if service not in ("lambda", "sns", "sqs"):
        ctx.note(f"{logical_id}: target {target.get('Id')} ({service}) is not delivered locally")
        return None
    queue_url, queue_arn = ctx.owner.internal_queue(f"{ctx.stack.name}-{logical_id}-{target['Id']}")
    retry = target.get("RetryPolicy") or {}
    dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
    ctx.deployment.async_sources.append(
        AsyncSourceSpec(
            stack=ctx.stack.name,
            logical_id=logical_id,
            kind="eventbridge",
            source_arn=rule_arn,
            target_arn=target_arn,
            target_id=str(target["Id"]),
            queue_url=queue_url,
            input=target.get("Input"),
            input_path=target.get("InputPath"),
            input_transformer=target.get("InputTransformer"),
            max_retries=int(retry.get("MaximumRetryAttempts", TARGET_MAX_RETRIES)),
            max_event_age=int(retry.get("MaximumEventAgeInSeconds", TARGET_MAX_EVENT_AGE)),
            dead_letter_arn=str(dead_letter) if dead_letter else None,
        )
    )
    # The runner applies Input/InputPath/InputTransformer itself, so moto forwards the event as is.
    return {"Id": str(target["Id"]), "Arn": queue_arn}


def _archive(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("ArchiveName") or ctx.name(logical_id, 48))
    request: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": properties["SourceArn"]}
    if "EventPattern" in properties:
        request["EventPattern"] = _text(properties["EventPattern"])
    if "RetentionDays" in properties:
        request["RetentionDays"] = int(properties["RetentionDays"])
    if "Description" in properties:
        request["Description"] = properties["Description"]
    archive_arn = ctx.clients.events.create_archive(**request)["ArchiveArn"]
    return Provisioned(logical_id, name, {"Arn": archive_arn})


def _secret(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("Name") or ctx.name(logical_id, 256))
    request: dict[str, Any] = {"Name": name}
    if "SecretString" in properties:
        request["SecretString"] = _text(properties["SecretString"])
    else:
        request["SecretString"] = _generated_secret(properties.get("GenerateSecretString") or {})
    for key in ("Description", "KmsKeyId"):
        if key in properties:
            request[key] = properties[key]
    if properties.get("Tags"):
        request["Tags"] = _tag_list(properties["Tags"])
    secret_arn = ctx.clients.secretsmanager.create_secret(**request)["ARN"]
    return Provisioned(logical_id, secret_arn, {"Id": secret_arn})


def _generated_secret(spec: Mapping[str, Any]) -> str:
    length = int(spec.get("PasswordLength", 32))
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = [char for char in string.ascii_letters + string.digits if char not in excluded]
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    if "GenerateStringKey" in spec:
        document = json.loads(str(spec.get("SecretStringTemplate") or "{}"))
        document[str(spec["GenerateStringKey"])] = value
        return json.dumps(document)
    return value


def _kms_key(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    request: dict[str, Any] = {}
    for key in ("Description", "KeyUsage", "KeySpec"):
        if key in properties:
            request[key] = properties[key]
    if properties.get("Tags"):
        request["Tags"] = [
            {"TagKey": key, "TagValue": value} for key, value in _tags(properties["Tags"]).items()
        ]
    metadata = ctx.clients.kms.create_key(**request)["KeyMetadata"]
    return Provisioned(logical_id, metadata["KeyId"], {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]})


def _kms_alias(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    ctx.clients.kms.create_alias(AliasName=properties["AliasName"], TargetKeyId=properties["TargetKeyId"])
    return Provisioned(logical_id, properties["AliasName"])


def _ssm_parameter(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("Name") or ctx.name(logical_id, 1011))
    request: dict[str, Any] = {"Name": name, "Value": _text(properties["Value"]), "Type": properties["Type"]}
    for key in ("Description", "AllowedPattern", "Tier", "DataType"):
        if key in properties:
            request[key] = properties[key]
    ctx.clients.ssm.put_parameter(**request)
    return Provisioned(logical_id, name, {"Type": properties["Type"], "Value": _text(properties["Value"])})


def _function(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    name = str(properties.get("FunctionName") or ctx.name(logical_id, 64))
    function_arn = ctx.arn("lambda", f"function:{name}")
    runtime = str(properties.get("Runtime", ""))
    code_folder = ctx.stack.code_folder(properties.get("Code"))
    if not runtime.startswith("python") or code_folder is None:
        ctx.note(f"{logical_id}: only Python functions with local code run locally ({runtime or 'image'})")
    environment = _environment_variables(ctx.owner, properties)
    dead_letter = (properties.get("DeadLetterConfig") or {}).get("TargetArn")
    ctx.deployment.functions.append(
        FunctionSpec(
            stack=ctx.stack.name,
            logical_id=logical_id,
            name=name,
            arn=function_arn,
            code_folder=code_folder if runtime.startswith("python") else None,
            handler=str(properties.get("Handler", "")),
            runtime=runtime,
            timeout=int(properties.get("Timeout", 3)),
            memory_size=int(properties.get("MemorySize", 128)),
            tracing=str((properties.get("TracingConfig") or {}).get("Mode", "PassThrough")),
            log_group=(properties.get("LoggingConfig") or {}).get("LogGroup"),
            environment=environment,
            dead_letter_arn=str(dead_letter) if dead_letter else None,
            layer_folders=tuple(
                ctx.deployment.layers[str(layer)]
                for layer in properties.get("Layers") or []
                if str(layer) in ctx.deployment.layers
            ),
        )
    )
    return Provisioned(logical_id, name, {"Arn": function_arn})


def _environment_variables(owner: Provisioner, properties: Mapping[str, Any]) -> dict[str, str]:
    variables = (properties.get("Environment") or {}).get("Variables") or {}
    return {str(key): _text(value) for key, value in owner.localise(variables).items()}


def _function_version(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    function = str(properties["FunctionName"])
    base = function if function.startswith("arn:") else ctx.arn("lambda", f"function:{function}")
    return Provisioned(logical_id, f"{base}:1", {"Version": "1", "FunctionArn": f"{base}:1"})


def _function_alias(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    function = str(properties["FunctionName"])
    base = function if function.startswith("arn:") else ctx.arn("lambda", f"function:{function}")
    return Provisioned(
        logical_id, f"{base}:{properties['Name']}", {"AliasArn": f"{base}:{properties['Name']}"}
    )


def _event_invoke_config(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    function = str(properties["FunctionName"]).rsplit(":function:", 1)[-1].split(":", 1)[0]
    on_failure = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    ctx.deployment.invoke_configs[function] = InvokeConfigSpec(
        function=function,
        max_retries=int(properties.get("MaximumRetryAttempts", ASYNC_MAX_RETRIES)),
        max_event_age=int(properties.get("MaximumEventAgeInSeconds", ASYNC_MAX_EVENT_AGE)),
        on_failure_arn=str(on_failure) if on_failure else None,
    )
    return Provisioned(logical_id, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.stack.name}/{logical_id}")))


def _event_source_mapping(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    mapping_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.stack.name}/{logical_id}"))
    source = str(properties.get("EventSourceArn", ""))
    if ":sqs:" not in source:
        ctx.note(f"{logical_id}: only SQS event sources are polled locally ({source or 'no source'})")
        return Provisioned(logical_id, mapping_id)
    filters = (properties.get("FilterCriteria") or {}).get("Filters") or []
    ctx.deployment.event_sources.append(
        EventSourceSpec(
            stack=ctx.stack.name,
            logical_id=logical_id,
            function=str(properties["FunctionName"]),
            queue_arn=source,
            batch_size=int(properties.get("BatchSize", 10)),
            batching_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures"
            in (properties.get("FunctionResponseTypes") or []),
            filter_patterns=tuple(_text(item["Pattern"]) for item in filters if "Pattern" in item),
            enabled=_is_true(properties.get("Enabled", True)),
        )
    )
    return Provisioned(logical_id, mapping_id)


def _http_api(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    api_id = hashlib.sha256(f"{ctx.stack.name}/{logical_id}".encode()).hexdigest()[:10]
    routes = tuple(_openapi_routes(properties.get("Body") or {}))
    ctx.deployment.apis.append(HttpApiSpec(ctx.stack.name, logical_id, api_id, routes))
    endpoint = f"https://{api_id}.execute-api.{ctx.region}.amazonaws.com"
    return Provisioned(logical_id, api_id, {"ApiEndpoint": endpoint, "ApiId": api_id})


def _openapi_routes(body: Mapping[str, Any]) -> list[HttpRouteSpec]:
    routes = []
    for path, operations in (body.get("paths") or {}).items():
        if not isinstance(operations, Mapping):
            continue
        shared_parameters = list(operations.get("parameters") or [])
        for method, operation in operations.items():
            if method in ("parameters", "summary", "description", "servers") or not isinstance(
                operation, Mapping
            ):
                continue
            integration = operation.get("x-amazon-apigateway-integration")
            if not isinstance(integration, Mapping):
                continue
            parameters = shared_parameters + list(operation.get("parameters") or [])
            declared = tuple(str(item["name"]) for item in parameters if item.get("in") == "query")
            routes.append(HttpRouteSpec(method.upper(), str(path), integration, declared))
    return routes


def _http_stage(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    stage = str(properties.get("StageName", "$default"))
    api_id = str(properties.get("ApiId", ""))
    access_log = _access_log(ctx, logical_id, properties.get("AccessLogSettings") or {})
    for index, api in enumerate(ctx.deployment.apis):
        if api.api_id == api_id:
            ctx.deployment.apis[index] = replace(
                api, stage_prefix="" if stage == "$default" else f"/{stage}", access_log=access_log
            )
    return Provisioned(logical_id, stage)


def _access_log(ctx: StackProvisioner, logical_id: str, settings: Mapping[str, Any]) -> AccessLogSpec | None:
    destination = str(settings.get("DestinationArn", ""))
    if not destination:
        return None
    if ":log-group:" not in destination:
        ctx.note(f"{logical_id}: access logs go to CloudWatch Logs only locally, not {destination}")
        return None
    group = destination.split(":log-group:", 1)[1].removesuffix(":*")
    return AccessLogSpec(group, str(settings.get("Format", "")))


def _http_integration(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    integration_id = hashlib.sha256(f"{ctx.stack.name}/{logical_id}".encode()).hexdigest()[:7]
    integration = {
        "type": str(properties.get("IntegrationType", "")).lower(),
        "integrationSubtype": properties.get("IntegrationSubtype"),
        "requestParameters": properties.get("RequestParameters") or {},
    }
    return Provisioned(logical_id, integration_id, {"Integration": integration})


def _http_route(ctx: StackProvisioner, logical_id: str, properties: dict[str, Any]) -> Provisioned:
    method, _, path = str(properties.get("RouteKey", "")).partition(" ")
    target = str(properties.get("Target", "")).removeprefix("integrations/")
    integration = next(
        (
            resource.attributes["Integration"]
            for resource in ctx.result.resources.values()
            if resource.ref == target and "Integration" in resource.attributes
        ),
        None,
    )
    api_id = str(properties.get("ApiId", ""))
    for index, api in enumerate(ctx.deployment.apis):
        if api.api_id == api_id and integration is not None:
            route = HttpRouteSpec(method.upper(), path, integration)
            ctx.deployment.apis[index] = replace(api, routes=(*api.routes, route))
    return Provisioned(logical_id, hashlib.sha256(logical_id.encode()).hexdigest()[:7])


_CREATORS: dict[str, ResourceCreator] = {
    "AWS::SQS::Queue": _queue,
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::SQS::QueueInlinePolicy": _queue_policy,
    "AWS::SNS::Topic": _topic,
    "AWS::SNS::Subscription": _subscription,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::SNS::TopicInlinePolicy": _topic_policy,
    "AWS::DynamoDB::Table": _table,
    "AWS::S3::Bucket": _bucket,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::Events::EventBus": _event_bus,
    "AWS::Events::Rule": _rule,
    "AWS::Events::Archive": _archive,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::KMS::Key": _kms_key,
    "AWS::KMS::Alias": _kms_alias,
    "AWS::SSM::Parameter": _ssm_parameter,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::Lambda::LayerVersion": _layer,
    "AWS::Lambda::Function": _function,
    "AWS::Lambda::Version": _function_version,
    "AWS::Lambda::Alias": _function_alias,
    "AWS::Lambda::EventInvokeConfig": _event_invoke_config,
    "AWS::Lambda::EventSourceMapping": _event_source_mapping,
    "AWS::ApiGatewayV2::Api": _http_api,
    "AWS::ApiGatewayV2::Stage": _http_stage,
    "AWS::ApiGatewayV2::Integration": _http_integration,
    "AWS::ApiGatewayV2::Route": _http_route,
}
