"""A run's measurements turned into the benchmark's figures and its cost per million callbacks.

Everything here is arithmetic on a `BenchRun`: requests per 1,000 callbacks,
latencies, per-function profiles, the usage lines of our design (priced by
`cost`), the original design's figure from the same run, and the fixed
monthly costs. `tuning` builds its alternatives on the same numbers.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_emulator.http_gateway import render_access_log
from pipeline_bench import cost
from pipeline_bench.cost import (
    COUNTED,
    ENQUEUE_BILLED,
    HEADLINE,
    MEASURED,
    MODELLED,
    PER_MILLION,
    AnchorInputs,
    Assumptions,
    FunctionProfile,
    UsageLine,
)
from pipeline_bench.measure import InvocationSample, percentile
from pipeline_bench.run import SINKS, BenchRun
from pipeline_bench.stacks import ACCESS_LOG_CONTEXT, ACTIVE

# Short names for the stacks in breakdowns.
COMPONENTS: Mapping[str, str] = {
    "StatusCallbackHandler": "ingest",
    "SaveStatusCallbackToS3": "archive",
    "SaveStatusCallbackToDynamo": "status",
    "CheckForStatusCallbackErrors": "errors",
}
_SQS_PRICED = {"sqs": "sqs.request", "secretsmanager": "secretsmanager.api", "kms": "kms.request"}
SERVICE_NAMES: Mapping[str, str] = {
    "sqs": "SQS",
    "sns": "SNS",
    "s3": "S3",
    "events": "EventBridge",
    "secretsmanager": "Secrets Manager",
    "kms": "KMS",
    "dynamodb": "DynamoDB",
}
_S3_GETS = {"GetObject", "HeadObject"}


def component_of(stack: str) -> str:
    return COMPONENTS.get(stack, stack or "shared")


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _spread(values: list[float]) -> dict[str, float | int | None]:
    return {
        "p50": _rounded(percentile(values, 50)),
        "p99": _rounded(percentile(values, 99)),
        "n": len(values),
    }


@dataclass(frozen=True)
class Figures:
    """The computed results of one run."""

    run: BenchRun
    profiles: dict[str, FunctionProfile]
    usage: list[UsageLine]
    anchor: list[UsageLine]
    fixed: cost.FixedCosts
    access_log_bytes: int

    @property
    def callbacks(self) -> int:
        return len(self.run.workload)

    def per_1000(self, count: float) -> float:
        return round(count * 1000 / self.callbacks, 3)

    def priced(self, assumptions: Assumptions = HEADLINE) -> cost.CostBreakdown:
        return cost.price(self.usage, assumptions)

    def anchor_priced(self, assumptions: Assumptions = HEADLINE) -> cost.CostBreakdown:
        return cost.price(self.anchor, assumptions)


# --- profiles ---------------------------------------------------------------------------------


def function_profile(
    name: str, memory_mb: int, tracing_active: bool, samples: list[InvocationSample]
) -> FunctionProfile:
    """Fit duration and log output against records per invocation."""
    good = [sample for sample in samples if not sample.failed] or samples
    duration = cost.fit_line([(sample.records, sample.duration_ms) for sample in good])
    log_bytes = cost.fit_line([(sample.records, sample.log_bytes) for sample in good])
    log_events = cost.fit_line([(sample.records, sample.log_events) for sample in good])
    total_ms = sum(sample.duration_ms for sample in good)
    cpu_share = min(1.0, sum(sample.cpu_ms for sample in good) / total_ms) if total_ms else 0.0
    return FunctionProfile(
        name=name,
        memory_mb=memory_mb,
        tracing_active=tracing_active,
        duration_fixed_ms=duration[0],
        duration_per_record_ms=duration[1],
        cpu_share=cpu_share,
        log_bytes_fixed=log_bytes[0],
        log_bytes_per_record=log_bytes[1],
        log_events_fixed=log_events[0],
        log_events_per_record=log_events[1],
    )


def _tracing_active(run: BenchRun, logical_id: str) -> bool:
    return run.functions[logical_id].tracing == ACTIVE


def profiles_of(run: BenchRun) -> dict[str, FunctionProfile]:
    return {
        name: function_profile(
            name,
            function.memory_size,
            _tracing_active(run, name),
            run.snapshot.samples.get(name, []),
        )
        for name, function in run.functions.items()
        if run.snapshot.samples.get(name)
    }


# --- our design's usage, from the counts ----------------------------------------------------


def _request_lines(run: BenchRun) -> list[UsageLine]:
    callbacks = len(run.workload)
    lines = []
    for (service, operation, (stack, logical_id)), units in sorted(run.snapshot.units.items()):
        if service == "dynamodb":
            continue  # billed by request units, below
        if service == "sns":
            price_key = "sns.publish" if operation.startswith("Publish") else "free"
        elif service == "s3":
            price_key = "s3.get" if operation in _S3_GETS else "s3.put"
        elif service == "events":
            price_key = "eventbridge.custom_event" if operation == "PutEvents" else "free"
        else:
            price_key = _SQS_PRICED.get(service, "free")
        lines.append(
            UsageLine(
                SERVICE_NAMES.get(service, service),
                f"{operation} ({logical_id})",
                cost.per_million(units, callbacks),
                price_key,
                COUNTED,
                component_of(stack),
            )
        )
    return lines


def _delivery_lines(run: BenchRun) -> list[UsageLine]:
    callbacks = len(run.workload)
    return [
        UsageLine(
            "SQS",
            f"SNS delivery enqueued ({logical_id})",
            cost.per_million(count, callbacks),
            "sqs.request",
            MODELLED,
            component_of(stack),
            sns_enqueue=True,
        )
        for (stack, logical_id), count in sorted(run.snapshot.deliveries.items())
    ]


def _dynamodb_lines(run: BenchRun) -> list[UsageLine]:
    callbacks = len(run.workload)
    lines = [
        UsageLine(
            "DynamoDB",
            f"write units {logical_id}" + ("" if part == "table" else f" index {part}"),
            cost.per_million(units, callbacks),
            "dynamodb.write_unit",
            MEASURED,
            component_of(stack),
        )
        for ((stack, logical_id), part), units in sorted(run.snapshot.write_units.items())
    ]
    lines += [
        UsageLine(
            "DynamoDB",
            f"read units {logical_id}",
            cost.per_million(units, callbacks),
            "dynamodb.read_unit",
            MEASURED,
            component_of(stack),
        )
        for (stack, logical_id), units in sorted(run.snapshot.read_units.items())
    ]
    return lines


def _lambda_lines(run: BenchRun, assumptions: Assumptions) -> list[UsageLine]:
    callbacks = len(run.workload)
    lines = []
    for name, samples in sorted(run.snapshot.samples.items()):
        function = run.functions[name]
        component = component_of(function.stack)
        tracing = _tracing_active(run, name)
        platform_bytes, platform_events = cost.platform_log_lines(tracing)
        own_bytes = sum(sample.log_bytes for sample in samples)
        own_events = sum(sample.log_events for sample in samples)
        ingested = cost.log_bytes(
            own_bytes + platform_bytes * len(samples), own_events + platform_events * len(samples)
        )
        gb_seconds = sum(
            cost.billed_gb_seconds(sample.duration_ms, function.memory_size) for sample in samples
        )
        lines += [
            UsageLine(
                "Lambda",
                f"{name} invocations",
                cost.per_million(len(samples), callbacks),
                "lambda.request",
                COUNTED,
                component,
            ),
            UsageLine(
                "Lambda",
                f"{name} compute ({function.memory_size} MB)",
                cost.per_million(gb_seconds, callbacks),
                "lambda.arm64.gb_second",
                MEASURED,
                component,
            ),
            UsageLine(
                "CloudWatch Logs",
                f"{name} logs",
                cost.per_million(ingested, callbacks) / cost.BYTES_PER_GB,
                "logs.ingest_gb",
                MEASURED,
                component,
            ),
        ]
        if tracing:
            lines.append(
                UsageLine(
                    "X-Ray",
                    f"{name} traces (Tracing: Active)",
                    cost.per_million(len(samples), callbacks) * assumptions.xray_sampled_fraction,
                    "xray.trace",
                    MODELLED,
                    component,
                )
            )
    return lines


def access_log_line_bytes(run: BenchRun) -> int:
    for facts in run.facts.values():
        if facts.access_log_format:
            return len(render_access_log(facts.access_log_format, ACCESS_LOG_CONTEXT).encode("utf-8"))
    return 0


def usage_of(run: BenchRun, assumptions: Assumptions = HEADLINE) -> list[UsageLine]:
    """Our design's usage per million callbacks, from what the run counted and measured."""
    callbacks = len(run.workload)
    requests = sum(1 for item in run.sent if item.status is not None)
    access = access_log_line_bytes(run)
    lines = [
        UsageLine(
            "API Gateway",
            "HTTP API requests",
            cost.per_million(requests, callbacks),
            "apigateway.http_request",
            COUNTED,
            "ingest",
        ),
    ]
    if access:
        lines.append(
            UsageLine(
                "CloudWatch Logs",
                "API access logs",
                cost.per_million(cost.log_bytes(access * requests, requests), callbacks) / cost.BYTES_PER_GB,
                "logs.ingest_gb",
                MODELLED,
                "ingest",
            )
        )
    lines += (
        _request_lines(run) + _delivery_lines(run) + _dynamodb_lines(run) + _lambda_lines(run, assumptions)
    )
    if run.snapshot.events_bytes:
        lines.append(
            UsageLine(
                "EventBridge",
                "error events archived",
                cost.per_million(run.snapshot.events_bytes, callbacks) / cost.BYTES_PER_GB,
                "eventbridge.archive_gb",
                MEASURED,
                "errors",
            )
        )
    return lines


