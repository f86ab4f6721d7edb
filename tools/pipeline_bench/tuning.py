"""Tuning options, priced by the same model on the run's own figures.

Each `Option` is a change the lead could make (a parameter, a template
setting, a structural alternative) with what it does to the cost per million
callbacks, under both SNS→SQS assumptions, and to latency. Settings changes
are priced as the model at the new settings minus the model at the current
ones (so model error cancels); removals (traces, log lines, current-status
writes) come straight off the counted usage. `recommended` applies the
worthwhile ones one after another and shows where the total lands.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline_bench import cost
from pipeline_bench.cost import MODELLED, PER_MILLION, Assumptions, UsageLine
from pipeline_bench.results import Figures
from pipeline_bench.workload import current_status_writes

SQS_RECEIVE_MAX = 10
FIREHOSE_BUFFER_SECONDS = 900
ROUTER_WINDOW_SECONDS = 5.0
# Lambda's Active tracing: the first invocation each second, then this share of the rest.
XRAY_FIXED_RATE = 0.05
# The trimmed access log keeps who called what and the outcome.
TRIMMED_ACCESS_LOG = (
    '{"requestId":"JxYzAbCdIAMEbVw=","ip":"54.172.60.123","route":"POST /twilio-params","status":"200"}'
)
QUIET_RATE = 1.0


@dataclass(frozen=True)
class Option:
    """One change and its price."""

    area: str
    change: str
    delta_usd: float
    delta_usd_enqueue_billed: float
    latency: str
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "area": self.area,
            "change": self.change,
            "delta_usd_per_million": round(self.delta_usd, 4),
            "delta_usd_per_million_enqueue_billed": round(self.delta_usd_enqueue_billed, 4),
            "latency": self.latency,
            "note": self.note,
        }


def total(lines: Sequence[UsageLine], billed: bool) -> float:
    """The usage priced with SNS→SQS enqueues billed or free."""
    return cost.price(lines, Assumptions(sns_to_sqs_enqueue_billed=billed)).total


def _option(
    area: str,
    change: str,
    before: Sequence[UsageLine],
    after: Sequence[UsageLine],
    *,
    latency: str,
    note: str = "",
) -> Option:
    return Option(
        area,
        change,
        total(after, False) - total(before, False),
        total(after, True) - total(before, True),
        latency,
        note,
    )


def adjusted(
    lines: Sequence[UsageLine], before: Sequence[UsageLine], after: Sequence[UsageLine]
) -> list[UsageLine]:
    """The usage with a modelled change applied: the model's lines before taken off, after added."""
    return [*lines, *(cost.scaled(line, -1.0) for line in before), *after]


# --- consumers and their batches ------------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    """An SQS-fed function and the share of callbacks that reach it."""

    function: str
    queue: str
    component: str
    share: float
    batch_size: int
    window: float


def records_per_batch(
    consumer: Consumer, rate: float, batch_size: int | None = None, window: float | None = None
) -> float:
    """Records in a batch on AWS at ``rate`` callbacks/s: the window's arrivals, capped by BatchSize."""
    size = batch_size or consumer.batch_size
    wait = consumer.window if window is None else window
    return float(min(size, max(1.0, rate * consumer.share * wait)))


def consumers_of(figures: Figures) -> dict[str, Consumer]:
    run = figures.run
    errors = len(run.workload.error_keys()) / len(run.workload)
    known = {
        "ValidatorFunction": ("IngestQueue", "ingest", 1.0),
        "ArchiverFunction": ("ArchiveQueue", "archive", 1.0),
        "WriterFunction": ("StatusQueue", "status", 1.0),
        "RouterFunction": ("ErrorQueue", "errors", errors),
    }
    return {
        name: Consumer(name, queue, component, share, *run.event_sources[name])
        for name, (queue, component, share) in known.items()
        if name in run.event_sources and name in figures.profiles
    }


