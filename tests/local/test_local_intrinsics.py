"""Intrinsic functions evaluated as CloudFormation does, for the runner's direct provisioning."""

from __future__ import annotations

from typing import Any

import pytest

from aws_emulator.intrinsics import (
    IntrinsicError,
    PseudoParameters,
    Resolver,
    referenced_resources,
)

RESOURCES = {
    "Queue": ("https://sqs/q", {"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "QueueName": "q"}),
    "Topic": ("arn:aws:sns:us-east-1:123456789012:t", {"TopicName": "t"}),
}


def resolver(**parameters: Any) -> Resolver:
    def ref(logical_id: str) -> Any:
        if logical_id not in RESOURCES:
            raise IntrinsicError(logical_id)
        return RESOURCES[logical_id][0]

    def get_att(logical_id: str, attribute: str) -> Any:
        return RESOURCES[logical_id][1][attribute]

    exports = {"Ingest-TopicArn": "arn:aws:sns:us-east-1:123456789012:t"}
    return Resolver(
        PseudoParameters("Errors"),
        parameters,
        conditions={
            "HasTopicArn": {"Fn::Not": [{"Fn::Equals": [{"Ref": "TopicArn"}, ""]}]},
            "UseImport": {"Fn::Not": [{"Condition": "HasTopicArn"}]},
            "Both": {"Fn::And": [{"Condition": "UseImport"}, {"Fn::Equals": [{"Ref": "Days"}, 0]}]},
            "Either": {"Fn::Or": [{"Condition": "HasTopicArn"}, {"Condition": "Both"}]},
        },
        mappings={"Sizes": {"us-east-1": {"Batch": 10}}},
        ref=ref,
        get_att=get_att,
        import_value=lambda name: exports[name],
    )


def test_ref_returns_parameters_pseudo_parameters_and_resources() -> None:
    # Given a stack with a parameter and a queue
    subject = resolver(TopicArn="")

    # When references are resolved
    values = subject.resolve(
        [{"Ref": "TopicArn"}, {"Ref": "AWS::StackName"}, {"Ref": "AWS::Region"}, {"Ref": "Queue"}]
    )

    # Then each comes from its source
    assert values == ["", "Errors", "us-east-1", "https://sqs/q"]


def test_sub_expands_references_attributes_literals_and_variables() -> None:
    subject = resolver(Stage="dev")

    value = subject.resolve(
        {
            "Fn::Sub": [
                "${AWS::StackName}-${Stage}/${Queue.QueueName}/${Topic}/${!Literal}/${Extra}",
                {"Extra": {"Ref": "AWS::AccountId"}},
            ]
        }
    )

    assert value == "Errors-dev/q/arn:aws:sns:us-east-1:123456789012:t/${Literal}/123456789012"


def test_conditions_choose_branches_and_no_value_disappears() -> None:
    # Given an empty TopicArn, so the import branch applies
    subject = resolver(TopicArn="", Days="0")

    # When a property uses Fn::If with AWS::NoValue
    value = subject.resolve(
        {
            "Topic": {
                "Fn::If": [
                    "HasTopicArn",
                    {"Ref": "TopicArn"},
                    {"Fn::ImportValue": {"Fn::Sub": "Ingest-TopicArn"}},
                ]
            },
            "Alarm": {"Fn::If": ["HasTopicArn", ["x"], {"Ref": "AWS::NoValue"}]},
            "List": [1, {"Ref": "AWS::NoValue"}, 2],
        }
    )

    # Then the import is used, the NoValue key is gone and the list shrinks
    assert value == {"Topic": "arn:aws:sns:us-east-1:123456789012:t", "List": [1, 2]}
    assert subject.condition("Both") is True
    assert subject.condition("Either") is True


def test_conditions_compare_numbers_as_text() -> None:
    assert resolver(TopicArn="x", Days="30").condition("Both") is False


def test_join_select_split_find_in_map_and_get_att() -> None:
    subject = resolver()

    assert subject.resolve({"Fn::Join": ["_", {"Fn::Split": ["-", {"Ref": "AWS::StackName"}]}]}) == "Errors"
    assert subject.resolve({"Fn::Join": ["_", {"Fn::Split": ["-", "a-b-c"]}]}) == "a_b_c"
    assert subject.resolve({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}) == "y"
    assert subject.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "AWS::Region"}, "Batch"]}) == 10
    assert subject.resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == "arn:aws:sqs:us-east-1:123456789012:q"
    assert subject.resolve({"Fn::GetAtt": "Topic.TopicName"}) == "t"


def test_unknown_references_are_errors() -> None:
    subject = resolver()

    with pytest.raises(IntrinsicError):
        subject.resolve({"Ref": "Missing"})
    with pytest.raises(IntrinsicError):
        subject.resolve({"Fn::Select": [5, ["a"]]})
    with pytest.raises(IntrinsicError):
        subject.condition("NoSuchCondition")


def test_referenced_resources_follow_ref_getatt_and_sub() -> None:
    # Given properties that refer to resources three ways (and to a parameter)
    properties = {
        "A": {"Ref": "Queue"},
        "B": {"Fn::GetAtt": ["Topic", "TopicName"]},
        "C": {"Fn::Sub": "${Bucket.Arn}/*-${AWS::Region}-${Stage}-${!Table}"},
        "D": {"Fn::Sub": ["${X}", {"X": {"Ref": "Table2"}}]},
    }

    # When dependencies are collected among the template's resources
    found = referenced_resources(properties, {"Queue", "Topic", "Bucket", "Table", "Table2"})

    # Then escaped ${!…} and parameters are not dependencies
    assert found == {"Queue", "Topic", "Bucket", "Table2"}
