"""IAM least privilege in every stack: named actions, scoped resources, no SAM-generated roles.

SAM's generated function role carries AWS managed policies with ``Resource: "*"``
(``AWSLambdaBasicExecutionRole`` for CloudWatch Logs, ``AWSLambdaSQSQueueExecutionRole``
for every queue in the account, ``AWSXrayWriteOnlyAccess``), and SAM has no opt-out.
So every function runs as an explicit role of its own stack, scoped to its queue,
its log group and its data. These tests keep it that way: no ``*`` in any action,
``Resource: "*"`` only for the X-Ray actions that have no resource-level permissions,
and no function left to SAM's generated role.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aws_emulator.templates import load_stack, load_template

pytestmark = pytest.mark.templates

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "aws_stacks").glob("*/template.yaml"))
STACK_IDS = [path.parent.name for path in TEMPLATES]
TEMPLATE_DATA = {path.parent.name: load_template(path) for path in TEMPLATES}
FUNCTION = "AWS::Serverless::Function"
ROLE = "AWS::IAM::Role"
POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
QUEUE_CONSUMER_ACTIONS = frozenset(
    {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
)
LOG_ACTIONS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})
# X-Ray actions without resource-level permissions: the only ones that may name Resource "*".
XRAY_WITHOUT_RESOURCES = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    }
)


@dataclass(frozen=True)
class Grant:
    """One identity-policy statement and where it was declared."""

    where: str
    statement: dict[str, Any]

    @property
    def actions(self) -> list[str]:
        action = self.statement.get("Action", [])
        return [action] if isinstance(action, str) else list(action)

    @property
    def resources(self) -> list[Any]:
        resource = self.statement.get("Resource", [])
        return resource if isinstance(resource, list) else [resource]


def _statements(document: Any) -> list[dict[str, Any]]:
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    return [statements] if isinstance(statements, dict) else list(statements)


def grants_in(template: dict[str, Any]) -> Iterator[Grant]:
    """Every identity-policy statement of the template: roles, IAM policies, functions' ``Policies``."""
    function_globals = template.get("Globals", {}).get("Function", {})
    sources = [("Globals.Function", FUNCTION, function_globals)] if function_globals else []
    sources += [
        (logical_id, resource["Type"], resource.get("Properties", {}))
        for logical_id, resource in template.get("Resources", {}).items()
    ]
    for logical_id, kind, properties in sources:
        if kind == ROLE:
            for policy in properties.get("Policies", []):
                for index, statement in enumerate(_statements(policy.get("PolicyDocument"))):
                    yield Grant(f"{logical_id}/{policy.get('PolicyName')}/{index}", statement)
        elif kind in POLICY_TYPES:
            for index, statement in enumerate(_statements(properties.get("PolicyDocument"))):
                yield Grant(f"{logical_id}/{index}", statement)
        elif kind == FUNCTION:
            policies = properties.get("Policies", [])
            for number, policy in enumerate([policies] if isinstance(policies, (str, dict)) else policies):
                # A string (managed policy) or a SAM policy template hides its statements: report it whole.
                statements = _statements(policy) or [{"Action": "*", "Resource": "*", "Policy": policy}]
                for index, statement in enumerate(statements):
                    yield Grant(f"{logical_id}/Policies/{number}/{index}", statement)


def violations(template: dict[str, Any]) -> list[str]:
    """Statements with a wildcard action, a NotAction/NotResource, or ``*`` resources beyond X-Ray."""
    found = []
    for grant in grants_in(template):
        if "NotAction" in grant.statement or "NotResource" in grant.statement:
            found.append(f"{grant.where}: NotAction/NotResource")
        found += [f"{grant.where}: action {action}" for action in grant.actions if "*" in action]
        if "*" in grant.resources and not set(grant.actions) <= XRAY_WITHOUT_RESOURCES:
            found.append(f"{grant.where}: Resource * for {', '.join(grant.actions)}")
    return found


def functions_without_own_role(template: dict[str, Any]) -> list[str]:
    """Functions SAM would give its generated role, or that share or point outside the template's roles."""
    resources = template.get("Resources", {})
    global_role = template.get("Globals", {}).get("Function", {}).get("Role")
    seen: dict[str, str] = {}
    found = []
    for logical_id, resource in resources.items():
        if resource["Type"] != FUNCTION:
            continue
        role = resource.get("Properties", {}).get("Role", global_role)
        target = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
        if target is None or resources.get(target, {}).get("Type") != ROLE:
            found.append(f"{logical_id}: no explicit role of this stack")
        elif target in seen:
            found.append(f"{logical_id}: shares {target} with {seen[target]}")
        else:
            seen[target] = logical_id
    return found


