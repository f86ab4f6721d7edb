"""The HTTP API, served on loopback exactly as its OpenAPI definition (``api.yaml``) maps it.

Routes, methods and each integration's ``requestParameters`` come from the
translated template's ``AWS::ApiGatewayV2::Api`` body (or Route/Integration
resources). An ``SQS-SendMessage`` integration is evaluated like API Gateway
does: ``$request.body``, ``$request.header.x``, ``$request.querystring.x``,
``$context.…`` and the ``${…}`` forms inside strings such as the
``MessageAttributes`` JSON (substituted unescaped), then sent to the emulated
queue. This module is the one implementation of that evaluation.

Where AWS's documentation is silent, `GatewayEmulation` chooses the answer,
so the pipeline can be run under each (``twilio-callbacks local --emulate``):

- ``body``: ``text`` hands ``$request.body`` over as text; ``base64`` encodes
  it, as HTTP APIs do for every body but text, JSON, XML and JavaScript ones
  when they pass a request to a Lambda proxy (form posts included).
- ``query``: ``decoded`` percent-decodes ``$request.querystring.x`` as UTF-8
  and keeps ``+`` as a literal ``+``; ``raw`` gives the value exactly as it is
  in the URL. Either way a parameter given twice is joined with a comma.
- ``missing``: ``empty`` substitutes ``""`` for a header or query parameter
  the request does not have; ``fail`` fails the integration ("Unable to
  resolve property … from source …").

What API Gateway would refuse gets API Gateway's answer, and the server keeps going:

- no route for the method and path: ``404 {"message":"Not Found"}``;
- a body over HTTP APIs' 10 MB payload limit: ``413 {"message":"Request Entity Too Large"}``;
- an integration that fails — an unresolvable value, ``MessageAttributes``
  that are not JSON after substitution, or SQS refusing the message —
  ``500 {"message":"Internal Server Error"}``.

Every request, answered or refused, gets an access log line rendered from the
stage's ``AccessLogSettings.Format`` (the failure's reason is
``$context.integrationErrorMessage``), delivered to its log group. Under an
API mapping's base path (``--base-path hooks``) every route is served below
it: ``$context.path`` includes the base path, ``$context.routeKey`` does not.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

from aws_emulator.logs import LogEvent, LogShipper
from aws_emulator.provision import HttpApiSpec, HttpRouteSpec

LOG = logging.getLogger("aws_emulator")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
NOT_FOUND = (404, {"message": "Not Found"})
TOO_LARGE = (413, {"message": "Request Entity Too Large"})
INTEGRATION_FAILED = (500, {"message": "Internal Server Error"})
SQS_SEND_MESSAGE = "SQS-SendMessage"
ACCOUNT_ID = "123456789012"
# What an access log line shows for a variable without a value.
NO_VALUE = "-"

BODY_TEXT, BODY_BASE64 = "text", "base64"
QUERY_DECODED, QUERY_RAW = "decoded", "raw"
MISSING_EMPTY, MISSING_FAIL = "empty", "fail"
_CHOICES: Mapping[str, tuple[str, ...]] = {
    "body": (BODY_TEXT, BODY_BASE64),
    "query": (QUERY_DECODED, QUERY_RAW),
    "missing": (MISSING_EMPTY, MISSING_FAIL),
}
# Content types a Lambda proxy integration receives as text; every other body is base64-encoded.
_TEXT_MEDIA = re.compile(r"^(text/.*|application/(json|xml|javascript)|.*\+(json|xml))$")

_INLINE_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_WHOLE_VARIABLE = re.compile(r"^\$(request\.|context\.|stageVariables\.)\S*$")
_LOG_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)")


@dataclass(frozen=True)
class GatewayEmulation:
    """How the gateway answers the questions AWS's documentation leaves open (see the module doc)."""

    body: str = BODY_TEXT
    query: str = QUERY_DECODED
    missing: str = MISSING_EMPTY

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)}: choose {' or '.join(choices)}")

    @classmethod
    def parse(cls, spec: str) -> GatewayEmulation:
        """``body=base64,query=raw,missing=fail`` (any subset, any order; the rest default)."""
        chosen: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, equals, value = item.partition("=")
            name = name.strip()
            if not equals or name not in _CHOICES:
                raise ValueError(f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(_CHOICES)}")
            chosen[name] = value.strip()
        return cls(**chosen)

    def __str__(self) -> str:
        return f"body={self.body},query={self.query},missing={self.missing}"


class MappingError(ValueError):
    """A parameter mapping API Gateway cannot evaluate for this request; the integration fails."""


