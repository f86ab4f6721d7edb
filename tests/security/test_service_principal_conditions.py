"""Service principals are granted only on condition keys their service sends.

A condition on a key the calling service leaves out of its request never matches, so the
grant silently never applies on real AWS; the local emulator evaluates no trust, key or
resource policy and cannot show it. Two such grants shipped: API Gateway's integration role
trusted ``apigateway.amazonaws.com`` only with ``aws:SourceAccount`` (every request 500), and
the alerts key gave ``events.amazonaws.com`` its data keys only with ``aws:SourceAccount``
(no alert ever delivered). Each stack is translated as ``sam deploy`` would hand it to
CloudFormation, so SAM-generated roles and Lambda permissions are checked too, and every
Allow statement to a service principal is held to ``service_principal_condition_keys.yaml``:
each key must be one the service is documented to send, and none one it is documented not to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from aws_emulator.templates import load_stack

pytestmark = pytest.mark.templates

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = Path(__file__).with_name("service_principal_condition_keys.yaml")
STACK_IDS = sorted(path.parent.name for path in (ROOT / "aws_stacks").glob("*/template.yaml"))
REGION = "us-east-1"
# The policy document of each resource type, and the kind its rules are filed under.
POLICY_OF = {
    "AWS::IAM::Role": ("trust", "AssumeRolePolicyDocument"),
    "AWS::KMS::Key": ("kms-key", "KeyPolicy"),
    "AWS::SNS::TopicPolicy": ("sns-topic", "PolicyDocument"),
    "AWS::SQS::QueuePolicy": ("sqs-queue", "PolicyDocument"),
    "AWS::S3::BucketPolicy": ("s3-bucket", "PolicyDocument"),
}
LAMBDA_PERMISSION = "AWS::Lambda::Permission"
EVIDENCE = {"documented", "public-report", "contradictory", "silent"}


@dataclass(frozen=True)
class Rules:
    """Condition keys per (service principal, policy kind), lower-cased as IAM compares them."""

    allowed: Mapping[tuple[str, str], frozenset[str]]
    forbidden: Mapping[tuple[str, str], frozenset[str]]
    any_principal: frozenset[str]


def load_rules(document: Mapping[str, Any]) -> Rules:
    """The rules file's data as look-ups for the checker."""

    def keys(names: list[str]) -> frozenset[str]:
        return frozenset(name.lower() for name in names)

    pairs = {(rule["principal"], rule["kind"]): rule for rule in document["rules"]}
    return Rules(
        allowed={pair: keys(rule["allowed"]) for pair, rule in pairs.items()},
        forbidden={pair: keys(rule["forbidden"]) for pair, rule in pairs.items()},
        any_principal=keys([entry["key"] for entry in document["any-principal"]]),
    )


RULES_DATA = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
RULES = load_rules(RULES_DATA)


def _statements(document: Any) -> list[dict[str, Any]]:
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    return [statements] if isinstance(statements, dict) else list(statements)


def _service_principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    services = principal.get("Service", []) if isinstance(principal, dict) else []
    return [services] if isinstance(services, str) else [name for name in services if isinstance(name, str)]


def condition_key_findings(document: Any, kind: str, rules: Rules) -> list[str]:
    """Condition keys a policy's service-principal grants rely on that the service does not send.

    Only Allow statements: the question is whether a grant can ever apply, and a Deny grants
    nothing. The stacks' only Denies are the TLS-only ones (Principal "*", ``aws:SecureTransport``,
    which every request carries). A Deny with a negated operator (``StringNotEquals``) on a key a
    service never sends would match that service's every request: review such a Deny by hand.
    An ``...IfExists`` operator is held to the same rules: on a key never sent it protects nothing.
    """
    findings = []
    for statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        condition = statement.get("Condition") or {}
        keys = sorted({key for block in condition.values() if isinstance(block, dict) for key in block})
        keys = [key for key in keys if key.lower() not in rules.any_principal]
        for principal in _service_principals(statement):
            pair = (principal, kind)
            if keys and pair not in rules.allowed:
                findings.append(
                    f"{principal} ({kind}) is conditioned on {', '.join(keys)} and no rule covers it: "
                    f"add a rule with its AWS documentation source to {RULES_FILE.name}"
                )
                continue
            for key in keys:
                if key.lower() in rules.forbidden.get(pair, frozenset()):
                    findings.append(
                        f"{principal} ({kind}): {key} is known not to be sent (see the rule's source), "
                        "so this grant never applies"
                    )
                elif key.lower() not in rules.allowed.get(pair, frozenset()):
                    findings.append(
                        f"{principal} ({kind}): {key} is not documented as sent: drop it, or add it to the "
                        f"rule with its AWS documentation source in {RULES_FILE.name}"
                    )
    return findings


