"""Derive api.yaml's forwarded MessageAttributes from the query parameters it declares.

api.yaml is the one place the routes and the custom query parameter names are
written down (as OpenAPI ``parameters``, ``in: query``). The SQS message
attributes each route forwards follow from them and from the convention in
``status_callbacks.forwarded``; this script writes those mapping lines so they
never drift from the declarations:

    .venv/bin/python aws_stacks/StatusCallbackHandler/sync_api_mapping.py          # rewrite api.yaml
    .venv/bin/python aws_stacks/StatusCallbackHandler/sync_api_mapping.py --check  # exit 1 when stale

Only the ``MessageAttributes:`` lines change; comments and layout are kept.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from status_callbacks.domain.forwarded import (
    DOMAIN_ATTRIBUTE,
    PATH_ATTRIBUTE,
    ROUTE_ATTRIBUTE,
    SIGNATURE_ATTRIBUTE,
    SOURCE_IP_ATTRIBUTE,
    VALUE_MARKER,
)

API_PATH = Path(__file__).with_name("api.yaml")
# SQS carries at most 10 message attributes per message; the request data takes 5.
MAX_SQS_ATTRIBUTES = 10
# What forwarded.py accepts as a custom parameter name in Query.<position>.<name>.
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_ROUTE_LINE = re.compile(r"^  (?P<route>/\S*):\s*$")
_MAPPING_LINE = re.compile(r"^(?P<indent>\s+)MessageAttributes:\s")

# Request data every route forwards, besides its declared query parameters.
REQUEST_ATTRIBUTES: Mapping[str, str] = {
    SIGNATURE_ATTRIBUTE: "${request.header.x-twilio-signature}",
    DOMAIN_ATTRIBUTE: "${context.domainName}",
    PATH_ATTRIBUTE: "${context.path}",
    ROUTE_ATTRIBUTE: "${context.routeKey}",
    SOURCE_IP_ATTRIBUTE: "${context.identity.sourceIp}",
}


class ApiDefinitionError(ValueError):
    """api.yaml declares something the forwarding convention cannot carry."""


def load_api(path: Path = API_PATH) -> dict[str, Any]:
    """api.yaml as data (it only uses long-form intrinsics, so plain YAML)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or "paths" not in document:
        raise ApiDefinitionError(f"{path} is not an OpenAPI document")
    return document


def declared_query_parameters(api: Mapping[str, Any], route: str) -> list[str]:
    """Names of the query parameters a route's POST declares, in declared order."""
    operation = api["paths"][route]["post"]
    names = [param["name"] for param in operation.get("parameters", []) if param.get("in") == "query"]
    for name in names:
        if not _PARAM_NAME.match(name):
            raise ApiDefinitionError(f"{route}: query parameter {name!r} must match {_PARAM_NAME.pattern}")
    if len(set(names)) != len(names):
        raise ApiDefinitionError(f"{route}: a query parameter is declared twice")
    if len(REQUEST_ATTRIBUTES) + len(names) > MAX_SQS_ATTRIBUTES:
        raise ApiDefinitionError(
            f"{route}: at most {MAX_SQS_ATTRIBUTES - len(REQUEST_ATTRIBUTES)} custom query parameters fit"
        )
    return names


def message_attributes_mapping(query_names: Sequence[str]) -> str:
    """The SQS-SendMessage ``MessageAttributes`` value forwarding request data and these parameters."""
    sources = dict(REQUEST_ATTRIBUTES)
    for position, name in enumerate(query_names, start=1):
        sources[f"Query.{position}.{name}"] = f"${{request.querystring.{name}}}"
    attributes = {
        name: {"DataType": "String", "StringValue": VALUE_MARKER + source} for name, source in sources.items()
    }
    return json.dumps(attributes, separators=(",", ":"))


def render(text: str) -> str:
    """api.yaml text with every route's MessageAttributes line derived from its declarations."""
    api = yaml.safe_load(text)
    lines = text.splitlines(keepends=True)
    route: str | None = None
    for index, line in enumerate(lines):
        route_match = _ROUTE_LINE.match(line)
        if route_match:
            route = route_match["route"]
            continue
        mapping_match = _MAPPING_LINE.match(line)
        if mapping_match and route is not None:
            mapping = message_attributes_mapping(declared_query_parameters(api, route))
            lines[index] = f"{mapping_match['indent']}MessageAttributes: '{mapping}'\n"
    return "".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite api.yaml, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if api.yaml would change")
    parser.add_argument("--api", type=Path, default=API_PATH, help="OpenAPI file (default: %(default)s)")
    args = parser.parse_args(argv)
    current = args.api.read_text(encoding="utf-8")
    expected = render(current)
    if current == expected:
        print(f"{args.api}: MessageAttributes match the declared query parameters")
        return 0
    if args.check:
        print(f"{args.api}: MessageAttributes are stale; run {Path(__file__).name} to rewrite them")
        return 1
    args.api.write_text(expected, encoding="utf-8")
    print(f"{args.api}: MessageAttributes rewritten from the declared query parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
