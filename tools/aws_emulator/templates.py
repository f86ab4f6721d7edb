"""Read the stacks' SAM templates and expand them into plain CloudFormation.

Each folder of ``aws_stacks/`` with a ``template.yaml`` is one stack, named
after the folder. The SAM transform is applied offline with
``samtranslator`` (no IAM look-ups), after the steps ``sam deploy`` does
before CloudFormation sees a template: ``AWS::Include`` files are inlined and
local code folders are swapped for placeholder S3 locations. The placeholder
keeps the folder, so every translated ``AWS::Lambda::Function`` still says
where its code lives.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from boto3.session import Session
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from aws_emulator.intrinsics import import_names


def load_template(path: str | Path) -> dict[str, Any]:
    """A template file as plain data, short-form tags (``!Ref``, ``!GetAtt a.b``) in their long form.

    SAM's own parser, so tests and the runner read a template exactly as ``sam`` does.
    """
    document = yaml_parse(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


TEMPLATE_FILE = "template.yaml"
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
LOCAL_CODE_BUCKET = "local-code"
_S3_PREFIX = "s3://"


class TemplateError(ValueError):
    """A template the runner cannot expand (bad include, unsupported transform …)."""


@dataclass(frozen=True)
class StackTemplate:
    """One stack: its folder and its template expanded to plain CloudFormation."""

    name: str
    folder: Path
    template: Mapping[str, Any]

    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]:
        return self.template.get("Resources") or {}

    @property
    def parameters(self) -> Mapping[str, Mapping[str, Any]]:
        return self.template.get("Parameters") or {}

    @property
    def outputs(self) -> Mapping[str, Mapping[str, Any]]:
        return self.template.get("Outputs") or {}

    def code_folder(self, code: Any) -> Path | None:
        """The local folder behind a translated function's ``Code`` placeholder."""
        if isinstance(code, Mapping) and code.get("S3Bucket") == LOCAL_CODE_BUCKET:
            return (self.folder / unquote(str(code.get("S3Key", "")))).resolve()
        return None


@dataclass
class _Placeholders:
    folder: Path
    replaced: list[str] = field(default_factory=list)

    def code_uri(self, uri: Any) -> Any:
        if not isinstance(uri, str) or uri.startswith(_S3_PREFIX):
            return uri
        self.replaced.append(uri)
        return f"{_S3_PREFIX}{LOCAL_CODE_BUCKET}/{quote(uri.strip() or '.')}"


def _no_managed_policy_lookup() -> dict[str, str]:
    """No IAM call: the translator falls back to its bundled list of AWS managed policies."""
    return {}


def discover_stack_folders(stacks_dir: Path) -> list[Path]:
    """Every folder directly under ``stacks_dir`` that holds a ``template.yaml``."""
    return sorted(path.parent for path in Path(stacks_dir).glob(f"*/{TEMPLATE_FILE}"))


def load_stack(folder: Path, region: str) -> StackTemplate:
    """Load, inline includes, and (for SAM templates) translate one stack's template."""
    folder = Path(folder).resolve()
    template = _inline_includes(load_template(folder / TEMPLATE_FILE), folder)
    transforms = template.get("Transform") or []
    transforms = [transforms] if isinstance(transforms, str) else list(transforms)
    unsupported = [name for name in transforms if name != SAM_TRANSFORM]
    if unsupported:
        raise TemplateError(f"{folder.name}: transform(s) {unsupported} are not supported locally")
    if transforms:
        template = _translate(template, folder, region)
    return StackTemplate(name=folder.name, folder=folder, template=template)


def _inline_includes(value: Any, folder: Path) -> Any:
    """Replace ``Fn::Transform: AWS::Include`` with the included file, as CloudFormation does."""
    if isinstance(value, list):
        return [_inline_includes(item, folder) for item in value]
    if not isinstance(value, dict):
        return value
    transform = value.get("Fn::Transform") if len(value) == 1 else None
    if isinstance(transform, Mapping) and transform.get("Name") == "AWS::Include":
        location = str((transform.get("Parameters") or {}).get("Location", ""))
        if not location or location.startswith(_S3_PREFIX):
            raise TemplateError(f"AWS::Include of {location!r}: only local files are supported")
        return _inline_includes(load_template(folder / location), folder)
    return {key: _inline_includes(item, folder) for key, item in value.items()}


def _translate(template: dict[str, Any], folder: Path, region: str) -> dict[str, Any]:
    sam = copy.deepcopy(template)
    placeholders = _Placeholders(folder)
    globals_function = (sam.get("Globals") or {}).get("Function")
    if isinstance(globals_function, dict) and "CodeUri" in globals_function:
        globals_function["CodeUri"] = placeholders.code_uri(globals_function["CodeUri"])
    for resource in (sam.get("Resources") or {}).values():
        if not isinstance(resource, dict):
            continue
        properties = resource.get("Properties")
        if not isinstance(properties, dict):
            continue
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function" and "CodeUri" in properties:
            properties["CodeUri"] = placeholders.code_uri(properties["CodeUri"])
        elif kind == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = placeholders.code_uri(properties.get("ContentUri"))
        elif kind in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi"):
            uri = properties.get("DefinitionUri")
            if isinstance(uri, str) and not uri.startswith(_S3_PREFIX):
                # `sam deploy` uploads the file; CloudFormation then reads it verbatim.
                properties.pop("DefinitionUri")
                properties["DefinitionBody"] = load_template(folder / uri)
    # The translator reports its own timing metrics as warnings; they mean nothing here.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        plugins=[],
        boto_session=Session(region_name=region),
    )
    try:
        translated: dict[str, Any] = translator.translate(
            sam_template=sam, parameter_values={}, get_managed_policy_map=_no_managed_policy_lookup
        )
    except Exception as error:
        causes = getattr(error, "causes", None) or []
        detail = " ".join(str(cause) for cause in causes) or str(error)
        raise TemplateError(f"{folder.name}: SAM translation failed: {detail}") from error
    return translated


def stack_order(
    stacks: Iterable[StackTemplate],
    exports: Mapping[str, set[str]],
    imports: Mapping[str, set[str]],
) -> list[StackTemplate]:
    """Stacks ordered so each comes after the stacks whose exports it imports.

    ``exports`` and ``imports`` map a stack name to export names (resolved).
    Stacks with no dependency between them keep their given order; an import
    nobody exports is left for provisioning to report.
    """
    pending = list(stacks)
    ordered: list[StackTemplate] = []
    exported_by = {name: stack for stack, names in exports.items() for name in names}
    while pending:
        done = {stack.name for stack in ordered}
        for stack in pending:
            needed = {exported_by[name] for name in imports.get(stack.name, set()) if name in exported_by}
            if needed - {stack.name} <= done:
                ordered.append(stack)
                pending.remove(stack)
                break
        else:
            names = ", ".join(stack.name for stack in pending)
            raise TemplateError(f"stacks import each other's exports in a cycle: {names}")
    return ordered


def imported_expressions(stack: StackTemplate) -> list[Any]:
    """Every ``Fn::ImportValue`` argument in the stack's resources, conditions and outputs."""
    sections = [stack.template.get(key) for key in ("Resources", "Conditions", "Outputs")]
    return [name for section in sections for name in import_names(section)]
