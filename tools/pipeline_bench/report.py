"""The benchmark's results: one JSON document (``bench-results.json``) and the same as tables."""

from __future__ import annotations

from typing import Any

from pipeline_bench import results, tuning
from pipeline_bench.cost import ENQUEUE_BILLED, HEADLINE, Assumptions
from pipeline_bench.results import Figures
from twilio_callbacks_cli.output import key_values, table

SCHEMA_VERSION = 1


def document(figures: Figures) -> dict[str, Any]:
    """Everything the run found, JSON-ready; the first keys are the headline figures."""
    run = figures.run
    latency = results.latency_figures(run)
    speed = results.throughput(run)
    summary = results.per_million_summary(figures)
    rate = run.options.rate
    steps, tuned = tuning.recommended(figures, rate)
    return {
        "schema_version": SCHEMA_VERSION,
        "callbacks": figures.callbacks,
        "callbacks_per_second": speed["callbacks_per_second"],
        "ingest_latency_ms": latency["ingest_latency_ms"],
        "land_latency_ms": latency["land_latency_ms"],
        "requests_per_1000": results.requests_per_1000(figures),
        "lambda_invocations_per_1000": {
            name: figures.per_1000(len(samples)) for name, samples in sorted(run.snapshot.samples.items())
        },
        "validator_us_per_record": round(run.validator.us_per_record, 1),
        "cold_import_ms": run.cold_import_ms,
        "cost_per_million_usd": summary["cost_per_million_usd"],
        "cost_per_million_usd_sns_sqs_enqueue_billed": summary["cost_per_million_usd_sns_sqs_enqueue_billed"],
        "anchor_cost_per_million_usd": summary["anchor_cost_per_million_usd"],
        "anchor_over_ours": summary["anchor_over_ours"],
        "anchor_over_ours_sns_sqs_enqueue_billed": summary["anchor_over_ours_sns_sqs_enqueue_billed"],
        "target": {"cost_per_million_usd_max": 3.00, "anchor_over_ours_min": 3.0},
        "lambda_compute_usd_per_million": {
            "measured": summary["lambda_compute_measured_usd"],
            "cpu_scaled_for_lambda": summary["lambda_compute_cpu_scaled_usd"],
        },
        "cost_breakdown": figures.priced(HEADLINE).to_dict(),
        "cost_breakdown_sns_sqs_enqueue_billed": {
            "total_usd": round(figures.priced(ENQUEUE_BILLED).total, 4)
        },
        "anchor_breakdown": figures.anchor_priced().to_dict(),
        "fixed_monthly": figures.fixed.to_dict(),
        "assumptions": {
            **Assumptions().describe(),
            "sns_to_sqs_enqueue": "SNS charges nothing to deliver to SQS and SQS bills the requests its "
            "users make, so cost_per_million_usd prices an SNS→SQS delivery at $0, as the issue's price "
            "table does (its $2 floor has no line for it); "
            "cost_per_million_usd_sns_sqs_enqueue_billed prices "
            "each delivery as one more SQS request ($0.40/M, deliveries counted per subscribed queue "
            "from what the pollers received), in case a bill says otherwise",
            "dynamodb": "write units from each written item's size (1 per started KB), index entries for "
            "items "
            "carrying the index keys (+100 bytes), 1 unit per failed conditional write",
            "logs": "handler stdout captured per function, plus Lambda's START/END/REPORT lines per "
            "invocation and one API access log line per request, +26 bytes per event, decimal GB",
            "xray": "the templates' Tracing parameter decides; with Active, every invocation is a trace "
            "(conservative above ~1 invocation/s per function, where Lambda samples 1/s + 5%); the "
            "tuning options price turning it on",
            "anchor": "original design: API → SQS → validator (batches of 3) → SNS Publish per record → "
            "three "
            "direct SNS→Lambda subscriptions → S3 PUT per callback, DynamoDB item + ALL-projection index "
            "entry, EventBridge event per error; 128 MB functions with our measured per-record durations; "
            "Lambda's own log lines only; no tracing, no access logs (every unknown in its favour)",
        },
        "prices": results.prices_table(),
        "throughput": speed,
        "lambda": results.lambda_figures(figures),
        "dynamodb": results.dynamodb_figures(figures),
        "logs": results.log_figures(figures),
        "sns_to_sqs_deliveries_per_1000": {
            logical_id: figures.per_1000(count)
            for (_, logical_id), count in sorted(run.snapshot.deliveries.items())
        },
        "requests_per_1000_by_resource": results.requests_by_resource(figures),
        "empty_receives": {
            "local_count": sum(run.snapshot.empty_receives.values()),
            "local_per_second": round(
                sum(run.snapshot.empty_receives.values()) / max(run.last_send - run.first_send, 1e-9), 1
            ),
            "by_queue": {
                logical_id: count for (_, logical_id), count in sorted(run.snapshot.empty_receives.items())
            },
            "note": "local pollers poll far more often than Lambda's long-polling event sources; on AWS "
            "empty "
            "receives are a fixed monthly cost (fixed_monthly), not a cost per callback",
        },
        "excluded_requests": {
            "runner_plumbing": {
                f"{service} {operation}": count
                for (service, operation), count in sorted(run.snapshot.plumbing.items())
            },
            "note": "the runner's internal queues stand in for SNS→Lambda and EventBridge→Lambda/SNS "
            "delivery, which AWS does itself; provisioning and the benchmark's own checks are not counted",
        },
        "raw_traffic": run.traffic_totals,
        "batching_on_aws": results.batching_wait_on_aws(figures, rate),
        "tuning": {
            "rate_callbacks_per_second": rate,
            "options": [option.to_dict() for option in tuning.options(figures, rate)],
            "recommended": steps,
            "current_status_collapse": tuning.collapse_table(figures, rate),
            "firehose_break_even": tuning.firehose_break_even(figures, rate),
            "quiet_traffic": {
                "as_measured": tuning.quiet_traffic(figures, rate),
                "recommended": tuning.quiet_traffic(figures, rate, lines=tuned, tracing_active=False),
            },
        },
        "workload": run.workload.describe(),
        "verification": run.verification,
        "run": {
            "pipeline_start_seconds": round(run.pipeline_start_seconds, 1),
            "wall_seconds": round(run.wall_seconds, 1),
            "validator": {
                "records_timed": run.validator.records,
                "valid": run.validator.valid,
                "candidate_urls_per_record": round(run.validator.candidate_urls_per_record, 2),
                "urls_tried_per_valid_record": round(run.validator.urls_tried_per_valid_record, 2),
            },
            "options": {
                "callbacks": run.options.callbacks,
                "rate": run.options.rate,
                "seed": run.options.seed,
                "error_rate": run.options.error_rate,
                "parameter_overrides": dict(run.options.parameter_overrides),
                "max_batching_window": run.options.max_batching_window,
            },
            "complete": run.verification.get("complete"),
        },
        "environment": results.environment(),
    }


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.3f}"