def role_of(template: dict[str, Any], function: str) -> tuple[str, dict[str, Any]]:
    logical_id = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return logical_id, template["Resources"][logical_id]["Properties"]


def functions(template: dict[str, Any]) -> list[str]:
    return [name for name, resource in template["Resources"].items() if resource["Type"] == FUNCTION]


FUNCTIONS = [(stack, name) for stack, template in TEMPLATE_DATA.items() for name in functions(template)]
FUNCTION_IDS = [f"{stack}/{name}" for stack, name in FUNCTIONS]


# ------------------------------------------------------------------ the checker itself


def test_wildcard_actions_and_unscoped_resources_are_reported():
    # Given a role and a function policy with the grants SAM's managed policies would bring
    template = {
        "Resources": {
            "Role": {
                "Type": ROLE,
                "Properties": {
                    "Policies": [
                        {
                            "PolicyName": "p",
                            "PolicyDocument": {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:queue"},
                                    {"Effect": "Allow", "Action": ["kms:GenerateDataKey*"], "Resource": "k"},
                                    {"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"},
                                    {"Effect": "Allow", "Action": "xray:PutTraceSegments", "Resource": "*"},
                                    {"Effect": "Allow", "NotAction": "iam:PassRole", "Resource": "arn:x"},
                                ]
                            },
                        }
                    ]
                },
            },
            "Function": {
                "Type": FUNCTION,
                "Properties": {"Policies": ["AWSLambdaSQSQueueExecutionRole"]},
            },
        }
    }

    # When the grants are checked
    reported = violations(template)

    # Then every wildcard is reported, and the X-Ray statement alone passes
    assert reported == [
        "Role/p/0: action sqs:*",
        "Role/p/1: action kms:GenerateDataKey*",
        "Role/p/2: Resource * for logs:PutLogEvents",
        "Role/p/4: NotAction/NotResource",
        "Function/Policies/0/0: action *",
        "Function/Policies/0/0: Resource * for *",
    ]


def test_functions_left_to_sams_generated_role_or_sharing_a_role_are_reported():
    # Given functions without a role, with a role from elsewhere, and two sharing one role
    template = {
        "Resources": {
            "Shared": {"Type": ROLE, "Properties": {}},
            "Own": {"Type": ROLE, "Properties": {}},
            "Bare": {"Type": FUNCTION, "Properties": {"Policies": []}},
            "Imported": {"Type": FUNCTION, "Properties": {"Role": "arn:aws:iam::1:role/x"}},
            "First": {"Type": FUNCTION, "Properties": {"Role": {"Fn::GetAtt": ["Shared", "Arn"]}}},
            "Second": {"Type": FUNCTION, "Properties": {"Role": {"Fn::GetAtt": ["Shared", "Arn"]}}},
            "Alone": {"Type": FUNCTION, "Properties": {"Role": {"Fn::GetAtt": ["Own", "Arn"]}}},
        }
    }

    # When the functions' roles are checked
    # Then all but the function with a role of its own are reported
    assert functions_without_own_role(template) == [
        "Bare: no explicit role of this stack",
        "Imported: no explicit role of this stack",
        "Second: shares Shared with First",
    ]


# ------------------------------------------------------------------ the stacks


def test_every_stack_is_checked():
    assert set(STACK_IDS) == {
        "StatusCallbackHandler",
        "SaveStatusCallbackToS3",
        "SaveStatusCallbackToDynamo",
        "CheckForStatusCallbackErrors",
    }
    assert all(list(grants_in(template)) for template in TEMPLATE_DATA.values())


@pytest.mark.parametrize("stack", STACK_IDS)
def test_no_wildcard_action_and_resource_star_only_for_xray(stack: str):
    assert violations(TEMPLATE_DATA[stack]) == []