def consumer_lines(
    figures: Figures,
    consumer: Consumer,
    records: float,
    *,
    memory_mb: int | None = None,
    tracing_active: bool | None = None,
    quiet: bool = False,
) -> list[UsageLine]:
    """A consumer's SQS and Lambda usage per million callbacks at ``records`` per batch.

    On a busy queue every receive brings ten messages; on a quiet one (``quiet``)
    each arrival wakes a long poll, so a batch takes one receive per record.
    """
    profile = figures.profiles[consumer.function]
    invocations = PER_MILLION * consumer.share / records
    deletes = invocations * math.ceil(records / SQS_RECEIVE_MAX)
    receives = invocations * records if quiet else deletes
    duration = profile.lambda_duration_ms(records, memory_mb) if memory_mb else None
    component = consumer.component
    return [
        UsageLine("SQS", f"ReceiveMessage ({consumer.queue})", receives, "sqs.request", MODELLED, component),
        UsageLine(
            "SQS", f"DeleteMessageBatch ({consumer.queue})", deletes, "sqs.request", MODELLED, component
        ),
        *cost.invocation_lines(
            profile,
            invocations=invocations,
            records_per_invocation=records,
            component=component,
            origin=MODELLED,
            memory_mb=memory_mb,
            tracing_active=tracing_active,
            duration_ms=duration,
        ),
    ]


def current_writes_per_record(figures: Figures, records: float) -> float:
    """Current-status writes per callback when the writer sees batches of ``records`` arrivals."""
    arrivals = [scheduled.key for scheduled in figures.run.workload.callbacks]
    return current_status_writes(arrivals, max(1, round(records))) / len(arrivals)


def _status_table_lines(figures: Figures, current_per_record: float) -> list[UsageLine]:
    snapshot = figures.run.snapshot
    stored = max(1, len(snapshot.event_item_units))
    event_units = statistics.fmean(snapshot.event_item_units) if snapshot.event_item_units else 1.0
    index_units = sum(
        units
        for ((_, logical_id), part), units in snapshot.write_units.items()
        if logical_id == "StatusTable" and part != "table"
    )
    unit = "dynamodb.write_unit"
    return [
        UsageLine("DynamoDB", "event items", PER_MILLION * event_units, unit, MODELLED, "status"),
        UsageLine(
            "DynamoDB", "error index entries", PER_MILLION * index_units / stored, unit, MODELLED, "status"
        ),
        UsageLine(
            "DynamoDB", "current-status writes", PER_MILLION * current_per_record, unit, MODELLED, "status"
        ),
    ]


def status_component(
    figures: Figures,
    consumer: Consumer,
    records: float,
    *,
    direct: bool = False,
    tracing_active: bool | None = None,
) -> list[UsageLine]:
    """The status store per million callbacks: via its queue in batches, or a direct SNS→Lambda "
    "subscription."""
    current = current_writes_per_record(figures, 1 if direct else records)
    if not direct:
        enqueue = UsageLine(
            "SQS", "SNS delivery enqueued", PER_MILLION, "sqs.request", MODELLED, "status", sns_enqueue=True
        )
        lines = [enqueue, *consumer_lines(figures, consumer, records, tracing_active=tracing_active)]
        return lines + _status_table_lines(figures, current)
    lines = [
        UsageLine("SNS", "deliveries to Lambda", PER_MILLION, "sns.delivery.sqs_lambda", MODELLED, "status")
    ]
    lines += cost.invocation_lines(
        figures.profiles[consumer.function],
        invocations=PER_MILLION,
        records_per_invocation=1,
        component="status",
        origin=MODELLED,
        tracing_active=tracing_active,
    )
    return lines + _status_table_lines(figures, current)


def _record_bytes(figures: Figures) -> float:
    sizes = figures.run.snapshot.record_bytes
    return statistics.fmean(sizes) if sizes else 1024.0


