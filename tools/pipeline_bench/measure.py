"""What the benchmark records while the local pipeline runs.

- `Recorder.intercept` is a `Traffic` interceptor: it names every AWS request
  by service, operation and the stack resource it targets, counts it, and for
  the requests whose answer matters reads the answer on the way back (which
  receives returned messages, which conditional writes failed). From the
  request bodies it also takes what AWS bills but a request count does not
  show: DynamoDB write units from item sizes (index entries included),
  64 KB chunks, EventBridge entries, and the moment a callback became visible
  in DynamoDB, on the error bus and on the alerts topic.
- `Recorder.observe` is an invocation observer: durations, CPU time, records
  and log output of every handler invocation, and when archive batches land.
- `LogCapture` stands in for ``sys.stdout`` (where Powertools writes logs and
  EMF metrics) and counts each function's output instead of printing it.

Requests the runner makes to its internal queues (stand-ins for SNS→Lambda
and EventBridge→Lambda/SNS delivery, which AWS does itself), requests it makes
in a service's place (`AwsRequest.internal`: Lambda's and API Gateway's
PutLogEvents, whose bytes the cost model takes from the log capture instead)
and requests carrying `BENCH_USER_AGENT` (the benchmark's own verification
reads) are kept apart from the counts.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from aws_emulator.provision import INTERNAL_PREFIX, FunctionSpec
from aws_emulator.traffic import AwsRequest, Forward
from pipeline_bench import billing
from pipeline_bench.cost import INDEX_ENTRY_OVERHEAD_BYTES, chunks, write_units
from status_callbacks.adapters import dynamodb
from status_callbacks.domain import status_items

BENCH_USER_AGENT = "twilio-callbacks-bench"
RUNNER = "(runner)"
EMF = "emf"
_DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_ALERT = re.compile(r" on \S+ (?P<sid>\S+) \(status (?P<status>[^)\s]+)\)")
_LEVEL = re.compile(rb'"level":\s*"(?P<level>[A-Z]+)"')

Key = tuple[str, str]
Resource = tuple[str, str]  # (stack, logical id); stack "" when the resource is not the stacks'


@dataclass(frozen=True)
class IndexSpec:
    """A secondary index: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]
    projection: str
    projected: tuple[str, ...] = ()

    def entry_size(self, item: Mapping[str, Any], table_keys: tuple[str, ...]) -> int | None:
        """Bytes of the index entry the item creates (None when the item lacks the index keys)."""
        if not all(key in item for key in self.keys):
            return None
        if self.projection == "ALL":
            entry = dict(item)
        else:
            names = {*table_keys, *self.keys, *(self.projected if self.projection == "INCLUDE" else ())}
            entry = {name: value for name, value in item.items() if name in names}
        return _item_size(entry) + INDEX_ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table of the stacks: keys and secondary indexes."""

    resource: Resource
    keys: tuple[str, ...]
    indexes: tuple[IndexSpec, ...] = ()


@dataclass(frozen=True)
class Topology:
    """Which physical resource is which stack resource, and the roles the benchmark cares about."""

    queues: Mapping[str, Resource]
    topics: Mapping[str, Resource]
    tables: Mapping[str, TableSpec]
    buckets: Mapping[str, Resource]
    buses: Mapping[str, Resource]
    secrets: Mapping[str, Resource]
    functions: Mapping[str, FunctionSpec]
    subscribed_queues: frozenset[str]
    ingest_queue: str
    status_table: str
    alerts_topic: str
    archiver: str
    flagger: str


@dataclass(frozen=True)
class InvocationSample:
    """One handler invocation."""

    records: int
    duration_ms: float
    cpu_ms: float
    log_bytes: int
    log_events: int
    failed: bool
    log_kinds: Mapping[str, tuple[int, int]] = field(default_factory=dict)


class LogCapture(io.TextIOBase):
    """A stdout that counts each function's output (bytes and lines, by kind) instead of printing it.

    Invocations are serialised and run with ``AWS_LAMBDA_FUNCTION_NAME`` set,
    so whatever is written while it is set belongs to that function.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.bytes: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        # (function, kind) → bytes / events; kind is "emf" or the log level.
        self.kind_bytes: Counter[tuple[str, str]] = Counter()
        self.kind_events: Counter[tuple[str, str]] = Counter()
        self._pending: dict[str, bytearray] = defaultdict(bytearray)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", RUNNER)
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            pending = self._pending[name]
            pending.extend(data)
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending[:] = rest
                self._count(name, line)
        return len(text)

    def _count(self, name: str, line: bytes) -> None:
        if not line:
            return
        kind = EMF if line.startswith(b'{"_aws"') else _level(line)
        self.bytes[name] += len(line)
        self.events[name] += 1
        self.kind_bytes[(name, kind)] += len(line)
        self.kind_events[(name, kind)] += 1

    def totals(self, name: str) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """(bytes, events, {kind: (bytes, events)}) written by a function so far."""
        with self._lock:
            kinds = {
                kind: (count, self.kind_events[(owner, kind)])
                for (owner, kind), count in self.kind_bytes.items()
                if owner == name
            }
            return self.bytes[name], self.events[name], kinds