@pytest.mark.parametrize("stack", STACK_IDS)
def test_every_function_runs_as_an_explicit_role_of_its_own(stack: str):
    template = TEMPLATE_DATA[stack]
    assert functions_without_own_role(template) == []
    # With a Role, SAM ignores Policies: a grant written there would be dead text.
    assert [
        name for name in functions(template) if "Policies" in template["Resources"][name]["Properties"]
    ] == []
    assert "Policies" not in template.get("Globals", {}).get("Function", {})


@pytest.mark.parametrize("stack", STACK_IDS)
def test_roles_carry_no_managed_policies_and_no_fixed_names(stack: str):
    roles = {k: v for k, v in TEMPLATE_DATA[stack]["Resources"].items() if v["Type"] == ROLE}
    assert roles
    for logical_id, role in roles.items():
        # An AWS managed policy would bring back the account-wide grants the explicit role replaces.
        assert "ManagedPolicyArns" not in role["Properties"], logical_id
        assert "RoleName" not in role["Properties"], logical_id


@pytest.mark.parametrize("stack", STACK_IDS)
def test_sam_generates_no_role_when_the_stack_is_translated(stack: str):
    # Given the stack as `sam deploy` hands it to CloudFormation (includes inlined, SAM transform applied)
    translated = load_stack(ROOT / "aws_stacks" / stack, "us-east-1").template["Resources"]

    # Then the roles are exactly the template's own, and every Lambda function runs as one of them
    declared = {k for k, v in TEMPLATE_DATA[stack]["Resources"].items() if v["Type"] == ROLE}
    assert {k for k, v in translated.items() if v["Type"] == ROLE} == declared
    lambdas = [v["Properties"] for v in translated.values() if v["Type"] == "AWS::Lambda::Function"]
    assert lambdas
    assert all(function["Role"]["Fn::GetAtt"][0] in declared for function in lambdas)
    assert not [k for k, v in translated.items() if v["Type"] in POLICY_TYPES]


@pytest.mark.parametrize(("stack", "function"), FUNCTIONS, ids=FUNCTION_IDS)
def test_a_function_role_reaches_only_its_own_queue_and_log_group(stack: str, function: str):
    # Given a function and the explicit role it runs as
    template = TEMPLATE_DATA[stack]
    properties = template["Resources"][function]["Properties"]
    role_id, role = role_of(template, function)
    grants = [grant for grant in grants_in(template) if grant.where.startswith(f"{role_id}/")]

    # Then only Lambda may assume the role
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"

    # And it consumes exactly the queues its SQS event sources read, in statements of consumer actions only
    queues = [
        event["Properties"]["Queue"]
        for event in properties.get("Events", {}).values()
        if event["Type"] == "SQS"
    ]
    consuming = [grant for grant in grants if set(grant.actions) & QUEUE_CONSUMER_ACTIONS]
    assert [resource for grant in consuming for resource in grant.resources] == queues
    assert all(set(grant.actions) == QUEUE_CONSUMER_ACTIONS for grant in consuming)

    # And it writes logs only to its own log group (whose Arn attribute covers the group's streams)
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    [log_grant] = [grant for grant in grants if any(action.startswith("logs:") for action in grant.actions)]
    assert set(log_grant.actions) == LOG_ACTIONS
    assert log_grant.resources == [{"Fn::GetAtt": [log_group, "Arn"]}]


@pytest.mark.parametrize("stack", STACK_IDS)
def test_each_resource_star_statement_has_a_comment_saying_why(stack: str):
    # Given the template text and the statements that name Resource "*"
    lines = (ROOT / "aws_stacks" / stack / "template.yaml").read_text(encoding="utf-8").splitlines()
    unscoped = [grant for grant in grants_in(TEMPLATE_DATA[stack]) if "*" in grant.resources]

    # Then each has a Sid, and the line above it, in its resource, is a comment (why "*" is the only choice)
    for grant in unscoped:
        sid = grant.statement.get("Sid")
        assert sid, grant.where
        block = resource_lines(lines, grant.where.split("/", 1)[0])
        [index] = [i for i, line in enumerate(block) if line.strip() == f"- Sid: {sid}"]
        assert block[index - 1].strip().startswith("# "), grant.where


def resource_lines(lines: list[str], logical_id: str) -> list[str]:
    """The template lines of one resource, from its logical id to the next resource's comment or id."""
    start = lines.index(f"  {logical_id}:")
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].startswith("  ") and not lines[i].startswith("   ")
        ),
        len(lines),
    )
    return lines[start:end]
