"""The HTTP API, served on loopback exactly as its OpenAPI definition (``api.yaml``) maps it.

Routes, methods and each integration's ``requestParameters`` come from the
translated template's ``AWS::ApiGatewayV2::Api`` body (or Route/Integration
resources). An ``SQS-SendMessage`` integration is evaluated like API Gateway
does: ``$request.body``, ``$request.header.x``, ``$request.querystring.x``,
``$context.…`` and the ``${…}`` forms inside strings such as the
``MessageAttributes`` JSON, then sent to the emulated queue.

What API Gateway would refuse gets API Gateway's answer, and the server keeps going:

- no route for the method and path: ``404 {"message":"Not Found"}``;
- a body over HTTP APIs' 10 MB payload limit: ``413 {"message":"Request Entity Too Large"}``;
- an integration that fails — ``MessageAttributes`` that are not JSON after
  substitution, or SQS refusing the message (e.g. a body over the queue's
  ``MaximumMessageSize``) — ``500 {"message":"Internal Server Error"}``, as an
  HTTP API answers a failed AWS service integration; the reason is logged
  (on AWS it is the access log's ``integrationErrorMessage``).

Query strings are decoded as API Gateway decodes them: percent-escapes are
decoded as UTF-8, and ``+`` is kept as a literal ``+`` (it is not turned into
a space; Twilio and most clients encode spaces as ``%20``). A parameter given
twice is joined with a comma.
"""

from __future__ import annotations

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

from twilio_callbacks_cli.local.provision import HttpApiSpec, HttpRouteSpec

LOG = logging.getLogger("twilio_callbacks_cli.local")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
NOT_FOUND = (404, {"message": "Not Found"})
TOO_LARGE = (413, {"message": "Request Entity Too Large"})
INTEGRATION_FAILED = (500, {"message": "Internal Server Error"})
SQS_SEND_MESSAGE = "SQS-SendMessage"

_INLINE_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_WHOLE_VARIABLE = re.compile(r"^\$(request\.|context\.|stageVariables\.)\S*$")


class MappingError(ValueError):
    """A parameter mapping refers to something API Gateway does not provide."""


@dataclass(frozen=True)
class HttpRequest:
    """The parts of an HTTP request a parameter mapping can read."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: str
    source_ip: str
    domain: str
    user_agent: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    received: datetime = field(default_factory=lambda: datetime.now(UTC))


def decode_query(raw: str) -> dict[str, str]:
    """Query parameters as API Gateway hands them to mappings (percent-decoded, ``+`` kept)."""
    values: dict[str, list[str]] = {}
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        values.setdefault(unquote(name), []).append(unquote(value))
    return {name: ",".join(items) for name, items in values.items()}


def context_value(name: str, request: HttpRequest, route: HttpRouteSpec, api: HttpApiSpec) -> str:
    """``$context.<name>`` for a request."""
    epoch_ms = int(request.received.timestamp() * 1000)
    values = {
        "domainName": request.domain,
        "domainPrefix": request.domain.split(".", 1)[0],
        "path": request.path,
        "httpMethod": request.method,
        "requestId": request.request_id,
        "extendedRequestId": request.request_id,
        "requestTime": request.received.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": str(epoch_ms),
        "routeKey": f"{route.method} {route.path}",
        "stage": api.stage_prefix.strip("/") or "$default",
        "apiId": api.api_id,
        "accountId": "123456789012",
        "protocol": "HTTP/1.1",
        "identity.sourceIp": request.source_ip,
        "identity.userAgent": request.user_agent,
    }
    if name not in values:
        raise MappingError(f"$context.{name} is not available locally")
    return values[name]


def mapping_value(expression: str, request: HttpRequest, route: HttpRouteSpec, api: HttpApiSpec) -> str:
    """One variable (without ``$``): ``request.body``, ``request.header.x``, ``context.x`` …"""
    if expression == "request.body":
        return request.body
    if expression.startswith("request.body."):
        return _json_body_value(request.body, expression.removeprefix("request.body."))
    if expression.startswith("request.header."):
        return request.headers.get(expression.removeprefix("request.header.").lower(), "")
    if expression.startswith("request.querystring."):
        return request.query.get(expression.removeprefix("request.querystring."), "")
    if expression == "request.path":
        return request.path
    if expression.startswith("context."):
        return context_value(expression.removeprefix("context."), request, route, api)
    if expression.startswith("stageVariables."):
        return ""
    raise MappingError(f"${expression} is not a parameter mapping variable")


def _json_body_value(body: str, path: str) -> str:
    try:
        value: Any = json.loads(body)
    except ValueError:
        return ""
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def evaluate(template: Any, request: HttpRequest, route: HttpRouteSpec, api: HttpApiSpec) -> str:
    """A request parameter's value: a whole ``$variable``, or a string with ``${variable}`` parts."""
    text = str(template)
    if _WHOLE_VARIABLE.match(text):
        return mapping_value(text[1:], request, route, api)
    return _INLINE_VARIABLE.sub(lambda match: mapping_value(match.group(1), request, route, api), text)