def lambda_permission_policy(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The statement Lambda writes into the function's policy for an ``AWS::Lambda::Permission``."""
    condition: dict[str, dict[str, Any]] = {}
    if "SourceArn" in properties:
        condition["ArnLike"] = {"AWS:SourceArn": properties["SourceArn"]}
    if "SourceAccount" in properties:
        condition["StringEquals"] = {"AWS:SourceAccount": properties["SourceAccount"]}
    principal = properties.get("Principal")
    is_service = isinstance(principal, str) and principal.endswith(".amazonaws.com")
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": principal} if is_service else {"AWS": principal},
        "Action": properties.get("Action"),
    }
    return {"Statement": [{**statement, "Condition": condition} if condition else statement]}


def policy_documents(resources: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(logical id, kind, policy document) of every trust, key and resource policy in a template."""
    for logical_id, resource in resources.items():
        properties = resource.get("Properties") or {}
        if resource["Type"] == LAMBDA_PERMISSION:
            yield logical_id, "lambda-permission", lambda_permission_policy(properties)
        elif resource["Type"] in POLICY_OF:
            kind, document = POLICY_OF[resource["Type"]]
            yield logical_id, kind, properties.get(document)


@cache
def translated_resources(stack: str) -> Mapping[str, Any]:
    """The stack's resources as ``sam deploy`` hands them to CloudFormation (SAM transform applied)."""
    return load_stack(ROOT / "aws_stacks" / stack, REGION).template["Resources"]


# ------------------------------------------------------------------ the checker itself


def test_the_old_api_gateway_trust_policy_is_reported():
    # Given the integration role's trust policy as it shipped, conditioned on aws:SourceAccount
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "apigateway.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            }
        ],
    }

    # When it is checked
    findings = condition_key_findings(trust, "trust", RULES)

    # Then the dead condition is reported, naming the principal and the key
    assert len(findings) == 1
    assert "apigateway.amazonaws.com" in findings[0]
    assert "aws:SourceAccount" in findings[0]
    assert "known not to be sent" in findings[0]


def test_the_old_alerts_key_statement_is_reported_for_eventbridge_only():
    # Given the alerts key's statement as it shipped: EventBridge and CloudWatch alike on aws:SourceAccount
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "cloudwatch.amazonaws.com"]},
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": {"Ref": "AWS::AccountId"},
                        "kms:EncryptionContext:aws:sns:topicArn": {"Ref": "AlertsTopic"},
                    }
                },
            }
        ],
    }

    # When it is checked
    findings = condition_key_findings(key_policy, "kms-key", RULES)

    # Then EventBridge's aws:SourceAccount is reported; CloudWatch sends it; the encryption context is SNS's
    assert len(findings) == 1
    assert "events.amazonaws.com" in findings[0]
    assert "aws:SourceAccount" in findings[0]
    assert "cloudwatch.amazonaws.com" not in findings[0]


def test_a_conditioned_pair_without_a_rule_asks_for_one_with_its_source():
    # Given a service and policy kind the rules file says nothing about
    topic_policy = {
        "Statement": {
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sns:Publish",
            "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::bucket"}},
        }
    }

    # When it is checked
    # Then the finding names the pair and asks for a rule with its documentation
    assert condition_key_findings(topic_policy, "sns-topic", RULES) == [
        "s3.amazonaws.com (sns-topic) is conditioned on aws:SourceArn and no rule covers it: "
        "add a rule with its AWS documentation source to service_principal_condition_keys.yaml"
    ]