# --- the original design, from the same run -------------------------------------------------


def anchor_inputs(run: BenchRun, profiles: Mapping[str, FunctionProfile]) -> AnchorInputs:
    units = run.snapshot.event_item_units
    consumers = [
        profiles[name]
        for name in ("ArchiverFunction", "WriterFunction", "RouterFunction")
        if name in profiles
    ]
    lightest = min(consumers, key=lambda profile: profile.duration_ms(1))
    return AnchorInputs(
        error_fraction=len(run.workload.error_keys()) / len(run.workload),
        record_write_units=statistics.fmean(units) if units else 1.0,
        validator=profiles["ValidatorFunction"],
        archive_writer=profiles.get("ArchiverFunction", lightest),
        store_writer=profiles.get("WriterFunction", lightest),
        # Its error checker saw every callback and only looked at ErrorCode: our lightest handler.
        error_checker=lightest,
    )


def fixed_costs_of(run: BenchRun) -> cost.FixedCosts:
    facts = run.facts.values()
    return cost.fixed_costs(
        event_source_queues=len(run.event_sources),
        # The callback topic has one publisher (the validator); the alerts topic two (rules, alarms).
        encrypted_topic_publishers=[1] * max(0, sum(f.encrypted_topics for f in facts) - 1) + [2],
        secrets=1,
        alarms=sum(f.alarms for f in facts),
        keys=sum(f.kms_keys for f in facts),
    )


