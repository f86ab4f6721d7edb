"""Watch and perturb the local pipeline's AWS traffic, without touching production code.

Every request to the emulated AWS endpoint passes through `Traffic`: it is
named as (service, operation) and counted — the benchmark's request counts
come from here — and interceptors may answer it in moto's place or rewrite it
on the way in and out. Requests the runner makes in an AWS service's place
(shipping Lambda's and API Gateway's logs, watching the rejected store) carry
`INTERNAL_USER_AGENT`, so whoever counts can leave them out. The reliability tests inject throttling, 5xx and
partial batch failures this way; handlers, pollers and moto stay as they are.
"""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

# In the User-Agent of requests the runner makes on behalf of AWS itself (see `AwsRequest.internal`).
INTERNAL_USER_AGENT = "twilio-callbacks-local-runner"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/(?P<service>[^/]+)/aws4_request")
_S3_OPERATIONS = {
    ("PUT", True): "PutObject",
    ("PUT", False): "CreateBucket",
    ("GET", True): "GetObject",
    ("GET", False): "ListObjects",
    ("HEAD", True): "HeadObject",
    ("HEAD", False): "HeadBucket",
    ("DELETE", True): "DeleteObject",
    ("DELETE", False): "DeleteBucket",
    ("POST", False): "DeleteObjects",
    ("POST", True): "PostObject",
}


@dataclass(frozen=True)
class AwsRequest:
    """One request to the emulated AWS endpoint, named the way AWS bills it."""

    service: str
    operation: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json_target(self) -> bool:
        return "x-amz-target" in self.headers

    @property
    def internal(self) -> bool:
        """Made by the runner in an AWS service's place (e.g. Lambda shipping logs), not by the pipeline."""
        return INTERNAL_USER_AGENT in self.headers.get("user-agent", "")


@dataclass(frozen=True)
class Reply:
    """An answer given in moto's place."""

    status: int
    body: bytes
    content_type: str = "application/x-amz-json-1.0"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Forward:
    """Send a (possibly rewritten) request on to moto and optionally rewrite its answer."""

    body: bytes
    rewrite_response: Callable[[bytes], bytes] | None = None


Interceptor = Callable[[AwsRequest], Reply | Forward | None]


def _operation(service: str, method: str, path: str, headers: Mapping[str, str], body: bytes) -> str:
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    if service == "s3":
        has_key = len([part for part in path.split("/") if part]) > 1
        return _S3_OPERATIONS.get((method, has_key), method)
    if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
        action = parse_qs(body.decode("utf-8", errors="replace")).get("Action")
        if action:
            return action[0]
    return method


@dataclass
class Traffic:
    """Counts AWS requests by service and operation and runs interceptors on them."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _interceptors: list[Interceptor] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Requests seen since the last reset, as {service: {operation: count}}."""
        with self._lock:
            snapshot = dict(self._counts)
        by_service: dict[str, dict[str, int]] = {}
        for (service, operation), count in sorted(snapshot.items()):
            by_service.setdefault(service, {})[operation] = count
        return by_service

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def add_interceptor(self, interceptor: Interceptor) -> None:
        with self._lock:
            self._interceptors.append(interceptor)

    def remove_interceptor(self, interceptor: Interceptor) -> None:
        with self._lock:
            if interceptor in self._interceptors:
                self._interceptors.remove(interceptor)

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """A WSGI app that records and intercepts, then hands the request to `app`."""

        def intercepted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path.startswith("/moto-api"):
                return app(environ, start_response)
            request = self._describe(environ)
            with self._lock:
                self._counts[(request.service, request.operation)] += 1
                interceptors = list(self._interceptors)
            for interceptor in interceptors:
                decision = interceptor(request)
                if isinstance(decision, Reply):
                    start_response(
                        f"{decision.status} Intercepted",
                        [("Content-Type", decision.content_type), *decision.headers],
                    )
                    return [decision.body]
                if isinstance(decision, Forward):
                    return self._forward(app, environ, start_response, decision)
            return app(environ, start_response)

        return intercepted

    @staticmethod
    def _describe(environ: dict[str, Any]) -> AwsRequest:
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        match = _CREDENTIAL_SCOPE.search(headers.get("authorization", ""))
        service = match["service"] if match else "unknown"
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        body = b""
        # S3 bodies can be large or streamed; nothing about an S3 request needs them here.
        if service != "s3":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        operation = _operation(service, method, path, headers, body)
        return AwsRequest(service, operation, method, path, headers, body)

    @staticmethod
    def _forward(
        app: WsgiApp, environ: dict[str, Any], start_response: Callable[..., Any], decision: Forward
    ) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(decision.body)
        environ["CONTENT_LENGTH"] = str(len(decision.body))
        if decision.rewrite_response is None:
            return app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = decision.rewrite_response(b"".join(app(environ, capture)))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]
