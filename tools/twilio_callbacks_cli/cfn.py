"""Load CloudFormation/SAM YAML with its short-form tags (!Ref, !Sub, !GetAtt …).

Tags become the long form (``{"Ref": …}``, ``{"Fn::Sub": …}``) so tests and the
local runner read templates exactly as CloudFormation would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_SCALAR_GETATT = "GetAtt"


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's intrinsic function tags."""


def _construct_tag(loader: _TemplateLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    key = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == _SCALAR_GETATT and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {key: value}


_TemplateLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a template file into plain Python data with long-form intrinsics."""
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_TemplateLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return document