def test_keys_outside_the_rule_are_reported_and_keys_every_request_carries_pass():
    # Given SNS delivering to a queue on a key it is not known to send, next to one every request carries
    queue_policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Condition": {
                    "ArnEquals": {"AWS:SourceArn": "arn:aws:sns:us-east-1:111122223333:topic"},
                    "StringEquals": {"aws:SourceVpce": "vpce-1"},
                    "Bool": {"aws:SecureTransport": "true"},
                },
            }
        ]
    }

    # When it is checked
    findings = condition_key_findings(queue_policy, "sqs-queue", RULES)

    # Then only the unknown key is reported (keys compare case-insensitively, as in IAM)
    assert len(findings) == 1
    assert "sns.amazonaws.com" in findings[0]
    assert "aws:SourceVpce" in findings[0]


def test_denies_other_principals_and_unconditioned_grants_are_out_of_scope():
    # Given the TLS-only deny, a grant to an account, and an unconditioned service grant
    bucket_policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "s3:GetObject",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}},
            },
            {
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
            },
        ]
    }

    # When it is checked
    # Then nothing is reported
    assert condition_key_findings(bucket_policy, "s3-bucket", RULES) == []


def test_a_lambda_permission_is_checked_as_the_condition_lambda_writes():
    # Given an EventBridge permission on its rule, and an S3 one on its account (no rule for S3)
    from_rule = {"Principal": "events.amazonaws.com", "SourceArn": {"Fn::GetAtt": ["Rule", "Arn"]}}
    from_bucket = {"Principal": "s3.amazonaws.com", "SourceAccount": "111122223333"}

    # When each is checked
    # Then the rule's ARN passes and the unruled pair asks for a rule
    assert condition_key_findings(lambda_permission_policy(from_rule), "lambda-permission", RULES) == []
    [finding] = condition_key_findings(lambda_permission_policy(from_bucket), "lambda-permission", RULES)
    assert "s3.amazonaws.com (lambda-permission)" in finding
    assert "AWS:SourceAccount" in finding


# ------------------------------------------------------------------ the rules file


def test_every_rule_and_global_key_has_a_source():
    entries = [*RULES_DATA["rules"], *RULES_DATA["any-principal"]]
    assert entries
    for entry in entries:
        name = entry.get("key") or (entry["principal"], entry["kind"])
        assert entry["source"], name
        for source in entry["source"]:
            assert source["url"].startswith("https://"), name
            assert source["quote"].strip(), name


def test_every_rule_is_well_formed_and_unique():
    kinds = {kind for kind, _ in POLICY_OF.values()} | {"lambda-permission"}
    pairs = [(rule["principal"], rule["kind"]) for rule in RULES_DATA["rules"]]
    assert len(pairs) == len(set(pairs))
    for rule in RULES_DATA["rules"]:
        pair = (rule["principal"], rule["kind"])
        assert rule["kind"] in kinds, pair
        assert rule["evidence"] in EVIDENCE, pair
        assert not RULES.allowed[pair] & RULES.forbidden[pair], pair


# ------------------------------------------------------------------ the stacks


@pytest.mark.parametrize("stack", STACK_IDS)
def test_service_principals_are_conditioned_only_on_keys_their_service_sends(stack: str):
    # Given every trust, key and resource policy of the translated stack
    documents = list(policy_documents(translated_resources(stack)))
    assert documents

    # When each is checked against the rules
    findings = [
        f"{logical_id}: {finding}"
        for logical_id, kind, document in documents
        for finding in condition_key_findings(document, kind, RULES)
    ]

    # Then no grant relies on a key its service does not send
    assert findings == []


def test_every_policy_kind_of_the_stacks_is_walked():
    # Given every resource of every translated stack whose properties hold a policy naming principals
    with_principals = {
        resource["Type"]
        for stack in STACK_IDS
        for resource in translated_resources(stack).values()
        for value in (resource.get("Properties") or {}).values()
        if any("Principal" in statement for statement in _statements(value))
    }
    walked = {kind for stack in STACK_IDS for _, kind, _ in policy_documents(translated_resources(stack))}

    # Then the checker reads them all, and the stacks exercise every kind it knows
    assert with_principals <= set(POLICY_OF)
    assert walked == {kind for kind, _ in POLICY_OF.values()} | {"lambda-permission"}