def archive_component(
    figures: Figures, consumer: Consumer, records: float, *, rate: float, firehose: bool = False
) -> list[UsageLine]:
    """The S3 archive per million callbacks: SQS + batching Lambda, or an SNS→Firehose subscription."""
    if firehose:
        ingested = PER_MILLION * cost.firehose_billed_bytes(round(_record_bytes(figures))) / cost.BYTES_PER_GB
        flushes = PER_MILLION / max(rate, 1e-9) / FIREHOSE_BUFFER_SECONDS
        return [
            UsageLine(
                "SNS", "deliveries to Firehose", PER_MILLION, "sns.delivery.firehose", MODELLED, "archive"
            ),
            UsageLine(
                "Firehose", "ingestion (5 KB per record)", ingested, "firehose.ingest_gb", MODELLED, "archive"
            ),
            UsageLine("S3", "PutObject (one per buffer flush)", flushes, "s3.put", MODELLED, "archive"),
        ]
    enqueue = UsageLine(
        "SQS", "SNS delivery enqueued", PER_MILLION, "sqs.request", MODELLED, "archive", sns_enqueue=True
    )
    # One object per batch (two for a batch spanning UTC midnight).
    puts = UsageLine("S3", "PutObject (one per batch)", PER_MILLION / records, "s3.put", MODELLED, "archive")
    return [enqueue, *consumer_lines(figures, consumer, records), puts]


# --- removals on the counted usage ----------------------------------------------------------


def _with_fewer_log_bytes(
    lines: Sequence[UsageLine], saved: float, select: Callable[[UsageLine], bool]
) -> list[UsageLine]:
    """The usage with ``saved`` bytes per million fewer logs, taken from the selected log lines."""
    logs = [line for line in lines if line.price_key == "logs.ingest_gb" and select(line)]
    gigabytes = sum(line.quantity for line in logs)
    if gigabytes <= 0:
        return list(lines)
    factor = max(0.0, 1 - saved / cost.BYTES_PER_GB / gigabytes)
    return [cost.scaled(line, factor) if line in logs else line for line in lines]


def _traced_invocations(figures: Figures, lines: Sequence[UsageLine]) -> float:
    return sum(line.quantity for line in lines if line.price_key == "xray.trace")


def without_traces(figures: Figures, lines: Sequence[UsageLine]) -> list[UsageLine]:
    """Tracing PassThrough: no traces, and no XRAY segment on Lambda's REPORT lines."""
    suffix = len(cost.LAMBDA_REPORT_XRAY_SUFFIX.encode("utf-8"))
    saved = suffix * _traced_invocations(figures, lines)
    kept = [line for line in lines if line.price_key != "xray.trace"]
    return _with_fewer_log_bytes(kept, saved, lambda line: line.item != "API access logs")


def with_sampled_traces(lines: Sequence[UsageLine], fraction: float) -> list[UsageLine]:
    return [cost.scaled(line, fraction) if line.price_key == "xray.trace" else line for line in lines]


def lambda_sampled_fraction(invocations_per_second: float) -> float:
    """Share of a function's invocations Lambda's Active tracing records: 1 a second, 5% of the rest."""
    if invocations_per_second <= 1.0:
        return 1.0
    return (1.0 + XRAY_FIXED_RATE * (invocations_per_second - 1.0)) / invocations_per_second


def with_traces(figures: Figures, lines: Sequence[UsageLine], rate: float | None = None) -> list[UsageLine]:
    """Tracing Active on every function: a trace per sampled invocation, an XRAY segment per REPORT line.

    With ``rate`` (callbacks/s) each function's invocations are sampled as Lambda does at that
    rate; without it every invocation is a trace (true below one invocation a second).
    """
    suffix = len(cost.LAMBDA_REPORT_XRAY_SUFFIX.encode("utf-8"))
    changed = list(lines)
    for line in lines:
        if line.price_key != "lambda.request":
            continue
        name = line.item.removesuffix(" invocations")
        per_second = line.quantity * rate / PER_MILLION if rate else 0.0
        fraction = lambda_sampled_fraction(per_second) if rate else 1.0
        changed.append(
            UsageLine(
                "X-Ray",
                f"{name} traces (Tracing: Active)",
                line.quantity * fraction,
                "xray.trace",
                MODELLED,
                line.component,
            )
        )
        logs = [log for log in changed if log.item == f"{name} logs"]
        changed.append(
            UsageLine(
                "CloudWatch Logs",
                f"{name} logs (XRAY segment of REPORT)",
                line.quantity * suffix / cost.BYTES_PER_GB,
                "logs.ingest_gb",
                MODELLED,
                logs[0].component if logs else line.component,
            )
        )
    return changed