@dataclass(frozen=True)
class HttpRequest:
    """The parts of an HTTP request a parameter mapping can read."""

    method: str
    # Percent-decoded, as received (under a base path, including it).
    path: str
    # The query string exactly as it was in the URL, without the "?".
    raw_query: str
    headers: Mapping[str, str]
    body: bytes
    source_ip: str
    domain: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    received: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def user_agent(self) -> str:
        return self.headers.get("user-agent", "")


def query_parameters(raw_query: str, decoded: bool = True) -> dict[str, str]:
    """Query values as a mapping sees them: percent-decoded (``+`` kept) or raw; repeats comma-joined."""
    values: dict[str, list[str]] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        # unquote, not unquote_plus: "+" stays "+" (see the module doc).
        values.setdefault(unquote(name), []).append(unquote(value) if decoded else value)
    return {name: ",".join(items) for name, items in values.items()}


def request_body(request: HttpRequest, emulation: GatewayEmulation) -> str:
    """``$request.body`` under the emulated body encoding."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if emulation.body == BODY_BASE64 and not _TEXT_MEDIA.match(content_type):
        return base64.b64encode(request.body).decode("ascii")
    return request.body.decode("utf-8", errors="replace")


def context_values(request: HttpRequest, route: HttpRouteSpec | None, api: HttpApiSpec) -> dict[str, str]:
    """The ``$context`` variables known when the request arrives (before any answer)."""
    epoch_ms = int(request.received.timestamp() * 1000)
    return {
        "domainName": request.domain,
        "domainPrefix": request.domain.split(".", 1)[0],
        "path": request.path,
        "httpMethod": request.method,
        "requestId": request.request_id,
        "extendedRequestId": request.request_id,
        "requestTime": request.received.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": str(epoch_ms),
        "routeKey": f"{route.method} {route.path}" if route else NO_VALUE,
        "stage": api.stage,
        "apiId": api.api_id,
        "accountId": ACCOUNT_ID,
        "protocol": "HTTP/1.1",
        "identity.sourceIp": request.source_ip,
        "identity.userAgent": request.user_agent,
    }


@dataclass(frozen=True)
class ParameterMapping:
    """One integration's request parameters evaluated for one request, under an emulation."""

    request: HttpRequest
    route: HttpRouteSpec
    api: HttpApiSpec
    emulation: GatewayEmulation

    @functools.cached_property
    def _query(self) -> dict[str, str]:
        return query_parameters(self.request.raw_query, decoded=self.emulation.query == QUERY_DECODED)

    @functools.cached_property
    def _context(self) -> dict[str, str]:
        return context_values(self.request, self.route, self.api)

    def evaluate(self, parameter: str, template: Any) -> str:
        """A request parameter's value: a whole ``$variable``, or a string with ``${variable}`` parts."""
        text = str(template)
        if _WHOLE_VARIABLE.match(text):
            return self._value(parameter, text[1:])
        return _INLINE_VARIABLE.sub(lambda match: self._value(parameter, match.group(1)), text)

    def _value(self, parameter: str, expression: str) -> str:
        """One variable (without ``$``): ``request.body``, ``request.header.x``, ``context.x`` …"""
        if expression == "request.body":
            return request_body(self.request, self.emulation)
        if expression == "request.path":
            return self.request.path
        if expression.startswith("context."):
            name = expression.removeprefix("context.")
            if name not in self._context:
                raise MappingError(f"$context.{name} is not available locally")
            return self._context[name]
        value: str | None
        if expression.startswith("request.body."):
            value = _json_body_value(self.request.body, expression.removeprefix("request.body."))
        elif expression.startswith("request.header."):
            value = self.request.headers.get(expression.removeprefix("request.header.").lower())
        elif expression.startswith("request.querystring."):
            value = self._query.get(expression.removeprefix("request.querystring."))
        elif expression.startswith("stageVariables."):
            value = None
        else:
            raise MappingError(f"${expression} is not a parameter mapping variable")
        if value is not None:
            return value
        if self.emulation.missing == MISSING_FAIL:
            raise MappingError(f"Unable to resolve property {parameter} from source ${expression}")
        return ""


def _json_body_value(body: bytes, path: str) -> str | None:
    try:
        value: Any = json.loads(body)
    except ValueError:
        return None
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def render_access_log(log_format: str, context: Mapping[str, str]) -> str:
    """One access log line: each ``$context.x`` of the format replaced by its value, else ``-``.

    Values go in as they are, unescaped, as API Gateway writes them; the
    format's line breaks (a folded YAML block) are dropped.
    """
    line = _LOG_VARIABLE.sub(lambda match: context.get(match.group(1)) or NO_VALUE, log_format)
    return line.replace("\n", "")