@dataclass(frozen=True)
class GatewayResponse:
    """Status and JSON body returned to the caller."""

    status: int
    body: Mapping[str, Any]


SqsFactory = Callable[[], Any]


class HttpGateway:
    """Matches requests to the APIs' routes and runs their SQS integrations."""

    def __init__(self, apis: list[HttpApiSpec], sqs: SqsFactory, domain: str) -> None:
        self.apis = apis
        self.sqs = sqs
        self.domain = domain
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

    def match(self, method: str, path: str) -> tuple[HttpApiSpec, HttpRouteSpec] | None:
        for api, route in self.routes():
            route_path = api.stage_prefix + route.path
            if route_path == path and route.method in (method, "ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD"):
                return api, route
        return None

    def handle(self, request: HttpRequest) -> GatewayResponse:
        """The response API Gateway would give to this request."""
        matched = self.match(request.method, request.path)
        if matched is None:
            return GatewayResponse(*NOT_FOUND)
        api, route = matched
        if len(request.body.encode("utf-8", errors="surrogateescape")) > MAX_PAYLOAD_BYTES:
            return GatewayResponse(*TOO_LARGE)
        if route.integration.get("integrationSubtype") != SQS_SEND_MESSAGE:
            LOG.error("%s %s: integration type not supported locally", route.method, route.path)
            return GatewayResponse(*INTEGRATION_FAILED)
        try:
            return self._send_message(request, api, route)
        except (MappingError, ValueError, ClientError, BotoCoreError) as error:
            LOG.warning("%s %s: integration failed: %s", request.method, request.path, _reason(error))
            return GatewayResponse(*INTEGRATION_FAILED)

    def _client(self) -> Any:
        # One client per server thread: requests are served concurrently.
        client = getattr(self._local, "sqs", None)
        if client is None:
            client = self._local.sqs = self.sqs()
        return client

    def _send_message(self, request: HttpRequest, api: HttpApiSpec, route: HttpRouteSpec) -> GatewayResponse:
        parameters = route.integration.get("requestParameters") or {}
        arguments: dict[str, Any] = {
            "QueueUrl": evaluate(parameters["QueueUrl"], request, route, api),
            "MessageBody": evaluate(parameters["MessageBody"], request, route, api),
        }
        if "MessageAttributes" in parameters:
            text = evaluate(parameters["MessageAttributes"], request, route, api)
            try:
                arguments["MessageAttributes"] = json.loads(text)
            except ValueError as error:
                raise MappingError("MessageAttributes is not valid JSON after substitution") from error
        if "DelaySeconds" in parameters:
            arguments["DelaySeconds"] = int(evaluate(parameters["DelaySeconds"], request, route, api))
        for name in ("MessageGroupId", "MessageDeduplicationId"):
            if name in parameters:
                arguments[name] = evaluate(parameters[name], request, route, api)
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
        )


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
        if length > MAX_PAYLOAD_BYTES:
            self._drain(length)
            self._respond(GatewayResponse(*TOO_LARGE))
            return
        raw_body = (
            self._read_chunked()
            if "chunked" in self.headers.get("Transfer-Encoding", "")
            else (self.rfile.read(length) if length else b"")
        )
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        request = HttpRequest(
            method=self.command,
            path=unquote(raw_path),
            query=decode_query(raw_query),
            headers=headers,
            body=raw_body.decode("utf-8", errors="replace"),
            source_ip=self.client_address[0],
            domain=self.server.gateway.domain,
            user_agent=headers.get("user-agent", ""),
        )
        response = self.server.gateway.handle(request)
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

    def _respond(self, response: GatewayResponse, request_id: str | None = None) -> None:
        payload = json.dumps(response.body, separators=(",", ":")).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("apigw-requestid", request_id or str(uuid.uuid4()))
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