def info_log_bytes_per_million(figures: Figures) -> float:
    """What the handlers' INFO lines add, per million callbacks (their events' overhead included)."""
    info = sum(
        cost.log_bytes(*sample.log_kinds.get("INFO", (0, 0)))
        for samples in figures.run.snapshot.samples.values()
        for sample in samples
    )
    return cost.per_million(info, figures.callbacks)


def without_info_logs(figures: Figures, lines: Sequence[UsageLine]) -> list[UsageLine]:
    return _with_fewer_log_bytes(
        lines, info_log_bytes_per_million(figures), lambda line: line.item != "API access logs"
    )


def with_trimmed_access_log(figures: Figures, lines: Sequence[UsageLine]) -> list[UsageLine]:
    saved = (figures.access_log_bytes - len(TRIMMED_ACCESS_LOG.encode("utf-8"))) * PER_MILLION
    return _with_fewer_log_bytes(lines, max(0.0, saved), lambda line: line.item == "API access logs")


def without_current_status(figures: Figures, lines: Sequence[UsageLine]) -> list[UsageLine]:
    """No CURRENT item: the status table's write units less the counted current-status writes."""
    snapshot = figures.run.snapshot
    table_units = sum(
        units
        for ((_, logical_id), part), units in snapshot.write_units.items()
        if (logical_id, part) == ("StatusTable", "table")
    )
    factor = 1 - snapshot.current_writes / table_units if table_units else 1.0
    return [cost.scaled(line, factor) if line.item == "write units StatusTable" else line for line in lines]


# --- the options ------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _batching_options(figures: Figures, consumers: dict[str, Consumer], rate: float) -> list[Option]:
    found = []
    if "ArchiverFunction" in consumers:
        archive = consumers["ArchiverFunction"]
        local = statistics.fmean(
            sample.records for sample in figures.run.snapshot.samples["ArchiverFunction"]
        )
        aws = records_per_batch(archive, rate)
        found.append(
            _option(
                "batching",
                f"archive batches as the template sets them on AWS (BatchSize {archive.batch_size}, "
                f"{archive.window:g} s: {aws:.0f} records) instead of the local run's {local:.0f}",
                archive_component(figures, archive, local, rate=rate),
                archive_component(figures, archive, aws, rate=rate),
                latency=f"S3 lands up to {_seconds(min(archive.window, aws / rate))} after validation on AWS",
                note="not a change: local runs cap batching windows at 1 s",
            )
        )
    if "WriterFunction" in consumers:
        writer = consumers["WriterFunction"]
        now = records_per_batch(writer, rate)
        for size, window in ((100, 1.0), (1000, 1.0), (1000, 5.0), (1000, 20.0)):
            if (size, window) == (writer.batch_size, writer.window):
                continue
            after = records_per_batch(writer, rate, size, window)
            later = min(window, size / rate) - min(writer.window, now / rate)
            found.append(
                _option(
                    "batching",
                    "status writer "
                    + (f"BatchSize {writer.batch_size}→{size}, " if size != writer.batch_size else "")
                    + f"window {writer.window:g}→{window:g} s ({now:.0f}→{after:.0f} records per batch)",
                    status_component(figures, writer, now),
                    status_component(figures, writer, after),
                    latency=f"DynamoDB lands up to {_seconds(abs(later))} "
                    f"{'later' if later >= 0 else 'sooner'}",
                    note="most of it is the in-batch collapse of current-status writes (see "
                    "current_status_collapse)",
                )
            )
    if "RouterFunction" in consumers:
        router = consumers["RouterFunction"]
        now = records_per_batch(router, rate)
        window = 0.0 if router.window else ROUTER_WINDOW_SECONDS
        after = records_per_batch(router, rate, router.batch_size, window)
        found.append(
            _option(
                "batching",
                f"error router window {router.window:g}→{window:g} s "
                f"({now:.1f}→{after:.1f} records "
                f"per batch at this run's {router.share:.1%} error callbacks)",
                consumer_lines(figures, router, now),
                consumer_lines(figures, router, after),
                latency=f"error events, flags and alerts up to {abs(window - router.window):g} s "
                f"{'later' if window > router.window else 'sooner'}",
            )
        )
    return found