def render(doc: dict[str, Any]) -> str:
    """The document as tables for a terminal."""
    land = doc["land_latency_ms"]
    lines = [
        "Twilio status callbacks: benchmark of the local pipeline",
        "",
        key_values(
            [
                (
                    "callbacks",
                    f"{doc['callbacks']} (seed {doc['workload']['seed']}, "
                    f"{doc['workload']['error_callbacks']} with an ErrorCode, "
                    f"{doc['workload']['retries']} Twilio retries)",
                ),
                (
                    "throughput",
                    f"{doc['callbacks_per_second']} callbacks/s end to end "
                    f"(offered {doc['workload']['offered_rate_per_second']}/s)",
                ),
                (
                    "ingest latency",
                    f"p50 {doc['ingest_latency_ms']['p50']} ms, p99 {doc['ingest_latency_ms']['p99']} ms "
                    "(HTTP → 200)",
                ),
                (
                    "validator CPU",
                    f"{doc['validator_us_per_record']} µs per record (signature + record JSON)",
                ),
                (
                    "cost per million",
                    f"{_money(doc['cost_per_million_usd'])} (target $3.00), "
                    f"{_money(doc['cost_per_million_usd_sns_sqs_enqueue_billed'])} "
                    "if SNS→SQS enqueues were billed",
                ),
                (
                    "original design",
                    f"{_money(doc['anchor_cost_per_million_usd'])} per million: "
                    f"{doc['anchor_over_ours']}x ours (target 3x; "
                    f"{doc['anchor_over_ours_sns_sqs_enqueue_billed']}x with enqueues billed)",
                ),
                ("complete", doc["run"]["complete"]),
            ]
        ),
        "",
        table(
            ["sink", "p50 ms", "p99 ms", "callbacks"],
            [[sink, values["p50"], values["p99"], values["n"]] for sink, values in land.items()],
        ),
        "",
        table(
            ["service", "operation", "per 1000 callbacks"],
            [
                [service, operation, count]
                for service, operations in doc["requests_per_1000"].items()
                for operation, count in operations.items()
            ],
        ),
        "",
        table(
            [
                "function",
                "inv/1000",
                "records/inv",
                "mean ms",
                "MB",
                "tracing",
                "cold import ms",
                "log B/inv",
            ],
            [
                [
                    name,
                    values["invocations_per_1000"],
                    values["records_per_invocation"],
                    values["duration_ms"]["mean"],
                    values["memory_mb"],
                    values["tracing"],
                    doc["cold_import_ms"].get(name),
                    values["log_bytes_per_invocation"],
                ]
                for name, values in doc["lambda"].items()
            ],
        ),
        "",
        table(
            ["service", "our $/M", "original $/M"],
            [
                [service, f"{usd:.4f}", f"{doc['anchor_breakdown']['by_service_usd'].get(service, 0.0):.4f}"]
                for service, usd in doc["cost_breakdown"]["by_service_usd"].items()
            ]
            + [
                [service, "0.0000", f"{usd:.4f}"]
                for service, usd in doc["anchor_breakdown"]["by_service_usd"].items()
                if service not in doc["cost_breakdown"]["by_service_usd"]
            ],
        ),
        "",
        table(
            ["area", "change", "Δ$/M", "Δ$/M enqueue billed", "latency"],
            [
                [
                    option["area"],
                    option["change"],
                    f"{option['delta_usd_per_million']:+.4f}",
                    f"{option['delta_usd_per_million_enqueue_billed']:+.4f}",
                    option["latency"],
                ]
                for option in doc["tuning"]["options"]
            ],
        ),
        "",
        table(
            ["further steps, one after another", "$/M", "$/M enqueue billed", "latency"],
            [
                [
                    step["step"],
                    step["cost_per_million_usd"],
                    step["cost_per_million_usd_enqueue_billed"],
                    step["latency"],
                ]
                for step in doc["tuning"]["recommended"]
            ],
        ),
        "",
        f"fixed monthly costs (not per callback): ${doc['fixed_monthly']['total_usd_per_month']}",
    ]
    return "\n".join(lines)
