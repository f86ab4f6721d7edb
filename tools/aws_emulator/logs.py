"""CloudWatch Logs as Lambda and API Gateway fill them, played locally.

- `HANDLER_OUTPUT` is the handlers' ``sys.stdout`` (where Powertools writes
  its JSON log lines and EMF metrics): everything still reaches the runner's
  console, and the lines an invocation writes on its own thread are recorded
  for its log stream.
- `lambda_log_events` frames one invocation's lines the way Lambda does:
  ``START``, the output, the runtime's ``[ERROR]`` line when the handler raised,
  ``END`` and ``REPORT``.
- `LogShipper` puts log events into the emulated CloudWatch Logs from one
  background thread, after the fact, as the services do. Its client is an
  internal one (see `aws_emulator.traffic.INTERNAL_USER_AGENT`):
  these requests are what Lambda and API Gateway do themselves, not the
  pipeline's own, and the benchmark leaves them out.
"""

from __future__ import annotations

import io
import logging
import queue
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

LOG = logging.getLogger("aws_emulator")

# PutLogEvents limits: 10,000 events and 1,048,576 bytes a call, counting 26 bytes per event.
MAX_EVENTS_PER_PUT = 10_000
MAX_BYTES_PER_PUT = 1_048_576
EVENT_OVERHEAD_BYTES = 26
# Longer events are cut, as CloudWatch Logs cuts them.
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES


@dataclass(frozen=True)
class LogEvent:
    """One CloudWatch Logs event: epoch milliseconds and the line."""

    timestamp: int
    message: str


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class OutputLines:
    """Text written by one invocation, split into timestamped lines."""

    events: list[LogEvent] = field(default_factory=list)
    _partial: str = ""

    def feed(self, text: str) -> None:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        stamp = now_ms()
        self.events.extend(LogEvent(stamp, line) for line in complete if line)

    def close(self) -> list[LogEvent]:
        """Every line, including an unterminated last one."""
        if self._partial:
            self.events.append(LogEvent(now_ms(), self._partial))
            self._partial = ""
        return self.events


class HandlerOutput(io.TextIOBase):
    """The handlers' stdout: passed on to the console, and recorded per invocation.

    EMF metrics are printed to the ``sys.stdout`` of the moment, which is this
    object while a handler is invoked (`capturing`); Powertools' loggers write
    to the stream their handler was created with, which `adopt_logger_streams`
    points here. Only the invoking thread's lines are recorded: another thread
    printing meanwhile (the runner's console) is not the function's.
    """

    def __init__(self, console: TextIO | None = None) -> None:
        super().__init__()
        self.console: TextIO = console or sys.stdout
        self._local = threading.local()

    def _target(self) -> TextIO:
        # Outside an invocation, where print writes now (the console remembered may be long gone).
        current = sys.stdout
        return self.console if current is self else current

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._target(), "encoding", None) or "utf-8")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(getattr(self._target(), "isatty", lambda: False)())

    def write(self, text: str) -> int:
        self._target().write(text)
        lines: OutputLines | None = getattr(self._local, "lines", None)
        if lines is not None:
            lines.feed(text)
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    @contextmanager
    def capturing(self, record: bool = True) -> Iterator[OutputLines]:
        """Be ``sys.stdout`` for the duration; with ``record``, collect this thread's lines."""
        current = sys.stdout
        if current is not self:
            # Whatever stdout is now (a terminal, pytest's capture, the benchmark's counter) gets the text.
            self.console = current
        sys.stdout = self
        lines = OutputLines()
        self._local.lines = lines if record else None
        try:
            yield lines
        finally:
            self._local.lines = None
            if sys.stdout is self:
                sys.stdout = current


# One per process: Powertools' logging handlers are process-wide (see `adopt_logger_streams`).
HANDLER_OUTPUT = HandlerOutput()


def adopt_logger_streams(output: HandlerOutput = HANDLER_OUTPUT) -> None:
    """Point every Powertools logger's handler at ``output``.

    Loggers are named after the service and live as long as the process, and
    Powertools reuses a named logger's handler, with the stream it was created
    with, on every later import: a logger first created elsewhere (a test
    importing a handler directly, an earlier pipeline) would write past the
    recording otherwise.
    """
    for candidate in list(logging.Logger.manager.loggerDict.values()):
        handler = getattr(candidate, "powertools_handler", None)
        if isinstance(handler, logging.StreamHandler) and handler.stream is not output:
            handler.setStream(output)