def _memory_options(figures: Figures, consumers: dict[str, Consumer], rate: float) -> list[Option]:
    found = []
    for name, memory in (("ValidatorFunction", 128), ("WriterFunction", 128), ("ArchiverFunction", 256)):
        if name not in consumers:
            continue
        consumer = consumers[name]
        records = records_per_batch(consumer, rate)
        profile = figures.profiles[name]
        found.append(
            _option(
                "memory",
                f"{name} {profile.memory_mb}→{memory} MB",
                consumer_lines(figures, consumer, records, memory_mb=profile.memory_mb),
                consumer_lines(figures, consumer, records, memory_mb=memory),
                latency=f"~{profile.lambda_duration_ms(records, memory):.0f} ms instead of "
                f"~{profile.lambda_duration_ms(records):.0f} ms per batch of {records:.0f} on Lambda",
                note=f"CPU is {profile.cpu_share:.0%} of the handler's local time; below 1,769 MB Lambda "
                "scales CPU "
                "with memory, so compute cost barely moves while latency grows",
            )
        )
    return found


def options(figures: Figures, rate: float) -> list[Option]:
    """Every option, priced at ``rate`` callbacks per second (the run's offered rate)."""
    base = figures.usage
    consumers = consumers_of(figures)
    found = _batching_options(figures, consumers, rate) + _memory_options(figures, consumers, rate)
    if any(line.price_key == "xray.trace" for line in base):
        found += [
            _option(
                "tracing",
                "Tracing: Active→PassThrough on every function",
                base,
                without_traces(figures, base),
                latency="none",
                note="HTTP APIs pass no trace header, so PassThrough records nothing; turn Active on while "
                "debugging",
            ),
            _option(
                "tracing",
                "Tracing: Active at high volume (Lambda samples 1 request/s + 5% of the rest)",
                base,
                with_sampled_traces(base, XRAY_FIXED_RATE),
                latency="none",
                note="the floor of Active's cost; the run prices every invocation as a trace "
                "(true below ~1/s)",
            ),
        ]
    else:
        found += [
            _option(
                "tracing",
                "Tracing: PassThrough→Active on every function, sampled as Lambda does at "
                f"{rate:g} callbacks/s",
                base,
                with_traces(figures, base, rate),
                latency="none",
                note="1 invocation a second per function and 5% of the rest are traces; busier traffic "
                "costs less per callback",
            ),
            _option(
                "tracing",
                "Tracing: PassThrough→Active, every invocation a trace (quiet traffic)",
                base,
                with_traces(figures, base),
                latency="none",
                note="the ceiling of Active's cost: below ~1 invocation a second per function Lambda "
                "traces them all",
            ),
        ]
    found.append(
        _option(
            "logs",
            "POWERTOOLS_LOG_LEVEL=WARNING: no INFO summary line per batch (EMF metrics stay)",
            base,
            without_info_logs(figures, base),
            latency="none",
            note="counts remain in the metrics; warnings and errors are still logged",
        )
    )
    if figures.access_log_bytes:
        trimmed = len(TRIMMED_ACCESS_LOG.encode("utf-8"))
        found.append(
            _option(
                "logs",
                "API access log trimmed to request id, IP, route, status "
                f"({figures.access_log_bytes}→{trimmed} B)",
                base,
                with_trimmed_access_log(figures, base),
                latency="none",
            )
        )
    if "WriterFunction" in consumers:
        writer = consumers["WriterFunction"]
        now = records_per_batch(writer, rate)
        stored = max(1, len(figures.run.snapshot.event_item_units))
        saved = 1 - figures.run.snapshot.current_writes / stored
        found += [
            _option(
                "dynamodb",
                "current status derived at read time from the SID's event items (no CURRENT item)",
                base,
                without_current_status(figures, base),
                latency="none for writes; a lookup becomes a Query of the SID's few event items "
                "(same 1 read unit)",
                note=f"the in-batch collapse saved {saved:.0%} of current-status writes at {now:.0f} records "
                "per batch",
            ),
            _option(
                "structure",
                "status store via a direct SNS→Lambda subscription instead of its SQS queue",
                status_component(figures, writer, now),
                status_component(figures, writer, now, direct=True),
                latency=f"DynamoDB up to {_seconds(min(writer.window, now / rate))} sooner "
                "(no batching window)",
                note="one invocation, its logs and its trace per callback; no in-batch collapse; retries are "
                "Lambda's async two, then an on-failure destination",
            ),
            _option(
                "structure",
                "status store via a direct SNS→Lambda subscription, all tracing PassThrough",
                status_component(figures, writer, now, tracing_active=False),
                status_component(figures, writer, now, direct=True, tracing_active=False),
                latency=f"DynamoDB up to {_seconds(min(writer.window, now / rate))} sooner",
            ),
        ]
    if "ArchiverFunction" in consumers:
        archive = consumers["ArchiverFunction"]
        aws = records_per_batch(archive, rate)
        found.append(
            _option(
                "structure",
                "archive via an SNS→Firehose subscription (GZIP, 900 s buffer) instead of SQS + archiver",
                archive_component(figures, archive, aws, rate=rate),
                archive_component(figures, archive, aws, rate=rate, firehose=True),
                latency="objects appear after the buffer interval (0-900 s, configurable)",
                note="SNS→Firehose delivery priced as an assumption (see firehose_break_even); partitions by "
                "arrival time unless dynamic partitioning (extra cost); no create-only object keys",
            )
        )
    return found


