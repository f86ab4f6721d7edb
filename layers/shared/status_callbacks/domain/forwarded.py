"""What API Gateway forwards to the ingest queue, and how to read it back.

`api.yaml` maps each HTTP request to one SQS message: the raw form body is the
message body and request data travels as message attributes. SQS refuses an
empty attribute value, and a Twilio header or custom query parameter may be
absent, so every forwarded value is written as ``=`` followed by the value;
the ``=`` is stripped here. Custom query parameters are forwarded as
``Query.<position>.<name>``: the position is their declared order in
``api.yaml``, which is the only place their names are written down.

Two paths travel: ``Path`` (``$context.path``, the path API Gateway received,
which under a custom domain's API mapping includes the mapping's base path,
e.g. ``/hooks/twilio``) and ``Route`` (``$context.routeKey``, e.g.
``POST /twilio``, the route it matched). The destination check and the URL
rebuilt under ``PublicBaseUrl`` use the route; the received path is what
Twilio called when no ``PublicBaseUrl`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_ATTRIBUTE = "Signature"
DOMAIN_ATTRIBUTE = "Domain"
PATH_ATTRIBUTE = "Path"
ROUTE_ATTRIBUTE = "Route"
SOURCE_IP_ATTRIBUTE = "SourceIp"
VALUE_MARKER = "="

# "METHOD /path" as $context.routeKey spells a route (HTTP APIs' $default route has no path).
_ROUTE_KEY = re.compile(r"^[A-Z]+ /\S*$")
_QUERY_ATTRIBUTE = re.compile(r"^Query\.(?P<position>\d+)\.(?P<name>[A-Za-z0-9_-]+)$")


class ForwardedRequestError(ValueError):
    """The SQS message lacks the request data API Gateway should have forwarded."""


@dataclass(frozen=True)
class ForwardedRequest:
    """One HTTP request as API Gateway handed it to SQS."""

    body: str
    domain: str
    path: str
    signature: str | None
    source_ip: str | None
    # Every declared custom query parameter in declared order. API Gateway forwards an
    # absent parameter and an empty one alike, so both arrive here as "".
    query: tuple[tuple[str, str], ...] = field(default=())
    # The route key API Gateway matched, e.g. "POST /twilio".
    route: str = ""

    @property
    def route_path(self) -> str:
        """The matched route's path (``/twilio``), whatever base path a custom domain adds."""
        return self.route.partition(" ")[2] or self.path


def forwarded_value(raw: str | None) -> str | None:
    """Strip the non-empty marker; an absent or empty value becomes None."""
    if raw is None:
        return None
    value = raw[len(VALUE_MARKER) :] if raw.startswith(VALUE_MARKER) else raw
    return value or None


def _string_attribute(attributes: Mapping[str, Any], name: str) -> str | None:
    attribute = attributes.get(name)
    if not isinstance(attribute, Mapping):
        return None
    # Lambda's SQS event spells it stringValue; the SQS API spells it StringValue.
    raw = attribute.get("stringValue", attribute.get("StringValue"))
    return forwarded_value(raw) if isinstance(raw, str) else None


def parse_forwarded_request(body: str | None, attributes: Mapping[str, Any]) -> ForwardedRequest:
    """Rebuild the request from an SQS message body and its message attributes."""
    domain = _string_attribute(attributes, DOMAIN_ATTRIBUTE)
    path = _string_attribute(attributes, PATH_ATTRIBUTE)
    route = _string_attribute(attributes, ROUTE_ATTRIBUTE)
    if not domain or not path or not path.startswith("/"):
        raise ForwardedRequestError("message has no Domain/Path attributes from API Gateway")
    if route is None:
        # Queued before api.yaml forwarded the route key (e.g. redriven from a dead-letter
        # queue after an upgrade): on the $default stage the path is the route's path.
        route = f"POST {path}"
    if not _ROUTE_KEY.match(route):
        raise ForwardedRequestError("message's Route attribute is not a route key")
    declared: list[tuple[int, str, str]] = []
    for name in attributes:
        match = _QUERY_ATTRIBUTE.match(name)
        if not match:
            continue
        declared.append((int(match["position"]), match["name"], _string_attribute(attributes, name) or ""))
    declared.sort()
    return ForwardedRequest(
        body=body or "",
        domain=domain,
        path=path,
        signature=_string_attribute(attributes, SIGNATURE_ATTRIBUTE),
        source_ip=_string_attribute(attributes, SOURCE_IP_ATTRIBUTE),
        query=tuple((name, value) for _, name, value in declared),
        route=route,
    )