def compute(run: BenchRun, assumptions: Assumptions = HEADLINE) -> Figures:
    profiles = profiles_of(run)
    return Figures(
        run=run,
        profiles=profiles,
        usage=usage_of(run, assumptions),
        anchor=cost.anchor_usage(anchor_inputs(run, profiles)),
        fixed=fixed_costs_of(run),
        access_log_bytes=access_log_line_bytes(run),
    )


# --- the figures ------------------------------------------------------------------------------


def latency_figures(run: BenchRun) -> dict[str, Any]:
    first_sent: dict[tuple[str, str], float] = {}
    for item in run.sent:
        first_sent[item.key] = min(first_sent.get(item.key, item.sent_at), item.sent_at)
    ingest = [item.latency * 1000 for item in run.sent if item.status == 200]
    land: dict[str, Any] = {}
    for sink in SINKS:
        landed = run.snapshot.landed.get(sink, {})
        land[sink] = _spread(
            [(at - first_sent[key]) * 1000 for key, at in landed.items() if key in first_sent]
        )
    return {"ingest_latency_ms": _spread(ingest), "land_latency_ms": land}


def throughput(run: BenchRun) -> dict[str, Any]:
    landed = [at for sink in ("s3", "dynamodb") for at in run.snapshot.landed.get(sink, {}).values()]
    done = max(landed, default=run.last_send)
    window = max(done - run.first_send, 1e-9)
    send_window = max(run.last_send - run.first_send, 1e-9)
    return {
        "callbacks_per_second": round(len(run.workload) / window, 1),
        "send_rate_per_second": round(len(run.sent) / send_window, 1),
        "seconds_first_send_to_all_landed": round(window, 1),
    }