def firehose_break_even(figures: Figures, rate: float) -> dict[str, object]:
    """The SNS→Firehose delivery price below which Firehose is the cheaper archive."""
    consumers = consumers_of(figures)
    if "ArchiverFunction" not in consumers:
        return {}
    archive = consumers["ArchiverFunction"]
    records = records_per_batch(archive, rate)
    result: dict[str, object] = {
        "record_bytes_mean": round(_record_bytes(figures)),
        "assumed_delivery_usd_per_million": 0.40,
    }
    for billed, label in ((True, "enqueue_billed"), (False, "enqueue_free")):
        queue_path = total(archive_component(figures, archive, records, rate=rate), billed)
        firehose = cost.price(
            archive_component(figures, archive, records, rate=rate, firehose=True),
            Assumptions(sns_to_sqs_enqueue_billed=billed, sns_to_firehose_delivery_usd=0.0),
        ).total
        result[f"sqs_archive_usd_per_million_{label}"] = round(queue_path, 4)
        result["firehose_without_delivery_usd_per_million"] = round(firehose, 4)
        result[f"break_even_delivery_usd_per_million_{label}"] = round(queue_path - firehose, 4)
    return result


def recommended(figures: Figures, rate: float) -> tuple[list[dict[str, object]], list[UsageLine]]:
    """Worthwhile changes the run's settings leave, applied one after another; the running totals.

    Only changes that keep every contract: deriving the current status at read time (no
    CURRENT item) is priced among the options, not applied here.
    """
    consumers = consumers_of(figures)
    steps: list[dict[str, object]] = []
    lines = list(figures.usage)

    def step(name: str, changed: list[UsageLine], latency: str) -> None:
        nonlocal lines
        lines = changed
        steps.append(
            {
                "step": name,
                "cost_per_million_usd": round(total(lines, False), 3),
                "cost_per_million_usd_enqueue_billed": round(total(lines, True), 3),
                "latency": latency,
            }
        )

    step("as measured", lines, "-")
    if "ArchiverFunction" in consumers:
        archive = consumers["ArchiverFunction"]
        local = statistics.fmean(
            sample.records for sample in figures.run.snapshot.samples["ArchiverFunction"]
        )
        aws = records_per_batch(archive, rate)
        if aws > local * 1.05:
            before = archive_component(figures, archive, local, rate=rate)
            after = archive_component(figures, archive, aws, rate=rate)
            step(
                f"archive batches as on AWS (no change: the template's {archive.window:g} s window)",
                adjusted(lines, before, after),
                f"S3 up to {_seconds(min(archive.window, aws / rate))}",
            )
    if any(line.price_key == "xray.trace" for line in lines):
        step("Tracing: PassThrough on every function", without_traces(figures, lines), "none")
    if "RouterFunction" in consumers and consumers["RouterFunction"].window < ROUTER_WINDOW_SECONDS:
        router = consumers["RouterFunction"]
        now = records_per_batch(router, rate)
        after_records = records_per_batch(router, rate, router.batch_size, ROUTER_WINDOW_SECONDS)
        before = consumer_lines(figures, router, now, tracing_active=False)
        after = consumer_lines(figures, router, after_records, tracing_active=False)
        step(
            f"error router MaximumBatchingWindowInSeconds {ROUTER_WINDOW_SECONDS:g}",
            adjusted(lines, before, after),
            f"errors up to {ROUTER_WINDOW_SECONDS:g} s later",
        )
    step("POWERTOOLS_LOG_LEVEL=WARNING", without_info_logs(figures, lines), "none")
    if figures.access_log_bytes > len(TRIMMED_ACCESS_LOG.encode("utf-8")) * 1.2:
        step("API access log trimmed", with_trimmed_access_log(figures, lines), "none")
    return steps, lines


