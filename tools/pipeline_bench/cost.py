"""The price table and the cost model: usage per million callbacks in, dollars out.

Pure: no AWS, no I/O. The benchmark counts requests and measures durations and
log volume in a run of the local pipeline, turns them into `UsageLine`s per
million callbacks, and prices them here. The original design's figure
(`anchor_usage`) is the same model applied to that design's request pattern,
fed with figures from the same run, so both numbers move together when a price
or an assumption changes.

Prices are us-east-1 list prices (first pricing tier, free tiers ignored: this
is the marginal cost of the next million callbacks), each with its source.
What is not an API request in a local run is modelled explicitly and labelled
with its `origin`, and the one open question (whether SQS bills the enqueue of
an SNS delivery) is a visible `Assumptions` flag, priced both ways.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

PER_MILLION = 1_000_000
# SQS, SNS and EventBridge bill every started 64 KB of a request's payload as one request.
BILLING_CHUNK_BYTES = 64 * 1024
# Lambda gives a function one full vCPU at 1,769 MB; below that, CPU time stretches by 1769/MemorySize.
FULL_VCPU_MEMORY_MB = 1769
# DynamoDB write units are per started KB; an index entry carries 100 bytes of overhead.
WRITE_UNIT_BYTES = 1024
INDEX_ENTRY_OVERHEAD_BYTES = 100
# CloudWatch Logs sizes a log event as its UTF-8 message plus 26 bytes (PutLogEvents' accounting).
LOG_EVENT_OVERHEAD_BYTES = 26
BYTES_PER_GB = 1_000_000_000  # decimal GB: slightly more GB than 2**30, so never an underestimate
# Firehose bills ingestion per record rounded up to 5 KB.
FIREHOSE_RECORD_INCREMENT_BYTES = 5 * 1024

# Lambda's own lines per invocation with the default Text log format (one event each).
LAMBDA_START_LINE = "START RequestId: 8f5a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b Version: $LATEST"
LAMBDA_END_LINE = "END RequestId: 8f5a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b"
LAMBDA_REPORT_LINE = (
    "REPORT RequestId: 8f5a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b\tDuration: 41.23 ms\t"
    "Billed Duration: 42 ms\tMemory Size: 256 MB\tMax Memory Used: 98 MB\t"
)
LAMBDA_REPORT_XRAY_SUFFIX = (
    "XRAY TraceId: 1-6740a1b2-5ac6c58f5b5dbd6a5e1b4151\tSegmentId: 6f2b1a3c4d5e6f70\tSampled: true\t"
)


@dataclass(frozen=True)
class Price:
    """One list price: dollars per unit, and where it comes from."""

    usd: float
    unit: str
    source: str
    note: str = ""


# us-east-1 list prices, first tier.
PRICES: Mapping[str, Price] = {
    "apigateway.http_request": Price(
        1.00 / PER_MILLION,
        "HTTP API request",
        "https://aws.amazon.com/api-gateway/pricing/",
        "first 300 million requests a month",
    ),
    "sqs.request": Price(
        0.40 / PER_MILLION,
        "standard-queue request per 64 KB chunk",
        "https://aws.amazon.com/sqs/pricing/",
        "SendMessage, ReceiveMessage, DeleteMessageBatch … each; a batch of 10 is one request",
    ),
    "sns.publish": Price(
        0.50 / PER_MILLION,
        "publish request per 64 KB chunk",
        "https://aws.amazon.com/sns/pricing/",
        "PublishBatch billed per request (64 KB chunks), as the issue states",
    ),
    "sns.delivery.sqs_lambda": Price(
        0.0,
        "notification delivered to SQS or Lambda",
        "https://aws.amazon.com/sns/pricing/",
        "SNS charges nothing to deliver to SQS or Lambda",
    ),
    "lambda.request": Price(0.20 / PER_MILLION, "invocation", "https://aws.amazon.com/lambda/pricing/"),
    "lambda.arm64.gb_second": Price(
        0.0000133334, "GB-second (arm64)", "https://aws.amazon.com/lambda/pricing/", "first 7.5B GB-s a month"
    ),
    "s3.put": Price(
        0.005 / 1000, "PUT/COPY/POST/LIST request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"
    ),
    "s3.get": Price(0.0004 / 1000, "GET/SELECT request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"),
    "dynamodb.write_unit": Price(
        0.625 / PER_MILLION,
        "on-demand write request unit",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "1 per started KB written; index writes included; a failed conditional write still costs 1",
    ),
    "dynamodb.read_unit": Price(
        0.125 / PER_MILLION,
        "on-demand read request unit",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "1 per started 4 KB strongly consistent read (half that eventually consistent)",
    ),
    "eventbridge.custom_event": Price(
        1.00 / PER_MILLION,
        "custom event published, per 64 KB chunk",
        "https://aws.amazon.com/eventbridge/pricing/",
        "rule matching and delivery to targets are free",
    ),
    "eventbridge.archive_gb": Price(
        0.10, "GB of events archived", "https://aws.amazon.com/eventbridge/pricing/", "storage extra"
    ),
    "logs.ingest_gb": Price(
        0.50,
        "GB of logs ingested (Standard class)",
        "https://aws.amazon.com/cloudwatch/pricing/",
        "Lambda output, Lambda's START/END/REPORT lines and API access logs",
    ),
    "xray.trace": Price(
        5.00 / PER_MILLION,
        "trace recorded",
        "https://aws.amazon.com/xray/pricing/",
        "after 100,000 free traces a month",
    ),
    "secretsmanager.api": Price(0.05 / 10_000, "API call", "https://aws.amazon.com/secrets-manager/pricing/"),
    "kms.request": Price(
        0.03 / 10_000, "request", "https://aws.amazon.com/kms/pricing/", "after 20,000 free a month"
    ),
    "firehose.ingest_gb": Price(
        0.029,
        "GB ingested (Direct PUT), records rounded up to 5 KB",
        "https://aws.amazon.com/firehose/pricing/",
    ),
    "free": Price(0.0, "no charge", "", ""),
}


@dataclass(frozen=True)
class Assumptions:
    """The model's choices where a run cannot count and our sources do not settle the price."""

    # SNS charges nothing to deliver to SQS, and SQS bills the API requests its users make; the
    # issue's price table (and its $2 floor) has no line for the enqueue of a delivery. True prices
    # every delivery at the SQS request price instead: the sensitivity every result also reports.
    sns_to_sqs_enqueue_billed: bool = False
    # Share of invocations of an Active-tracing function that X-Ray records. Lambda samples the
    # first request each second and 5% of the rest, so below about one invocation per second
    # per function every invocation is a trace: 1.0 is the conservative choice.
    xray_sampled_fraction: float = 1.0
    # Delivery from SNS to a Firehose stream: not in our sources; priced like an SQS enqueue.
    sns_to_firehose_delivery_usd: float = 0.40 / PER_MILLION

    def describe(self) -> dict[str, object]:
        return {
            "sns_to_sqs_enqueue_billed": self.sns_to_sqs_enqueue_billed,
            "xray_sampled_fraction": self.xray_sampled_fraction,
            "sns_to_firehose_delivery_usd_per_million": round(
                self.sns_to_firehose_delivery_usd * PER_MILLION, 4
            ),
        }