def _level(line: bytes) -> str:
    match = _LEVEL.search(line[:200])
    return match["level"].decode() if match else "OTHER"


def _item_size(item: Mapping[str, Any]) -> int:
    try:
        return billing.item_size(item)
    except TypeError:
        return len(json.dumps(item, default=str).encode("utf-8"))


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


@dataclass
class Snapshot:
    """Everything recorded, frozen at the end of the measured run."""

    calls: Counter[tuple[str, str, Resource]]
    units: Counter[tuple[str, str, Resource]]
    empty_receives: Counter[Resource]
    plumbing: Counter[tuple[str, str]]
    deliveries: dict[Resource, int]
    write_units: Counter[tuple[Resource, str]]
    read_units: dict[Resource, float]
    current_writes: int
    current_stale: int
    event_item_units: list[int]
    event_item_bytes: list[int]
    record_bytes: list[int]
    events_entries: int
    events_bytes: int
    samples: dict[str, list[InvocationSample]]
    landed: dict[str, dict[Key, float]]
    log_totals: dict[str, int]


class Recorder:
    """Counts and times the pipeline's AWS traffic and handler invocations for one run."""

    def __init__(self, topology: Topology, logs: LogCapture, *, capture_ingest: bool = True) -> None:
        self.topology = topology
        self.logs = logs
        self.capture_ingest = capture_ingest
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str, Resource]] = Counter()
        self.units: Counter[tuple[str, str, Resource]] = Counter()
        self.empty_receives: Counter[Resource] = Counter()
        self.plumbing: Counter[tuple[str, str]] = Counter()
        self._delivered: dict[Resource, set[str]] = defaultdict(set)
        self.write_units: Counter[tuple[Resource, str]] = Counter()
        self.read_units: dict[Resource, float] = defaultdict(float)
        self.current_writes = 0
        self.current_stale = 0
        self.event_item_units: list[int] = []
        self.event_item_bytes: list[int] = []
        self.record_bytes: list[int] = []
        self.events_entries = 0
        self.events_bytes = 0
        self.samples: dict[str, list[InvocationSample]] = defaultdict(list)
        self._log_seen: dict[str, tuple[int, int, dict[str, tuple[int, int]]]] = {}
        self.landed: dict[str, dict[Key, float]] = defaultdict(dict)
        self.ingest_messages: list[tuple[str, dict[str, Any]]] = []
        self._by_service: dict[str, Callable[[AwsRequest], Forward | None]] = {
            "sqs": self._sqs,
            "sns": self._sns,
            "events": self._events,
            "s3": self._s3,
            "dynamodb": self._dynamodb,
            "secretsmanager": self._secretsmanager,
        }

    # -- traffic ------------------------------------------------------------------------------

    def intercept(self, request: AwsRequest) -> Forward | None:
        """Count one AWS request; forward the ones whose answer must be read."""
        if BENCH_USER_AGENT in request.headers.get("user-agent", ""):
            return None
        if request.internal:
            with self._lock:
                self.plumbing[(request.service, request.operation)] += 1
            return None
        handler = self._by_service.get(request.service)
        if handler is None:
            self._count(request.service, request.operation, ("", request.service), 1)
            return None
        return handler(request)

    def _count(self, service: str, operation: str, resource: Resource, units: int) -> None:
        with self._lock:
            self.calls[(service, operation, resource)] += 1
            self.units[(service, operation, resource)] += units

    def _land(self, sink: str, key: Key) -> None:
        now = time.monotonic()
        with self._lock:
            self.landed[sink].setdefault(key, now)

    def _sqs(self, request: AwsRequest) -> Forward | None:
        document = _json(request.body)
        name = str(document.get("QueueUrl", "")).rsplit("/", 1)[-1]
        if name.startswith(INTERNAL_PREFIX):
            with self._lock:
                self.plumbing[("sqs", request.operation)] += 1
            return None
        resource = self.topology.queues.get(name, ("", name))
        if request.operation == "ReceiveMessage":
            return Forward(request.body, partial(self._received, resource))
        self._count("sqs", request.operation, resource, chunks(len(request.body)))
        if request.operation == "SendMessage" and self.capture_ingest and name == self.topology.ingest_queue:
            with self._lock:
                self.ingest_messages.append(
                    (str(document.get("MessageBody", "")), dict(document.get("MessageAttributes") or {}))
                )
        return None

    def _received(self, resource: Resource, answer: bytes) -> bytes:
        messages = _json(answer).get("Messages") or []
        with self._lock:
            if not messages:
                self.empty_receives[resource] += 1
                return answer
            payload = sum(len(str(message.get("Body", "")).encode("utf-8")) for message in messages)
            self.calls[("sqs", "ReceiveMessage", resource)] += 1
            self.units[("sqs", "ReceiveMessage", resource)] += chunks(payload)
            if resource[1] in self.topology.subscribed_queues:
                self._delivered[resource].update(str(message.get("MessageId")) for message in messages)
        return answer

    def _sns(self, request: AwsRequest) -> Forward | None:
        form = parse_qs(request.body.decode("utf-8", errors="replace"))
        topic = (form.get("TopicArn") or [""])[0]
        resource = self.topology.topics.get(topic, ("", topic.rsplit(":", 1)[-1]))
        payload = sum(
            len(value.encode("utf-8"))
            for name, values in form.items()
            if name == "Message" or name.endswith((".Message", ".Value.StringValue"))
            for value in values
        )
        self._count("sns", request.operation, resource, chunks(payload))
        if request.operation == "Publish" and topic == self.topology.alerts_topic:
            match = _ALERT.search((form.get("Message") or [""])[0])
            if match:
                self._land("alerts", (match["sid"], match["status"]))
        return None

    def _events(self, request: AwsRequest) -> Forward | None:
        entries = _json(request.body).get("Entries") or []
        bus = str(entries[0].get("EventBusName", "default")) if entries else "default"
        units = 0
        for entry in entries:
            size = sum(
                len(str(entry.get(name, "")).encode("utf-8")) for name in ("Source", "DetailType", "Detail")
            )
            units += chunks(size)
            with self._lock:
                self.events_entries += 1
                self.events_bytes += size
            record = (_json(str(entry.get("Detail", "")).encode("utf-8")).get("record")) or {}
            if record.get("sid"):
                self._land("error_bus", (str(record["sid"]), str(record.get("status"))))
        resource = self.topology.buses.get(bus.rsplit("/", 1)[-1], ("", bus))
        self._count("events", request.operation, resource, units)
        return None

    def _s3(self, request: AwsRequest) -> Forward | None:
        bucket = request.path.lstrip("/").split("/", 1)[0]
        self._count("s3", request.operation, self.topology.buckets.get(bucket, ("", bucket)), 1)
        return None

    def _dynamodb(self, request: AwsRequest) -> Forward | None:
        document = _json(request.body)
        table = str(document.get("TableName", ""))
        spec = self.topology.tables.get(table)
        resource = spec.resource if spec else ("", table or "dynamodb")
        self._count("dynamodb", request.operation, resource, 1)
        if request.operation in _DYNAMODB_WRITES:
            return Forward(request.body, partial(self._written, request.operation, document))
        if request.operation == "GetItem":
            with self._lock:
                # Items here are under 4 KB: one unit strongly consistent, half one eventually.
                self.read_units[resource] += 1.0 if document.get("ConsistentRead") else 0.5
        elif request.operation in ("Query", "Scan", "BatchGetItem", "TransactGetItems"):
            with self._lock:
                self.read_units[resource] += 1.0
        return None

    def _written(self, operation: str, document: dict[str, Any], answer: bytes) -> bytes:
        failed = b"ConditionalCheckFailed" in answer or b"TransactionCanceled" in answer
        if operation == "BatchWriteItem":
            for table, requests in (document.get("RequestItems") or {}).items():
                for request in requests:
                    item = (request.get("PutRequest") or {}).get("Item")
                    self._write(str(table), item, failed=False)
        elif operation == "TransactWriteItems":
            for action in document.get("TransactItems") or []:
                for kind in ("Put", "Update", "Delete", "ConditionCheck"):
                    if kind in action:
                        inner = action[kind]
                        self._write(str(inner.get("TableName", "")), inner.get("Item"), failed, factor=2)
        elif operation == "PutItem":
            self._write(str(document.get("TableName", "")), document.get("Item"), failed)
        else:
            # UpdateItem/DeleteItem: the key and the new values stand in for the item's size.
            partial_item = {
                **(document.get("Key") or {}),
                **(document.get("ExpressionAttributeValues") or {}),
            }
            self._write(str(document.get("TableName", "")), partial_item, failed, indexes=False)
        return answer

    def _write(self, table: str, raw_item: Any, failed: bool, factor: int = 1, indexes: bool = True) -> None:
        spec = self.topology.tables.get(table)
        resource = spec.resource if spec else ("", table)
        item = dynamodb.from_attribute_values(raw_item) if isinstance(raw_item, Mapping) else {}
        size = _item_size(item)
        is_status = table == self.topology.status_table
        sort_key = str(item.get(status_items.SORT_KEY, ""))
        with self._lock:
            # A failed condition still costs a write unit (of the existing item, at least one).
            self.write_units[(resource, "table")] += factor * (1 if failed else write_units(size))
            if is_status and sort_key == status_items.CURRENT_SORT_KEY:
                self.current_writes += 1
                self.current_stale += failed
            if failed or spec is None or not indexes:
                return
            for index in spec.indexes:
                entry = index.entry_size(item, spec.keys)
                if entry is not None:
                    self.write_units[(resource, index.name)] += factor * write_units(entry)
            if is_status and sort_key.startswith(status_items.EVENT_PREFIX):
                self.event_item_units.append(write_units(size))
                self.event_item_bytes.append(size)
        if (
            is_status
            and sort_key.startswith(status_items.EVENT_PREFIX)
            and item.get(status_items.PARTITION_KEY)
        ):
            self._land("dynamodb", (str(item[status_items.PARTITION_KEY]), str(item.get("status"))))

    def _secretsmanager(self, request: AwsRequest) -> Forward | None:
        secret = str(_json(request.body).get("SecretId", ""))
        self._count("secretsmanager", request.operation, self.topology.secrets.get(secret, ("", secret)), 1)
        return None

    # -- invocations --------------------------------------------------------------------------

    def observe(self, function: FunctionSpec, event: Any, invocation: Any) -> None:
        """Record one invocation (called by the function host after each one)."""
        records = event.get("Records") if isinstance(event, Mapping) else None
        count = len(records) if isinstance(records, list) else 1
        total_bytes, total_events, kinds = self.logs.totals(function.name)
        with self._lock:
            seen_bytes, seen_events, seen_kinds = self._log_seen.get(function.name, (0, 0, {}))
            self._log_seen[function.name] = (total_bytes, total_events, kinds)
            delta_kinds = {
                kind: (
                    count_bytes - seen_kinds.get(kind, (0, 0))[0],
                    count_events - seen_kinds.get(kind, (0, 0))[1],
                )
                for kind, (count_bytes, count_events) in kinds.items()
            }
            self.samples[function.logical_id].append(
                InvocationSample(
                    records=count,
                    duration_ms=float(invocation.duration_ms),
                    cpu_ms=float(getattr(invocation, "cpu_ms", 0.0)),
                    log_bytes=total_bytes - seen_bytes,
                    log_events=total_events - seen_events,
                    failed=bool(invocation.failed),
                    log_kinds=delta_kinds,
                )
            )
        if invocation.failed:
            return
        if function.name == self.topology.archiver and isinstance(records, list):
            for message in records:
                record = _json(str(message.get("body", "")).encode("utf-8"))
                if record.get("sid"):
                    self._land("s3", (str(record["sid"]), str(record.get("status"))))
                    with self._lock:
                        self.record_bytes.append(len(str(message.get("body", "")).encode("utf-8")))
        elif function.name == self.topology.flagger and isinstance(event, Mapping):
            record = (event.get("detail") or {}).get("record") or {}
            if record.get("sid"):
                self._land("flags", (str(record["sid"]), str(record.get("status"))))

    # -- results ------------------------------------------------------------------------------

    def landed_count(self, sink: str) -> int:
        with self._lock:
            return len(self.landed.get(sink, {}))

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                calls=Counter(self.calls),
                units=Counter(self.units),
                empty_receives=Counter(self.empty_receives),
                plumbing=Counter(self.plumbing),
                deliveries={resource: len(ids) for resource, ids in self._delivered.items()},
                write_units=Counter(self.write_units),
                read_units=dict(self.read_units),
                current_writes=self.current_writes,
                current_stale=self.current_stale,
                event_item_units=list(self.event_item_units),
                event_item_bytes=list(self.event_item_bytes),
                record_bytes=list(self.record_bytes),
                events_entries=self.events_entries,
                events_bytes=self.events_bytes,
                samples={name: list(samples) for name, samples in self.samples.items()},
                landed={sink: dict(keys) for sink, keys in self.landed.items()},
                log_totals=dict(self.logs.bytes),
            )


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (share in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * share / 100))
    return ordered[rank - 1]