def collapse_table(
    figures: Figures, rate: float, windows: Sequence[float] = (1, 5, 20, 60)
) -> list[dict[str, object]]:
    """Current-status writes per callback the in-batch collapse leaves, by writer window, at ``rate``."""
    consumers = consumers_of(figures)
    if "WriterFunction" not in consumers:
        return []
    writer = consumers["WriterFunction"]
    price = cost.PRICES["dynamodb.write_unit"].usd * PER_MILLION
    rows: list[dict[str, object]] = []
    for window in windows:
        for size in sorted({writer.batch_size, 1000}):
            records = records_per_batch(writer, rate, size, window)
            writes = current_writes_per_record(figures, records)
            rows.append(
                {
                    "window_seconds": window,
                    "batch_size": size,
                    "records_per_batch": round(records),
                    "current_writes_per_callback": round(writes, 3),
                    "saved_by_collapse": round(1 - writes, 3),
                    "usd_per_million": round(writes * price, 4),
                }
            )
    return rows


def quiet_traffic(
    figures: Figures,
    busy_rate: float,
    quiet_rate: float = QUIET_RATE,
    *,
    lines: Sequence[UsageLine] | None = None,
    tracing_active: bool | None = None,
) -> dict[str, object]:
    """The same design at a quiet ``quiet_rate``: batches shrink towards one record each.

    Priced as the model at the quiet rate minus the model at the run's rate,
    added to the measured total: more receives, deletes, invocations, traces,
    log lines and PublishBatch calls per callback.
    """
    before: list[UsageLine] = []
    after: list[UsageLine] = []
    for consumer in consumers_of(figures).values():
        busy = records_per_batch(consumer, busy_rate)
        before += consumer_lines(figures, consumer, busy, tracing_active=tracing_active)
        quiet_batch = records_per_batch(consumer, quiet_rate)
        after += consumer_lines(figures, consumer, quiet_batch, tracing_active=tracing_active, quiet=True)
        if consumer.function == "ValidatorFunction":
            for rate, side in ((busy_rate, before), (quiet_rate, after)):
                publishes = PER_MILLION / records_per_batch(consumer, rate)
                side.append(UsageLine("SNS", "PublishBatch", publishes, "sns.publish", MODELLED, "ingest"))
    quiet = adjusted(figures.usage if lines is None else lines, before, after)
    return {
        "rate_callbacks_per_second": quiet_rate,
        "callbacks_per_month": round(quiet_rate * cost.SECONDS_PER_MONTH),
        "cost_per_million_usd": round(total(quiet, False), 3),
        "cost_per_million_usd_enqueue_billed": round(total(quiet, True), 3),
        "note": "below a few callbacks per second batches hold one or two records: each message costs "
        "its own receive, delete, invocation, trace and log lines on every consumer, and the "
        "validator one PublishBatch per callback",
    }