@dataclass(frozen=True)
class GatewayResponse:
    """Status and JSON body returned to the caller, and what the access log says about the integration."""

    status: int
    body: Mapping[str, Any]
    integration_error: str | None = None
    integration_status: int | None = None
    integration_latency_ms: int | None = None

    @property
    def payload(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


SqsFactory = Callable[[], Any]


def normalised_base_path(base_path: str | None) -> str:
    """``hooks``, ``/hooks/`` → ``/hooks``; nothing → ``""``."""
    stripped = (base_path or "").strip().strip("/")
    if stripped and not re.fullmatch(r"[A-Za-z0-9._~\-]+(/[A-Za-z0-9._~\-]+)*", stripped):
        raise ValueError(f"base path {base_path!r}: use path segments such as hooks or v1/hooks")
    return f"/{stripped}" if stripped else ""


class HttpGateway:
    """Matches requests to the APIs' routes, runs their SQS integrations and writes their access logs."""

    def __init__(
        self,
        apis: list[HttpApiSpec],
        sqs: SqsFactory,
        domain: str,
        *,
        emulation: GatewayEmulation | None = None,
        base_path: str = "",
        logs: LogShipper | None = None,
    ) -> None:
        self.apis = apis
        self.sqs = sqs
        self.domain = domain
        self.emulation = emulation or GatewayEmulation()
        self.base_path = normalised_base_path(base_path)
        self.logs = logs
        self._local = threading.local()
        unsupported = [
            f"{route.method} {route.path}"
            for api in apis
            for route in api.routes
            if route.integration.get("integrationSubtype") != SQS_SEND_MESSAGE
        ]
        if unsupported:
            LOG.warning("routes with integrations other than SQS-SendMessage answer 500: %s", unsupported)

    def routes(self) -> list[tuple[HttpApiSpec, HttpRouteSpec]]:
        return [(api, route) for api in self.apis for route in api.routes]

    def mount(self, api: HttpApiSpec) -> str:
        """Where an API's routes are served: under the base path (an API mapping), else its stage."""
        return self.base_path or api.stage_prefix

    def match(self, method: str, path: str) -> tuple[HttpApiSpec, HttpRouteSpec] | None:
        for api, route in self.routes():
            if self.mount(api) + route.path == path and route.method in (
                method,
                "ANY",
                "X-AMAZON-APIGATEWAY-ANY-METHOD",
            ):
                return api, route
        return None

    def handle(self, request: HttpRequest) -> GatewayResponse:
        """The response API Gateway would give to this request; its access log line is written."""
        api, route = self.match(request.method, request.path) or (None, None)
        response = self._answer(request, api, route)
        self._log_access(request, api, route, response)
        return response

    def refuse_oversized(self, request: HttpRequest) -> GatewayResponse:
        """The answer to a request whose body was not even read (over the payload limit)."""
        api, route = self.match(request.method, request.path) or (None, None)
        response = GatewayResponse(*TOO_LARGE)
        self._log_access(request, api, route, response)
        return response

    def _answer(
        self, request: HttpRequest, api: HttpApiSpec | None, route: HttpRouteSpec | None
    ) -> GatewayResponse:
        if api is None or route is None:
            return GatewayResponse(*NOT_FOUND)
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return GatewayResponse(*TOO_LARGE)
        if route.integration.get("integrationSubtype") != SQS_SEND_MESSAGE:
            LOG.error("%s %s: integration type not supported locally", route.method, route.path)
            return GatewayResponse(
                *INTEGRATION_FAILED, integration_error="integration type not supported locally"
            )
        try:
            return self._send_message(ParameterMapping(request, route, api, self.emulation))
        except (MappingError, ValueError, ClientError, BotoCoreError) as error:
            reason = _reason(error)
            LOG.warning("%s %s: integration failed: %s", request.method, request.path, reason)
            status = (
                error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if isinstance(error, ClientError)
                else None
            )
            return GatewayResponse(*INTEGRATION_FAILED, integration_error=reason, integration_status=status)

    def _client(self) -> Any:
        # One client per server thread: requests are served concurrently.
        client = getattr(self._local, "sqs", None)
        if client is None:
            client = self._local.sqs = self.sqs()
        return client

    def _send_message(self, mapping: ParameterMapping) -> GatewayResponse:
        parameters = mapping.route.integration.get("requestParameters") or {}
        arguments: dict[str, Any] = {
            name: mapping.evaluate(name, parameters[name])
            for name in ("QueueUrl", "MessageBody", "MessageGroupId", "MessageDeduplicationId")
            if name in parameters
        }
        if "MessageAttributes" in parameters:
            text = mapping.evaluate("MessageAttributes", parameters["MessageAttributes"])
            try:
                arguments["MessageAttributes"] = json.loads(text)
            except ValueError as error:
                raise MappingError("MessageAttributes is not valid JSON after substitution") from error
        if "DelaySeconds" in parameters:
            arguments["DelaySeconds"] = int(mapping.evaluate("DelaySeconds", parameters["DelaySeconds"]))
        started = time.monotonic()
        result = self._client().send_message(**arguments)
        return GatewayResponse(
            200,
            {
                "SendMessageResponse": {
                    "ResponseMetadata": {"RequestId": result["ResponseMetadata"].get("RequestId", "")},
                    "SendMessageResult": {
                        "MD5OfMessageAttributes": result.get("MD5OfMessageAttributes"),
                        "MD5OfMessageBody": result.get("MD5OfMessageBody"),
                        "MD5OfMessageSystemAttributes": None,
                        "MessageId": result.get("MessageId"),
                        "SequenceNumber": result.get("SequenceNumber"),
                    },
                }
            },
            integration_status=200,
            integration_latency_ms=int((time.monotonic() - started) * 1000),
        )

    def _log_access(
        self,
        request: HttpRequest,
        api: HttpApiSpec | None,
        route: HttpRouteSpec | None,
        response: GatewayResponse,
    ) -> None:
        # One local server stands for every API's domain: a request no route matches is the first API's.
        logged = api or next((candidate for candidate in self.apis if candidate.access_log), None)
        if self.logs is None or logged is None or logged.access_log is None:
            return
        context = {
            **context_values(request, route, logged),
            "status": str(response.status),
            "responseLength": str(len(response.payload)),
            "integrationErrorMessage": response.integration_error or "",
            "integration.error": response.integration_error or "",
            "integrationStatus": _optional(response.integration_status),
            "integration.status": _optional(response.integration_status),
            "integrationLatency": _optional(response.integration_latency_ms),
            "integration.latency": _optional(response.integration_latency_ms),
            "responseLatency": str(int((datetime.now(UTC) - request.received).total_seconds() * 1000)),
            "error.message": str(response.body.get("message", "")) if response.status >= 400 else "",
        }
        line = render_access_log(logged.access_log.format, context)
        stamp = int(request.received.timestamp() * 1000)
        self.logs.put(
            logged.access_log.log_group,
            f"{logged.api_id}_{logged.stage}",
            [LogEvent(stamp, line)],
            mergeable=True,
        )


def _optional(value: int | None) -> str:
    return "" if value is None else str(value)


def _reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code')}: {str(details.get('Message', ''))[:200]}"
    return str(error)[:200]


class _RequestHandler(BaseHTTPRequestHandler):
    server: _GatewayServer
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY every keep-alive response waits ~40 ms for Nagle's algorithm.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        started = time.monotonic()
        raw_path, _, raw_query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        oversized = length > MAX_PAYLOAD_BYTES
        if oversized:
            self._drain(length)
            raw_body = b""
        elif "chunked" in self.headers.get("Transfer-Encoding", ""):
            raw_body = self._read_chunked()
        else:
            raw_body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        request = HttpRequest(
            method=self.command,
            path=unquote(raw_path),
            raw_query=raw_query,
            headers=headers,
            body=raw_body,
            source_ip=self.client_address[0],
            domain=self.server.gateway.domain,
        )
        gateway = self.server.gateway
        response = gateway.refuse_oversized(request) if oversized else gateway.handle(request)
        self._respond(response, request.request_id)
        LOG.info(
            "%s %s → %d (%.0f ms)",
            self.command,
            raw_path,
            response.status,
            (time.monotonic() - started) * 1000,
        )

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            total += size
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
            if total > MAX_PAYLOAD_BYTES:
                return b"".join(chunks)

    def _drain(self, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return
            remaining -= len(chunk)

    def _respond(self, response: GatewayResponse, request_id: str) -> None:
        payload = response.payload
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("apigw-requestid", request_id)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged once, by ``_serve``, without query strings (they may hold PII)."""


class _GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _RequestHandler)
        self.gateway = HttpGateway([], lambda: None, "")


class HttpGatewayServer:
    """The gateway on a threaded stdlib HTTP server; bind first, attach the APIs once provisioned."""

    def __init__(self, host: str, port: int) -> None:
        self._server = _GatewayServer((host, port))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def serve(self, gateway: HttpGateway) -> None:
        self._server.gateway = gateway
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-gateway", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