def requests_per_1000(figures: Figures) -> dict[str, dict[str, float]]:
    """AWS requests the workload made, per 1,000 callbacks (empty receives, plumbing and checks excluded)."""
    calls: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    answered = sum(1 for item in figures.run.sent if item.status is not None)
    calls["apigateway"]["HTTP API request"] = answered
    for (service, operation, _), count in figures.run.snapshot.calls.items():
        calls[service][operation] += count
    for name, samples in figures.run.snapshot.samples.items():
        calls["lambda"][f"Invoke {name}"] += len(samples)
    return {
        service: {operation: figures.per_1000(count) for operation, count in sorted(operations.items())}
        for service, operations in sorted(calls.items())
    }


def requests_by_resource(figures: Figures) -> dict[str, float]:
    return {
        f"{service} {operation} {logical_id}": figures.per_1000(count)
        for (service, operation, (_, logical_id)), count in sorted(figures.run.snapshot.calls.items())
    }


def lambda_figures(figures: Figures) -> dict[str, Any]:
    result = {}
    for name, samples in sorted(figures.run.snapshot.samples.items()):
        profile = figures.profiles[name]
        durations = [sample.duration_ms for sample in samples]
        kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for sample in samples:
            for kind, (count_bytes, count_events) in sample.log_kinds.items():
                kinds[kind][0] += count_bytes
                kinds[kind][1] += count_events
        batch = figures.run.event_sources.get(name)
        result[name] = {
            "invocations_per_1000": figures.per_1000(len(samples)),
            "records_per_invocation": round(statistics.fmean(sample.records for sample in samples), 2),
            "duration_ms": {
                "mean": round(statistics.fmean(durations), 1),
                "p50": _rounded(percentile(durations, 50)),
                "p99": _rounded(percentile(durations, 99)),
            },
            "duration_fit_ms": {
                "fixed": round(profile.duration_fixed_ms, 2),
                "per_record": round(profile.duration_per_record_ms, 3),
            },
            "cpu_share": round(profile.cpu_share, 2),
            "memory_mb": profile.memory_mb,
            "tracing": "Active" if profile.tracing_active else "PassThrough",
            "event_source": {"batch_size": batch[0], "window_seconds": batch[1]} if batch else None,
            "log_bytes_per_invocation": round(sum(s.log_bytes for s in samples) / len(samples), 1),
            "log_lines_per_invocation": {
                kind: round(events / len(samples), 2) for kind, (_, events) in sorted(kinds.items())
            },
            "log_bytes_by_kind_per_1000": {
                kind: figures.per_1000(count) for kind, (count, _) in sorted(kinds.items())
            },
            "failed_invocations": sum(1 for sample in samples if sample.failed),
        }
    return result


def dynamodb_figures(figures: Figures) -> dict[str, Any]:
    snapshot = figures.run.snapshot
    units: dict[str, dict[str, float]] = defaultdict(dict)
    for ((_, logical_id), part), count in sorted(snapshot.write_units.items()):
        units[logical_id][part] = figures.per_1000(count)
    stored = len(snapshot.event_item_units)
    return {
        "write_units_per_1000": dict(units),
        "read_units_per_1000": {
            logical_id: figures.per_1000(count)
            for (_, logical_id), count in sorted(snapshot.read_units.items())
        },
        "event_items_per_1000": figures.per_1000(stored),
        "event_item_bytes_mean": round(statistics.fmean(snapshot.event_item_bytes), 1) if stored else None,
        "event_item_write_units_mean": round(statistics.fmean(snapshot.event_item_units), 3)
        if stored
        else None,
        "current_status_writes_per_1000": figures.per_1000(snapshot.current_writes),
        "current_status_stale_per_1000": figures.per_1000(snapshot.current_stale),
        "current_writes_saved_by_collapse": round(1 - snapshot.current_writes / stored, 3)
        if stored
        else None,
    }


def log_figures(figures: Figures) -> dict[str, Any]:
    per_function = {}
    for name, samples in sorted(figures.run.snapshot.samples.items()):
        profile = figures.profiles[name]
        platform_bytes, platform_events = cost.platform_log_lines(profile.tracing_active)
        own = sum(sample.log_bytes for sample in samples)
        own_events = sum(sample.log_events for sample in samples)
        per_function[name] = {
            "handler_bytes_per_1000": figures.per_1000(own),
            "lambda_platform_bytes_per_1000": figures.per_1000(platform_bytes * len(samples)),
            "events_per_1000": figures.per_1000(own_events + platform_events * len(samples)),
        }
    return {
        "per_function": per_function,
        "api_access_log_bytes_per_request": figures.access_log_bytes,
        "event_overhead_bytes": cost.LOG_EVENT_OVERHEAD_BYTES,
    }


