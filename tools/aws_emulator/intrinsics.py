"""CloudFormation intrinsic functions, evaluated the way CloudFormation would.

The local runner provisions resources straight from the translated templates,
so it resolves ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If``
and friends itself. What a ``Ref`` or ``Fn::GetAtt`` of a resource returns is
asked of a callback (the provisioner knows the physical ids); exports of
stacks provisioned earlier answer ``Fn::ImportValue``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

NO_VALUE: Any = object()
"""What ``Ref: AWS::NoValue`` evaluates to; dropped from the enclosing list or mapping."""

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class IntrinsicError(ValueError):
    """A template uses an intrinsic the runner cannot evaluate, or references something unknown."""


@dataclass(frozen=True)
class PseudoParameters:
    """The ``AWS::…`` values of one stack."""

    stack_name: str
    region: str = "us-east-1"
    account_id: str = "123456789012"
    partition: str = "aws"
    url_suffix: str = "amazonaws.com"

    @property
    def stack_id(self) -> str:
        return (
            f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:"
            f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
        )

    def as_mapping(self) -> dict[str, Any]:
        return {
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::NotificationARNs": [],
        }


RefLookup = Callable[[str], Any]
AttributeLookup = Callable[[str, str], Any]
ImportLookup = Callable[[str], Any]


def _missing_resource(logical_id: str, *_: str) -> Any:
    raise IntrinsicError(f"resource {logical_id} is not available")


def _missing_import(name: str) -> Any:
    raise IntrinsicError(f"no stack exports {name!r}")


@dataclass
class Resolver:
    """Evaluates intrinsic functions within one stack's template."""

    pseudo: PseudoParameters
    parameters: Mapping[str, Any] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] = field(default_factory=dict)
    ref: RefLookup = _missing_resource
    get_att: AttributeLookup = _missing_resource
    import_value: ImportLookup = _missing_import
    _condition_values: dict[str, bool] = field(default_factory=dict, init=False, repr=False)

    def resolve(self, value: Any) -> Any:
        """The fully evaluated value; ``NO_VALUE`` is removed from lists and mappings."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Condition" and isinstance(argument, str) and argument in self.conditions:
                # Inside Conditions, {"Condition": name} refers to another condition.
                return self.condition(argument)
            function = _FUNCTIONS.get(key)
            if function is not None:
                return function(self, argument)
        resolved = {name: self.resolve(item) for name, item in value.items()}
        return {name: item for name, item in resolved.items() if item is not NO_VALUE}

    def condition(self, name: str) -> bool:
        """Evaluate (once) a named condition of the template."""
        if name not in self._condition_values:
            if name not in self.conditions:
                raise IntrinsicError(f"unknown condition {name!r}")
            self._condition_values[name] = bool(self.resolve(self.conditions[name]))
        return self._condition_values[name]

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            name = self.resolve(name)
        if name == "AWS::NoValue":
            return NO_VALUE
        pseudo = self.pseudo.as_mapping()
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.ref(name)


def _as_list(argument: Any, name: str, size: int | None = None) -> list[Any]:
    if not isinstance(argument, list) or (size is not None and len(argument) != size):
        raise IntrinsicError(f"{name} takes a list{f' of {size}' if size else ''}, got {argument!r}")
    return argument


def _get_att(resolver: Resolver, argument: Any) -> Any:
    if isinstance(argument, str):
        argument = argument.split(".", 1)
    logical_id, attribute = _as_list(argument, "Fn::GetAtt", 2)
    return resolver.get_att(str(logical_id), str(resolver.resolve(attribute)))


def _sub(resolver: Resolver, argument: Any) -> str:
    if isinstance(argument, str):
        text, variables = argument, {}
    else:
        text, variables = _as_list(argument, "Fn::Sub", 2)
        variables = resolver.resolve(variables)

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("!"):
            return "${" + expression[1:] + "}"
        if expression in variables:
            value = variables[expression]
        elif "." in expression and not expression.startswith("AWS::"):
            logical_id, attribute = expression.split(".", 1)
            value = resolver.get_att(logical_id, attribute)
        else:
            value = resolver.resolve({"Ref": expression})
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (list, dict)):
            raise IntrinsicError(f"Fn::Sub variable {expression} is not a string")
        return str(value)

    return _SUB_VARIABLE.sub(replace, str(resolver.resolve(text)))


def _join(resolver: Resolver, argument: Any) -> str:
    delimiter, items = _as_list(argument, "Fn::Join", 2)
    values = resolver.resolve(items)
    if not isinstance(values, list):
        raise IntrinsicError("Fn::Join needs a list of values")
    return str(resolver.resolve(delimiter)).join(_scalar_text(value) for value in values)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _if(resolver: Resolver, argument: Any) -> Any:
    name, when_true, when_false = _as_list(argument, "Fn::If", 3)
    return resolver.resolve(when_true if resolver.condition(str(name)) else when_false)


def _equals(resolver: Resolver, argument: Any) -> bool:
    left, right = (resolver.resolve(item) for item in _as_list(argument, "Fn::Equals", 2))
    return _scalar_text(left) == _scalar_text(right) if not isinstance(left, (list, dict)) else left == right


def _not(resolver: Resolver, argument: Any) -> bool:
    (operand,) = _as_list(argument, "Fn::Not", 1)
    return not resolver.resolve(operand)


def _and(resolver: Resolver, argument: Any) -> bool:
    return all(resolver.resolve(item) for item in _as_list(argument, "Fn::And"))


def _or(resolver: Resolver, argument: Any) -> bool:
    return any(resolver.resolve(item) for item in _as_list(argument, "Fn::Or"))


def _select(resolver: Resolver, argument: Any) -> Any:
    index, items = _as_list(argument, "Fn::Select", 2)
    values = resolver.resolve(items)
    position = int(resolver.resolve(index))
    if not isinstance(values, list) or not 0 <= position < len(values):
        raise IntrinsicError(f"Fn::Select index {position} out of range")
    return values[position]


def _split(resolver: Resolver, argument: Any) -> list[str]:
    delimiter, text = _as_list(argument, "Fn::Split", 2)
    return str(resolver.resolve(text)).split(str(resolver.resolve(delimiter)))


def _import_value(resolver: Resolver, argument: Any) -> Any:
    return resolver.import_value(str(resolver.resolve(argument)))


def _find_in_map(resolver: Resolver, argument: Any) -> Any:
    name, top, second = (resolver.resolve(item) for item in _as_list(argument, "Fn::FindInMap")[:3])
    try:
        return resolver.mappings[name][top][second]
    except KeyError as error:
        raise IntrinsicError(f"Fn::FindInMap {name}/{top}/{second} not found") from error


def _base64(resolver: Resolver, argument: Any) -> str:
    return base64.b64encode(str(resolver.resolve(argument)).encode("utf-8")).decode("ascii")


def _get_azs(resolver: Resolver, argument: Any) -> list[str]:
    region = resolver.resolve(argument) or resolver.pseudo.region
    return [f"{region}{zone}" for zone in "abc"]


def _to_json_string(resolver: Resolver, argument: Any) -> str:
    return json.dumps(resolver.resolve(argument), separators=(",", ":"))


def _length(resolver: Resolver, argument: Any) -> int:
    values = resolver.resolve(argument)
    if not isinstance(values, list):
        raise IntrinsicError("Fn::Length needs a list")
    return len(values)


_FUNCTIONS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": _and,
    "Fn::Or": _or,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::ImportValue": _import_value,
    "Fn::FindInMap": _find_in_map,
    "Fn::Base64": _base64,
    "Fn::GetAZs": _get_azs,
    "Fn::ToJsonString": _to_json_string,
    "Fn::Length": _length,
}


def referenced_resources(value: Any, resource_ids: frozenset[str] | set[str]) -> set[str]:
    """Logical ids of resources a value refers to (Ref, GetAtt, Sub, DependsOn-free)."""
    return {name for name in _references(value) if name in resource_ids}


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        finder = _REFERENCE_FINDERS.get(next(iter(value))) if len(value) == 1 else None
        if finder is not None:
            yield from finder(next(iter(value.values())))
        else:
            for item in value.values():
                yield from _references(item)


def _ref_targets(argument: Any) -> Iterator[str]:
    if isinstance(argument, str):
        yield argument


def _get_att_targets(argument: Any) -> Iterator[str]:
    target = argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
    if isinstance(target, str):
        yield target


def _sub_targets(argument: Any) -> Iterator[str]:
    text = argument if isinstance(argument, str) else argument[0]
    if isinstance(text, str):
        for expression in _SUB_VARIABLE.findall(text):
            if not expression.startswith("!"):
                yield expression.split(".", 1)[0]
    if isinstance(argument, list) and len(argument) > 1:
        yield from _references(argument[1])


_REFERENCE_FINDERS: dict[Any, Callable[[Any], Iterator[str]]] = {
    "Ref": _ref_targets,
    "Fn::GetAtt": _get_att_targets,
    "Fn::Sub": _sub_targets,
}


def import_names(value: Any) -> Iterator[Any]:
    """The (unresolved) export names a value imports with ``Fn::ImportValue``."""
    if isinstance(value, list):
        for item in value:
            yield from import_names(item)
    elif isinstance(value, dict):
        if len(value) == 1 and "Fn::ImportValue" in value:
            yield value["Fn::ImportValue"]
            return
        for item in value.values():
            yield from import_names(item)


def rule_failures(rules: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[str]:
    """What a template's ``Rules`` refuse for these parameter values, as CloudFormation checks them.

    CloudFormation evaluates rules before it creates anything: each rule whose
    ``RuleCondition`` holds (no condition always holds) must have every
    ``Assertion`` hold, else the stack fails with the ``AssertDescription``.
    The rule functions evaluated here are those the templates use: ``Ref``,
    ``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or`` and ``Fn::Contains``.
    """
    failures = []
    for name, rule in rules.items():
        if "RuleCondition" in rule and not _rule_value(rule["RuleCondition"], parameters):
            continue
        for assertion in rule.get("Assertions", []):
            if not _rule_value(assertion["Assert"], parameters):
                failures.append(f"{name}: {assertion.get('AssertDescription', 'assertion failed')}")
    return failures


def _rule_value(node: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_rule_value(item, parameters) for item in node]
    if not isinstance(node, dict):
        return str(node)
    if set(node) == {"Ref"}:
        if node["Ref"] not in parameters:
            raise IntrinsicError(f"rule refers to unknown parameter {node['Ref']}")
        value = parameters[node["Ref"]]
        return [str(item) for item in value] if isinstance(value, list) else str(value)
    [(function, argument)] = node.items()
    values = _rule_value(argument, parameters)
    if function == "Fn::Equals":
        return values[0] == values[1]
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::And":
        return all(values)
    if function == "Fn::Or":
        return any(values)
    if function == "Fn::Contains":
        return values[1] in values[0]
    raise IntrinsicError(f"rule function {function} is not evaluated locally")