def lambda_log_events(
    request_id: str,
    output: Sequence[LogEvent],
    *,
    started_ms: int,
    ended_ms: int,
    duration_ms: float,
    memory_size: int,
    init_ms: float | None = None,
    error: BaseException | None = None,
) -> list[LogEvent]:
    """One invocation's log events as Lambda writes them (text log format)."""
    ended = max([ended_ms, *(event.timestamp for event in output)])
    events = [LogEvent(started_ms, f"START RequestId: {request_id} Version: $LATEST"), *output]
    if error is not None:
        # The Python runtime's line for an exception that escaped the handler.
        trace = "".join(traceback.format_exception(error)).rstrip()
        events.append(LogEvent(ended, f"[ERROR] {type(error).__name__}: {error}\n{trace}"))
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms\tMemory Size: {memory_size} MB\t"
        f"Max Memory Used: {min(memory_size, _peak_memory_mb())} MB\t"
    )
    if init_ms is not None:
        report += f"Init Duration: {init_ms:.2f} ms\t"
    events += [LogEvent(ended, f"END RequestId: {request_id}"), LogEvent(ended, report)]
    return events


def _peak_memory_mb() -> int:
    # All functions share this process: its peak is the closest local figure there is.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


@dataclass(frozen=True)
class _Batch:
    group: str
    stream: str
    events: tuple[LogEvent, ...]
    # API Gateway delivers access logs in batches: consecutive batches of one stream may be merged.
    mergeable: bool


LogsClientFactory = Callable[[], Any]


class LogShipper:
    """Delivers log events to CloudWatch Logs from a background thread.

    ``put`` returns at once. Each batch becomes one PutLogEvents call (split
    only at the API's limits), except that ``mergeable`` batches of one stream
    queued together travel in one call. A log group that does not exist is
    created on first use, as Lambda creates ``/aws/lambda/<name>``; streams too.
    """

    def __init__(self, logs: LogsClientFactory) -> None:
        self._logs_factory = logs
        # Batches, flush markers (set once everything before them is delivered) and None (stop).
        self._queue: queue.Queue[_Batch | threading.Event | None] = queue.Queue()
        self._streams: set[tuple[str, str]] = set()
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def put(self, group: str, stream: str, events: Sequence[LogEvent], *, mergeable: bool = False) -> None:
        if events:
            self._queue.put(_Batch(group, stream, tuple(events), mergeable))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is delivered; False on timeout."""
        delivered = threading.Event()
        self._queue.put(delivered)
        return delivered.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        client = self._logs_factory()
        while True:
            item = self._queue.get()
            merged: dict[tuple[str, str], list[LogEvent]] = {}
            # Merge the mergeable batches waiting now; whatever ends the run is handled after them.
            while isinstance(item, _Batch) and item.mergeable:
                merged.setdefault((item.group, item.stream), []).extend(item.events)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = _NOTHING
            for (group, stream), events in merged.items():
                self._put(client, group, stream, events)
            if isinstance(item, _Batch):
                self._put(client, item.group, item.stream, list(item.events))
            elif item is _NOTHING:
                continue
            elif isinstance(item, threading.Event):
                item.set()
            elif item is None:
                return

    def _put(self, client: Any, group: str, stream: str, events: list[LogEvent]) -> None:
        try:
            self._ensure_stream(client, group, stream)
            for chunk in _chunks(sorted(events, key=lambda event: event.timestamp)):
                client.put_log_events(
                    logGroupName=group,
                    logStreamName=stream,
                    logEvents=[{"timestamp": event.timestamp, "message": event.message} for event in chunk],
                )
        except (BotoCoreError, ClientError) as error:
            # Logs are best effort: the pipeline goes on, and says so once per group.
            if group not in self._warned:
                self._warned.add(group)
                LOG.warning("log events for %s were not delivered: %s", group, error)

    def _ensure_stream(self, client: Any, group: str, stream: str) -> None:
        if (group, stream) in self._streams:
            return
        for create, arguments in (
            (client.create_log_group, {"logGroupName": group}),
            (client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
        ):
            with suppress(client.exceptions.ResourceAlreadyExistsException):
                create(**arguments)
        self._streams.add((group, stream))


# Stands for "the queue is empty" after a run of merged batches (typed like a flush marker).
_NOTHING = threading.Event()


def _chunks(events: list[LogEvent]) -> Iterator[list[LogEvent]]:
    chunk: list[LogEvent] = []
    size = 0
    for event in events:
        message = _cut(event.message)
        cost = len(message.encode("utf-8")) + EVENT_OVERHEAD_BYTES
        if chunk and (len(chunk) == MAX_EVENTS_PER_PUT or size + cost > MAX_BYTES_PER_PUT):
            yield chunk
            chunk, size = [], 0
        chunk.append(LogEvent(event.timestamp, message))
        size += cost
    if chunk:
        yield chunk


def _cut(message: str) -> str:
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_EVENT_BYTES:
        return message
    return encoded[:MAX_EVENT_BYTES].decode("utf-8", errors="ignore")