def batching_wait_on_aws(figures: Figures, rate: float) -> dict[str, Any]:
    """How long a record waits for its batch on AWS at ``rate`` callbacks/s, from the template settings."""
    shares = {"ValidatorFunction": 1.0, "ArchiverFunction": 1.0, "WriterFunction": 1.0}
    errors = len(figures.run.workload.error_keys()) / len(figures.run.workload)
    shares["RouterFunction"] = errors
    waits = {}
    for name, (batch_size, window) in sorted(figures.run.event_sources.items()):
        arrival = rate * shares.get(name, 1.0)
        fill = batch_size / arrival if arrival else float("inf")
        waits[name] = {
            "batch_size": batch_size,
            "window_seconds": window,
            "wait_seconds_upper_bound": round(min(window, fill), 2),
            "records_per_batch": round(min(batch_size, max(1.0, arrival * window)), 1),
        }
    validator = waits.get("ValidatorFunction", {}).get("wait_seconds_upper_bound", 0.0)
    return {
        "rate_callbacks_per_second": rate,
        "consumers": waits,
        "sink_wait_seconds_upper_bound": {
            "s3": round(
                validator + waits.get("ArchiverFunction", {}).get("wait_seconds_upper_bound", 0.0), 2
            ),
            "dynamodb": round(
                validator + waits.get("WriterFunction", {}).get("wait_seconds_upper_bound", 0.0), 2
            ),
            "error_bus": round(
                validator + waits.get("RouterFunction", {}).get("wait_seconds_upper_bound", 0.0), 2
            ),
        },
    }


def prices_table() -> list[dict[str, Any]]:
    return [
        {
            "key": key,
            "usd_per_unit": price.usd,
            "unit": price.unit,
            "source": price.source,
            "note": price.note,
        }
        for key, price in cost.PRICES.items()
        if key != "free"
    ]


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "executable": sys.executable,
        "notes": [
            "Durations are wall-clock handler times in the local runner (one process, handlers serialised, "
            "AWS emulated by moto on loopback), on this machine's CPU, not arm64 Lambda's: a Lambda below "
            "1,769 MB gets a fraction of a vCPU, so CPU-bound work runs longer there (see "
            "lambda_compute_usd_per_million) while waits on AWS calls differ from moto's.",
            "Local batching windows are capped at the runner's max_batching_window (1 s by default), "
            "so local batches are smaller than AWS's for windows above that; the model shows AWS's.",
            "Tracing is off locally (no X-Ray daemon); X-Ray is modelled from the templates' Tracing.",
        ],
    }


def cpu_scaled_compute_usd(figures: Figures) -> float:
    """Lambda compute per million with each invocation's CPU part stretched as below a full vCPU."""
    gb_seconds = 0.0
    for name, samples in figures.run.snapshot.samples.items():
        profile = figures.profiles[name]
        stretch = max(1.0, cost.FULL_VCPU_MEMORY_MB / profile.memory_mb)
        for sample in samples:
            duration = sample.duration_ms * (1 - profile.cpu_share + profile.cpu_share * stretch)
            gb_seconds += cost.billed_gb_seconds(duration, profile.memory_mb)
    return cost.per_million(gb_seconds, figures.callbacks) * cost.PRICES["lambda.arm64.gb_second"].usd


def per_million_summary(figures: Figures) -> dict[str, Any]:
    headline = figures.priced(HEADLINE)
    billed = figures.priced(ENQUEUE_BILLED)
    anchor = figures.anchor_priced()
    cpu_scaled = cpu_scaled_compute_usd(figures)
    measured_compute = sum(
        line.usd for line in headline.lines if line.usage.price_key == "lambda.arm64.gb_second"
    )
    return {
        "cost_per_million_usd": round(headline.total, 3),
        "cost_per_million_usd_sns_sqs_enqueue_billed": round(billed.total, 3),
        "anchor_cost_per_million_usd": round(anchor.total, 3),
        "anchor_over_ours": round(anchor.total / headline.total, 2) if headline.total else None,
        "anchor_over_ours_sns_sqs_enqueue_billed": round(anchor.total / billed.total, 2)
        if billed.total
        else None,
        "lambda_compute_measured_usd": round(measured_compute, 4),
        "lambda_compute_cpu_scaled_usd": round(cpu_scaled, 4),
        "per_million_basis": PER_MILLION,
    }
