"""Acting as Twilio over HTTP: POST signed callbacks and total what came back.

`HttpSender` keeps one kept-alive connection per worker thread (as Twilio's
own senders do) and reads the SQS message id from API Gateway's answer;
`send_lifecycles` sends each lifecycle's callbacks in order from one worker,
several lifecycles at once. Used by ``twilio-callbacks send`` and ``verify``,
the load and reliability tests, and the benchmark.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline_harness.scenarios import Lifecycle, SignedRequest, Signing, sign

DEFAULT_TIMEOUT_SECONDS = 15.0
_XML_MESSAGE_ID = re.compile(rb"<MessageId>([^<]+)</MessageId>")


@dataclass(frozen=True)
class Outcome:
    """What happened to one request."""

    status: int | None
    latency: float
    error: str | None = None
    # The SQS message id API Gateway answered with (SendMessage result), for 2xx responses.
    message_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Exchange:
    """One request with the response it got: ``verify`` reads the body and headers, ``send`` only counts."""

    outcome: Outcome
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Summary:
    """Totals of a send run."""

    lifecycles: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed: float = 0.0
    duplicates: int = 0
    forged: int = 0
    unsigned: int = 0

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def failures(self) -> int:
        return sum(1 for outcome in self.outcomes if not outcome.ok)

    def percentile_ms(self, percentile: float) -> float | None:
        """Nearest-rank percentile of request latency."""
        latencies = sorted(outcome.latency for outcome in self.outcomes)
        if not latencies:
            return None
        rank = max(1, -(-len(latencies) * percentile // 100))
        return round(latencies[int(rank) - 1] * 1000, 2)

    def to_dict(self) -> dict[str, Any]:
        statuses = Counter(str(outcome.status) for outcome in self.outcomes if outcome.status is not None)
        errors = Counter(outcome.error for outcome in self.outcomes if outcome.error)
        # "errors" are transport errors (no HTTP response); the key name is kept for existing scripts.
        return {
            "lifecycles": self.lifecycles,
            "sent": self.sent,
            "http_status_counts": dict(sorted(statuses.items())),
            "errors": sum(errors.values()),
            "error_counts": dict(errors.most_common()),
            "failures": self.failures,
            "duplicates": self.duplicates,
            "forged": self.forged,
            "unsigned": self.unsigned,
            "elapsed_seconds": round(self.elapsed, 3),
            "rate_per_second": round(self.sent / self.elapsed, 1) if self.elapsed > 0 else None,
            "latency_ms": {"p50": self.percentile_ms(50), "p99": self.percentile_ms(99)},
        }


def queued_message_id(body: bytes) -> str | None:
    """The SQS MessageId in an SQS-SendMessage integration's answer, wherever it is nested.

    HTTP APIs answer with the SendMessage result as JSON
    (``SendMessageResponse.SendMessageResult.MessageId``); the SQS JSON protocol's
    flat shape and the query protocol's XML are read too.
    """
    try:
        document = json.loads(body)
    except ValueError:
        match = _XML_MESSAGE_ID.search(body)
        return match[1].decode("utf-8", errors="replace") if match else None
    return _find_key(document, "MessageId")


def _find_key(value: Any, key: str) -> str | None:
    if isinstance(value, dict):
        if isinstance(value.get(key), str):
            return str(value[key])
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            nested = _find_key(item, key)
            if nested:
                return nested
    return None


class _NoDelayHTTPConnection(http.client.HTTPConnection):
    """http.client writes headers and body in two sends; without TCP_NODELAY, Nagle holds the body
    until the server's delayed ACK (~40 ms per request on a kept-alive connection)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoDelayHTTPSConnection(http.client.HTTPSConnection):
    """The HTTPS counterpart of `_NoDelayHTTPConnection`."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HttpSender:
    """POSTs requests over one kept-alive connection per worker thread."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        connection: http.client.HTTPConnection | None = getattr(self._local, "connections", {}).get(key)
        if connection is None:
            factory = _NoDelayHTTPSConnection if scheme == "https" else _NoDelayHTTPConnection
            connection = factory(netloc, timeout=self.timeout)
            self._local.__dict__.setdefault("connections", {})[key] = connection
        return connection

    def _forget(self, scheme: str, netloc: str) -> None:
        connection = self._local.__dict__.get("connections", {}).pop((scheme, netloc), None)
        if connection is not None:
            connection.close()

    def send(self, request: SignedRequest) -> Outcome:
        return self.exchange(request).outcome

    def exchange(self, request: SignedRequest) -> Exchange:
        """POST the request; the response's status, headers (names lower-cased) and body."""
        parts = urlsplit(request.url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        body = request.body.encode("utf-8")
        started = time.perf_counter()
        # A kept-alive connection the server has since closed fails before any response;
        # one retry on a fresh connection is what any HTTP client does then.
        for attempt in (1, 2):
            connection = self._connection(parts.scheme, parts.netloc)
            try:
                connection.request("POST", target, body=body, headers=dict(request.headers))
                response = connection.getresponse()
                content = response.read()
                if response.will_close:
                    self._forget(parts.scheme, parts.netloc)
                headers = {name.lower(): value for name, value in response.getheaders()}
                message_id = queued_message_id(content) if 200 <= response.status < 300 else None
                outcome = Outcome(response.status, time.perf_counter() - started, message_id=message_id)
                return Exchange(outcome, headers, content)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                self._forget(parts.scheme, parts.netloc)
                if attempt == 2:
                    return Exchange(Outcome(None, time.perf_counter() - started, type(error).__name__))
            except (OSError, http.client.HTTPException) as error:
                self._forget(parts.scheme, parts.netloc)
                return Exchange(Outcome(None, time.perf_counter() - started, type(error).__name__))
        raise AssertionError("unreachable")


def send_lifecycles(
    lifecycles: Sequence[Lifecycle],
    base_url: str,
    auth_token: str,
    *,
    concurrency: int = 1,
    on_sent: Callable[[], None] | None = None,
    sender: Callable[[SignedRequest], Outcome] | None = None,
) -> Summary:
    """Send every lifecycle's callbacks, each lifecycle in its own order, and total the outcomes."""
    post = sender or HttpSender().send
    summary = Summary(lifecycles=len(lifecycles))
    lock = threading.Lock()

    def send_one(lifecycle: Lifecycle) -> None:
        for callback in lifecycle.callbacks:
            outcome = post(sign(callback, base_url, auth_token))
            with lock:
                summary.outcomes.append(outcome)
            if on_sent is not None:
                on_sent()

    for lifecycle in lifecycles:
        for callback in lifecycle.callbacks:
            summary.duplicates += callback.attempt > 1
            summary.forged += callback.signing is Signing.FORGED
            summary.unsigned += callback.signing is Signing.UNSIGNED
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="send")
    try:
        for future in [pool.submit(send_one, lifecycle) for lifecycle in lifecycles]:
            future.result()
    except BaseException:
        # Ctrl-C (or a bug) stops the run now instead of after every queued lifecycle.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    summary.elapsed = time.perf_counter() - started
    return summary
