"""The short benchmark: 600 callbacks through the local pipeline, and the JSON it writes.

Figures are checked for presence, shape and internal consistency (counts
that must match the workload, costs that must add up), never against timing
thresholds: timings are printed, not asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline_bench import cli

pytestmark = pytest.mark.e2e

SHORT_RUN = 600
SINKS = {"s3", "dynamodb", "error_bus", "alerts", "flags"}
FUNCTIONS = {
    "ValidatorFunction",
    "ArchiverFunction",
    "WriterFunction",
    "RouterFunction",
    "FlaggerFunction",
    "AlerterFunction",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the short benchmark once through its command line."""
    output = tmp_path_factory.mktemp("bench") / "bench-results.json"
    assert cli.main(["--callbacks", str(SHORT_RUN), "--output", str(output), "--quiet"]) == 0
    document: dict[str, Any] = json.loads(Path(output).read_text(encoding="utf-8"))
    return document


def test_every_callback_reached_every_sink_it_belongs_to(results):
    workload = results["workload"]
    assert results["callbacks"] == workload["callbacks"] >= SHORT_RUN
    assert results["run"]["complete"] is True
    distinct = results["land_latency_ms"]["s3"]["n"]
    assert (
        results["land_latency_ms"]["dynamodb"]["n"] == distinct == results["callbacks"] - workload["retries"]
    )
    assert results["land_latency_ms"]["error_bus"]["n"] == results["land_latency_ms"]["alerts"]["n"]
    assert results["land_latency_ms"]["error_bus"]["n"] == workload["error_callbacks"] > 0
    verification = results["verification"]
    assert verification["all_callbacks_archived"] is True
    assert verification["current_status_right"] == verification["current_status_checked"] > 0
    assert set(verification["dead_letters"].values()) == {0}


def test_headline_figures_are_present_and_positive(results):
    assert results["callbacks_per_second"] > 0
    assert 0 < results["ingest_latency_ms"]["p50"] <= results["ingest_latency_ms"]["p99"]
    assert set(results["land_latency_ms"]) == SINKS
    for sink in SINKS:
        latency = results["land_latency_ms"][sink]
        assert 0 < latency["p50"] <= latency["p99"]
    assert results["validator_us_per_record"] > 0
    assert (
        results["run"]["validator"]["valid"]
        == results["run"]["validator"]["records_timed"]
        == results["callbacks"]
    )
    assert set(results["cold_import_ms"]) == FUNCTIONS
    assert all(milliseconds > 0 for milliseconds in results["cold_import_ms"].values())


def test_requests_per_1000_are_counted_from_the_run(results):
    requests = results["requests_per_1000"]
    # One HTTP request and one SQS send per callback, each counted
    assert requests["apigateway"]["HTTP API request"] == pytest.approx(1000.0)
    assert requests["sqs"]["SendMessage"] == pytest.approx(1000.0)
    # The validator publishes at most ten records per PublishBatch
    assert 100 <= requests["sns"]["PublishBatch"] < 1000
    # Every stored callback is one event item write, plus current-status writes
    assert requests["dynamodb"]["PutItem"] >= 1000 - 10
    # Empty polls are kept apart: receives that returned messages stay below one per callback per queue
    assert requests["sqs"]["ReceiveMessage"] < 4000
    assert results["empty_receives"]["local_count"] >= 0
    assert set(results["lambda_invocations_per_1000"]) == FUNCTIONS
    # The validator takes at most 100 queued callbacks per invocation (its BatchSize)
    assert results["lambda_invocations_per_1000"]["ValidatorFunction"] >= 10
    assert results["lambda"]["ValidatorFunction"]["records_per_invocation"] <= 100


def test_sns_deliveries_are_counted_per_subscribed_queue(results):
    deliveries = results["sns_to_sqs_deliveries_per_1000"]
    assert set(deliveries) == {"ArchiveQueue", "StatusQueue", "ErrorQueue"}
    assert deliveries["ArchiveQueue"] == pytest.approx(1000, rel=0.02)
    assert deliveries["StatusQueue"] == pytest.approx(deliveries["ArchiveQueue"])
    assert deliveries["ErrorQueue"] == pytest.approx(
        1000 * results["workload"]["error_callbacks"] / results["callbacks"], rel=0.05
    )


def test_costs_add_up_and_the_enqueue_assumption_is_visible(results):
    breakdown = results["cost_breakdown"]
    assert breakdown["total_usd"] == pytest.approx(sum(line["usd"] for line in breakdown["lines"]), abs=0.01)
    assert results["cost_per_million_usd"] == pytest.approx(breakdown["total_usd"], abs=0.001)
    # Billing the SNS→SQS enqueues (the sensitivity) adds about $0.40 per fully subscribed queue
    difference = results["cost_per_million_usd_sns_sqs_enqueue_billed"] - results["cost_per_million_usd"]
    assert difference == pytest.approx(
        0.40 * sum(results["sns_to_sqs_deliveries_per_1000"].values()) / 1000, rel=0.01
    )
    origins = {line["origin"] for line in breakdown["lines"]}
    assert {"counted", "measured", "modelled"} <= origins
    services = set(breakdown["by_service_usd"])
    assert {"API Gateway", "SQS", "SNS", "Lambda", "S3", "DynamoDB", "CloudWatch Logs"} <= services


def test_the_original_design_is_priced_from_the_same_run(results):
    anchor = results["anchor_breakdown"]["by_service_usd"]
    assert anchor["S3"] == pytest.approx(5.00)
    assert anchor["API Gateway"] == pytest.approx(1.00)
    assert results["anchor_cost_per_million_usd"] > results["cost_per_million_usd"]
    assert results["anchor_over_ours"] == pytest.approx(
        results["anchor_cost_per_million_usd"] / results["cost_per_million_usd"], rel=0.01
    )
    assert results["anchor_over_ours_sns_sqs_enqueue_billed"] == pytest.approx(
        results["anchor_cost_per_million_usd"] / results["cost_per_million_usd_sns_sqs_enqueue_billed"],
        rel=0.01,
    )


def test_the_templates_deploy_without_traces_and_the_tuning_prices_turning_them_on(results):
    # Tracing defaults to PassThrough: no X-Ray line in the headline
    assert {values["tracing"] for values in results["lambda"].values()} == {"PassThrough"}
    assert "X-Ray" not in results["cost_breakdown"]["by_service_usd"]
    # and turning Active on costs more when every invocation is a trace than when Lambda samples
    tracing = [option for option in results["tuning"]["options"] if option["area"] == "tracing"]
    sampled, every = (option["delta_usd_per_million"] for option in tracing)
    assert 0 < sampled <= every


def test_tuning_options_and_prices_are_reported(results):
    areas = {option["area"] for option in results["tuning"]["options"]}
    assert {"batching", "memory", "tracing", "logs", "dynamodb", "structure"} <= areas
    steps = results["tuning"]["recommended"]
    assert steps[0]["step"] == "as measured"
    assert steps[0]["cost_per_million_usd"] == pytest.approx(results["cost_per_million_usd"], abs=0.001)
    assert steps[-1]["cost_per_million_usd"] < steps[0]["cost_per_million_usd"]
    assert all(price["source"].startswith("https://") for price in results["prices"])