# The headline's assumptions: the price table as published (SNS→SQS deliveries free), every
# invocation of an Active-tracing function a trace.
HEADLINE = Assumptions()
# The sensitivity: every SNS→SQS delivery also billed as an SQS request.
ENQUEUE_BILLED = Assumptions(sns_to_sqs_enqueue_billed=True)

# Origins: where a quantity comes from.
COUNTED = "counted"  # an AWS request the run made, counted by the traffic hook
MEASURED = "measured"  # durations, log bytes, item sizes measured in the run
MODELLED = "modelled"  # what AWS does that the run cannot count (deliveries, traces, platform logs)
ASSUMED = "assumed"  # a stated design pattern (the original design, alternatives)


@dataclass(frozen=True)
class UsageLine:
    """A quantity per million callbacks, the price it is billed at, and where it comes from."""

    service: str
    item: str
    quantity: float
    price_key: str
    origin: str
    component: str = "shared"
    # An SNS→SQS delivery, priced by `Assumptions.sns_to_sqs_enqueue_billed`.
    sns_enqueue: bool = False


@dataclass(frozen=True)
class CostLine:
    """A priced usage line."""

    usage: UsageLine
    unit_usd: float
    usd: float


@dataclass(frozen=True)
class CostBreakdown:
    """Every line priced, with totals."""

    lines: tuple[CostLine, ...]
    assumptions: Assumptions

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)

    def by_service(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for line in self.lines:
            totals[line.usage.service] += line.usd
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def by_component(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for line in self.lines:
            totals[line.usage.component] += line.usd
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def to_dict(self) -> dict[str, object]:
        return {
            "total_usd": round(self.total, 4),
            "by_service_usd": {name: round(usd, 4) for name, usd in self.by_service().items()},
            "by_component_usd": {name: round(usd, 4) for name, usd in self.by_component().items()},
            "lines": [
                {
                    "service": line.usage.service,
                    "item": line.usage.item,
                    "component": line.usage.component,
                    "quantity_per_million": round(line.usage.quantity, 3),
                    "unit_usd": line.unit_usd,
                    "usd": round(line.usd, 5),
                    "origin": line.usage.origin,
                }
                for line in sorted(self.lines, key=lambda line: -line.usd)
            ],
        }


def unit_price(line: UsageLine, assumptions: Assumptions, prices: Mapping[str, Price] = PRICES) -> float:
    """What one unit of the line costs under the assumptions."""
    if line.sns_enqueue:
        return prices["sqs.request"].usd if assumptions.sns_to_sqs_enqueue_billed else 0.0
    if line.price_key == "sns.delivery.firehose":
        return assumptions.sns_to_firehose_delivery_usd
    return prices[line.price_key].usd


def price(
    lines: Iterable[UsageLine], assumptions: Assumptions = HEADLINE, prices: Mapping[str, Price] = PRICES
) -> CostBreakdown:
    """Price usage lines: quantity x unit price, each line kept for the breakdown."""
    priced = []
    for line in lines:
        unit = unit_price(line, assumptions, prices)
        priced.append(CostLine(line, unit, line.quantity * unit))
    return CostBreakdown(tuple(priced), assumptions)


# --- small pure helpers ---------------------------------------------------------------------


def chunks(payload_bytes: int, chunk_bytes: int = BILLING_CHUNK_BYTES) -> int:
    """Billing units of one request: every started 64 KB, at least one."""
    return max(1, math.ceil(payload_bytes / chunk_bytes))


def billed_gb_seconds(duration_ms: float, memory_mb: int) -> float:
    """GB-seconds Lambda bills for one invocation (duration rounded up to the millisecond)."""
    return math.ceil(max(duration_ms, 0.0)) / 1000 * memory_mb / 1024


def write_units(size_bytes: int) -> int:
    """DynamoDB write units for one write of an item (or index entry) of this size."""
    return max(1, math.ceil(size_bytes / WRITE_UNIT_BYTES))


def firehose_billed_bytes(record_bytes: int) -> int:
    """What Firehose bills one record as: rounded up to the next 5 KB."""
    return max(1, math.ceil(record_bytes / FIREHOSE_RECORD_INCREMENT_BYTES)) * FIREHOSE_RECORD_INCREMENT_BYTES


def log_bytes(message_bytes: float, events: float) -> float:
    """Ingested bytes of log events: their messages plus the per-event overhead."""
    return message_bytes + events * LOG_EVENT_OVERHEAD_BYTES


def platform_log_lines(tracing_active: bool) -> tuple[int, int]:
    """(bytes, events) Lambda itself logs per invocation: START, END and REPORT."""
    report = LAMBDA_REPORT_LINE + (LAMBDA_REPORT_XRAY_SUFFIX if tracing_active else "")
    lines = (LAMBDA_START_LINE, LAMBDA_END_LINE, report)
    return sum(len(line.encode("utf-8")) for line in lines), len(lines)


def per_million(count: float, callbacks: int) -> float:
    """A count from a run of ``callbacks`` callbacks, scaled to one million."""
    if callbacks <= 0:
        raise ValueError("a run needs at least one callback")
    return count * PER_MILLION / callbacks


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y over x; one distinct x gives slope 0 and the mean."""
    if not points:
        return 0.0, 0.0
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return mean_y, 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    intercept = mean_y - slope * mean_x
    if intercept < 0:
        # A negative fixed cost is noise; refit through the origin.
        return 0.0, sum(x * y for x, y in points) / sum(x * x for x in xs)
    return intercept, slope


# --- a function's cost profile, measured in the run -----------------------------------------


@dataclass(frozen=True)
class FunctionProfile:
    """How one function's duration and log output grow with the records in an invocation."""

    name: str
    memory_mb: int
    tracing_active: bool
    duration_fixed_ms: float
    duration_per_record_ms: float
    cpu_share: float
    log_bytes_fixed: float
    log_bytes_per_record: float
    log_events_fixed: float
    log_events_per_record: float

    def duration_ms(self, records: float) -> float:
        return self.duration_fixed_ms + self.duration_per_record_ms * records

    def lambda_duration_ms(self, records: float, memory_mb: int | None = None) -> float:
        """Estimated duration on Lambda: the CPU part stretched below a full vCPU, the waits as measured."""
        memory = memory_mb or self.memory_mb
        measured = self.duration_ms(records)
        stretch = max(1.0, FULL_VCPU_MEMORY_MB / memory)
        return measured * (1 - self.cpu_share) + measured * self.cpu_share * stretch

    def own_log(self, records: float) -> tuple[float, float]:
        """(bytes, events) the handler itself logs for one invocation of this many records."""
        return (
            self.log_bytes_fixed + self.log_bytes_per_record * records,
            self.log_events_fixed + self.log_events_per_record * records,
        )


def invocation_lines(
    profile: FunctionProfile,
    *,
    invocations: float,
    records_per_invocation: float,
    component: str,
    origin: str,
    memory_mb: int | None = None,
    tracing_active: bool | None = None,
    own_logs: bool = True,
    assumptions: Assumptions = HEADLINE,
    duration_ms: float | None = None,
) -> list[UsageLine]:
    """Requests, GB-seconds, logs and traces of ``invocations`` invocations per million callbacks."""
    memory = memory_mb or profile.memory_mb
    tracing = profile.tracing_active if tracing_active is None else tracing_active
    duration = profile.duration_ms(records_per_invocation) if duration_ms is None else duration_ms
    platform_bytes, platform_events = platform_log_lines(tracing)
    own_bytes, own_events = profile.own_log(records_per_invocation) if own_logs else (0.0, 0.0)
    ingested = log_bytes(own_bytes + platform_bytes, own_events + platform_events) * invocations
    lines = [
        UsageLine("Lambda", f"{profile.name} invocations", invocations, "lambda.request", origin, component),
        UsageLine(
            "Lambda",
            f"{profile.name} compute ({memory} MB, {duration:.1f} ms)",
            invocations * billed_gb_seconds(duration, memory),
            "lambda.arm64.gb_second",
            origin,
            component,
        ),
        UsageLine(
            "CloudWatch Logs",
            f"{profile.name} logs",
            ingested / BYTES_PER_GB,
            "logs.ingest_gb",
            origin,
            component,
        ),
    ]
    if tracing:
        lines.append(
            UsageLine(
                "X-Ray",
                f"{profile.name} traces (Active)",
                invocations * assumptions.xray_sampled_fraction,
                "xray.trace",
                MODELLED,
                component,
            )
        )
    return lines


# --- the original design ----------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorInputs:
    """What the original design's figure needs from the run."""

    error_fraction: float
    # Mean write units of one stored callback item (the record: envelope, every Twilio parameter).
    record_write_units: float
    validator: FunctionProfile
    archive_writer: FunctionProfile
    store_writer: FunctionProfile
    error_checker: FunctionProfile
    # The original's functions: Node.js, memory unknown; 128 MB is the cheapest it could have been.
    memory_mb: int = 128
    validator_batch_size: int = 3
    subscribers: int = 3


def anchor_usage(inputs: AnchorInputs) -> list[UsageLine]:
    """The original design's requests per million callbacks, priced by the same model.

    API Gateway → SQS (one send per callback) → validator Lambda in batches of 3
    (one receive and one batch delete per batch) → one SNS Publish per record →
    three direct SNS→Lambda subscriptions, each invoked once per callback (the
    error checker filtered in code) → one S3 PUT per callback; a DynamoDB item
    plus an ALL-projection index entry per callback; one EventBridge event per
    error. Logs are Lambda's own lines only and there is no tracing or access
    log: every unknown is resolved in the original's favour, so the ratio to
    it is a floor.
    """
    million = float(PER_MILLION)
    batches = million / inputs.validator_batch_size
    lines = [
        UsageLine("API Gateway", "HTTP API requests", million, "apigateway.http_request", ASSUMED, "ingest"),
        UsageLine("SQS", "SendMessage (ingest)", million, "sqs.request", ASSUMED, "ingest"),
        UsageLine("SQS", "ReceiveMessage (ingest, batches of 3)", batches, "sqs.request", ASSUMED, "ingest"),
        UsageLine("SQS", "DeleteMessageBatch (ingest)", batches, "sqs.request", ASSUMED, "ingest"),
        UsageLine("SNS", "Publish (one per record)", million, "sns.publish", ASSUMED, "ingest"),
        UsageLine(
            "SNS",
            f"deliveries to {inputs.subscribers} Lambda subscriptions",
            million * inputs.subscribers,
            "sns.delivery.sqs_lambda",
            ASSUMED,
            "fan-out",
        ),
        UsageLine("S3", "PutObject (one per callback)", million, "s3.put", ASSUMED, "archive"),
        UsageLine(
            "DynamoDB",
            "item + ALL-projection index entry per callback",
            million * 2 * inputs.record_write_units,
            "dynamodb.write_unit",
            ASSUMED,
            "status",
        ),
        UsageLine(
            "EventBridge",
            "PutEvents (one event per error)",
            million * inputs.error_fraction,
            "eventbridge.custom_event",
            ASSUMED,
            "errors",
        ),
    ]
    consumers = (
        (inputs.validator, batches, float(inputs.validator_batch_size), "ingest"),
        (inputs.archive_writer, million, 1.0, "archive"),
        (inputs.store_writer, million, 1.0, "status"),
        (inputs.error_checker, million, 1.0, "errors"),
    )
    for profile, invocations, records, component in consumers:
        lines += invocation_lines(
            profile,
            invocations=invocations,
            records_per_invocation=records,
            component=component,
            origin=ASSUMED,
            memory_mb=inputs.memory_mb,
            tracing_active=False,
            own_logs=False,
        )
    return lines


def scaled(line: UsageLine, factor: float, item: str | None = None) -> UsageLine:
    """A line with its quantity multiplied (and optionally renamed)."""
    return replace(line, quantity=line.quantity * factor, item=item or line.item)


@dataclass(frozen=True)
class FixedCost:
    """A monthly cost that does not grow with callbacks."""

    item: str
    usd_per_month: float
    basis: str


@dataclass
class FixedCosts:
    """Monthly costs independent of volume (idle polling, keys, secrets, alarms)."""

    items: list[FixedCost] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(item.usd_per_month for item in self.items)

    def to_dict(self) -> dict[str, object]:
        return {
            "total_usd_per_month": round(self.total, 2),
            "items": [
                {"item": item.item, "usd_per_month": round(item.usd_per_month, 3), "basis": item.basis}
                for item in self.items
            ],
        }


SECONDS_PER_MONTH = 30 * 24 * 3600
# Lambda's SQS event source keeps at least five pollers long-polling (20 s) an idle queue.
ESM_IDLE_POLLERS = 5
SQS_LONG_POLL_SECONDS = 20
# SNS reuses a topic's data key for up to five minutes; two KMS calls per publisher each time.
SNS_DATA_KEY_REUSE_SECONDS = 300


def fixed_costs(
    event_source_queues: int, encrypted_topic_publishers: Sequence[int], secrets: int, alarms: int, keys: int
) -> FixedCosts:
    """The volume-independent monthly costs of the four stacks."""
    polls = event_source_queues * ESM_IDLE_POLLERS * SECONDS_PER_MONTH / SQS_LONG_POLL_SECONDS
    kms_requests = sum(
        SECONDS_PER_MONTH / SNS_DATA_KEY_REUSE_SECONDS * 2 * publishers
        for publishers in encrypted_topic_publishers
    )
    return FixedCosts(
        [
            FixedCost(
                "SQS empty receives of idle event sources",
                polls * PRICES["sqs.request"].usd,
                f"{event_source_queues} queues x {ESM_IDLE_POLLERS} pollers x one 20 s long poll",
            ),
            FixedCost(
                "KMS data keys for encrypted SNS topics",
                kms_requests * PRICES["kms.request"].usd,
                "SNS formula R = month / 300 s x 2 x publishers, per topic (before the free 20,000)",
            ),
            FixedCost("Secrets Manager secret", 0.40 * secrets, f"{secrets} secret(s) at $0.40/month"),
            FixedCost("KMS customer managed keys", 1.00 * keys, f"{keys} key(s) at $1/month"),
            FixedCost("CloudWatch alarms", 0.10 * alarms, f"{alarms} standard alarm(s) at $0.10/month"),
        ]
    )
