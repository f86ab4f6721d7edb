"""The cost model: billing units, the price table, and the original design's pattern from known inputs."""

from __future__ import annotations

import math

import pytest

from pipeline_bench import cost
from pipeline_bench.cost import (
    ASSUMED,
    COUNTED,
    AnchorInputs,
    Assumptions,
    FunctionProfile,
    UsageLine,
)


def profile(
    name: str = "Fn", fixed_ms: float = 10.0, per_record_ms: float = 0.0, **changes: object
) -> FunctionProfile:
    values: dict[str, object] = {
        "name": name,
        "memory_mb": 256,
        "tracing_active": False,
        "duration_fixed_ms": fixed_ms,
        "duration_per_record_ms": per_record_ms,
        "cpu_share": 0.0,
        "log_bytes_fixed": 0.0,
        "log_bytes_per_record": 0.0,
        "log_events_fixed": 0.0,
        "log_events_per_record": 0.0,
    }
    values.update(changes)
    return FunctionProfile(**values)  # type: ignore[arg-type]


def line_usd(breakdown: cost.CostBreakdown, item: str) -> float:
    return sum(line.usd for line in breakdown.lines if line.usage.item == item)


def test_every_price_has_a_source_and_the_issue_values():
    # Given the price table
    prices = cost.PRICES
    # Then every billed price names its source, and the issue's list prices are the ones used
    for key, price in prices.items():
        if price.usd:
            assert price.source.startswith("https://aws.amazon.com/"), key
    assert prices["apigateway.http_request"].usd * 1e6 == pytest.approx(1.00)
    assert prices["sqs.request"].usd * 1e6 == pytest.approx(0.40)
    assert prices["sns.publish"].usd * 1e6 == pytest.approx(0.50)
    assert prices["lambda.request"].usd * 1e6 == pytest.approx(0.20)
    assert prices["lambda.arm64.gb_second"].usd == pytest.approx(0.0000133334)
    assert prices["s3.put"].usd * 1000 == pytest.approx(0.005)
    assert prices["s3.get"].usd * 1000 == pytest.approx(0.0004)
    assert prices["dynamodb.write_unit"].usd * 1e6 == pytest.approx(0.625)
    assert prices["dynamodb.read_unit"].usd * 1e6 == pytest.approx(0.125)
    assert prices["eventbridge.custom_event"].usd * 1e6 == pytest.approx(1.00)
    assert prices["logs.ingest_gb"].usd == pytest.approx(0.50)
    assert prices["xray.trace"].usd * 1e6 == pytest.approx(5.00)
    assert prices["secretsmanager.api"].usd * 10_000 == pytest.approx(0.05)
    assert prices["kms.request"].usd * 10_000 == pytest.approx(0.03)


@pytest.mark.parametrize(("payload", "units"), [(0, 1), (1, 1), (65_536, 1), (65_537, 2), (262_144, 4)])
def test_requests_bill_every_started_64_kb(payload, units):
    assert cost.chunks(payload) == units


@pytest.mark.parametrize(("size", "units"), [(1, 1), (1024, 1), (1025, 2), (4096, 4)])
def test_dynamodb_write_units_are_per_started_kb(size, units):
    assert cost.write_units(size) == units


def test_lambda_bills_whole_milliseconds_of_configured_memory():
    # Given a 41.2 ms invocation of a 256 MB function
    # Then it bills 42 ms x 0.25 GB
    assert cost.billed_gb_seconds(41.2, 256) == pytest.approx(0.042 * 0.25)


def test_firehose_rounds_each_record_up_to_5_kb():
    assert cost.firehose_billed_bytes(600) == 5120
    assert cost.firehose_billed_bytes(5121) == 10_240


def test_log_bytes_add_the_per_event_overhead():
    assert cost.log_bytes(1000, 3) == 1000 + 3 * 26


def test_platform_lines_grow_with_the_xray_segment_when_tracing_is_active():
    plain, events = cost.platform_log_lines(tracing_active=False)
    traced, traced_events = cost.platform_log_lines(tracing_active=True)
    assert events == traced_events == 3
    assert traced - plain == len(cost.LAMBDA_REPORT_XRAY_SUFFIX)


def test_an_sns_enqueue_line_is_priced_by_the_assumption_flag():
    # Given one million SNS→SQS deliveries and one million SQS sends
    lines = [
        UsageLine("SQS", "delivery", 1e6, "sqs.request", COUNTED, sns_enqueue=True),
        UsageLine("SQS", "send", 1e6, "sqs.request", COUNTED),
    ]
    # When priced under both assumptions
    billed = cost.price(lines, Assumptions(sns_to_sqs_enqueue_billed=True))
    free = cost.price(lines, Assumptions(sns_to_sqs_enqueue_billed=False))
    # Then only the delivery's price changes
    assert billed.total == pytest.approx(0.80)
    assert free.total == pytest.approx(0.40)
    assert line_usd(free, "send") == pytest.approx(0.40)


def test_breakdown_totals_are_the_sum_of_their_lines():
    lines = [
        UsageLine("API Gateway", "requests", 1e6, "apigateway.http_request", COUNTED, "ingest"),
        UsageLine("DynamoDB", "writes", 2e6, "dynamodb.write_unit", COUNTED, "status"),
    ]
    breakdown = cost.price(lines)
    assert breakdown.total == pytest.approx(1.00 + 1.25)
    assert breakdown.by_service() == pytest.approx({"DynamoDB": 1.25, "API Gateway": 1.00})
    assert breakdown.by_component() == pytest.approx({"status": 1.25, "ingest": 1.00})
    assert breakdown.to_dict()["total_usd"] == pytest.approx(2.25)


def test_fit_line_recovers_fixed_and_per_record_cost():
    points = [(records, 5.0 + 2.0 * records) for records in (1, 5, 10, 40)]
    assert cost.fit_line(points) == pytest.approx((5.0, 2.0))


def test_fit_line_with_one_batch_size_is_its_mean_and_never_negative():
    assert cost.fit_line([(10, 4.0), (10, 6.0)]) == (5.0, 0.0)
    intercept, slope = cost.fit_line([(1, 0.0), (2, 10.0), (3, 20.0)])
    assert intercept == 0.0
    assert slope > 0


def test_lambda_duration_stretches_only_the_cpu_part_below_a_full_vcpu():
    # Given a 100 ms handler that computes half the time
    measured = profile(fixed_ms=100.0, cpu_share=0.5)
    # Then at 256 MB its CPU half runs 1769/256 times longer, its waits as measured
    assert measured.lambda_duration_ms(1, 256) == pytest.approx(50 + 50 * 1769 / 256)
    # And at a full vCPU nothing stretches
    assert measured.lambda_duration_ms(1, 2048) == pytest.approx(100.0)


def test_invocation_lines_price_requests_compute_logs_and_traces():
    # Given 1,000 invocations of a traced 256 MB function taking 20 ms and logging 500 B in 2 lines
    traced = profile(fixed_ms=20.0, tracing_active=True, log_bytes_fixed=500.0, log_events_fixed=2.0)
    lines = cost.invocation_lines(
        traced, invocations=1000, records_per_invocation=10, component="c", origin=COUNTED
    )
    breakdown = cost.price(lines)
    platform_bytes, platform_events = cost.platform_log_lines(True)
    # Then each part is priced as documented
    assert line_usd(breakdown, "Fn invocations") == pytest.approx(1000 * 0.2e-6)
    assert sum(line.usd for line in breakdown.lines if line.usage.price_key == "lambda.arm64.gb_second") == (
        pytest.approx(1000 * 0.020 * 0.25 * 0.0000133334)
    )
    assert line_usd(breakdown, "Fn logs") == pytest.approx(
        1000 * (500 + platform_bytes + 26 * (2 + platform_events)) / 1e9 * 0.50
    )
    assert line_usd(breakdown, "Fn traces (Active)") == pytest.approx(1000 * 5e-6)


def test_the_original_design_is_priced_from_its_request_pattern():
    # Given the run's figures: 5% errors, one write unit per record, 10 ms handlers, no handler logs
    handler = profile(fixed_ms=10.0)
    inputs = AnchorInputs(
        error_fraction=0.05,
        record_write_units=1.0,
        validator=handler,
        archive_writer=handler,
        store_writer=handler,
        error_checker=handler,
    )
    # When the original's pattern is priced
    breakdown = cost.price(cost.anchor_usage(inputs))
    by_service = breakdown.by_service()
    # Then each service costs what one million callbacks cost in that design
    assert by_service["API Gateway"] == pytest.approx(1.00)
    assert by_service["SQS"] == pytest.approx((1 + 2 / 3) * 0.40)  # send + receive and delete per 3
    assert by_service["SNS"] == pytest.approx(0.50)  # one Publish per record; deliveries to Lambda free
    assert by_service["S3"] == pytest.approx(5.00)  # one PUT per callback
    assert by_service["DynamoDB"] == pytest.approx(2 * 0.625)  # item + ALL-projection index entry
    assert by_service["EventBridge"] == pytest.approx(0.05)
    invocations = 1e6 / 3 + 3 * 1e6
    assert by_service["Lambda"] == pytest.approx(invocations * (0.2e-6 + 0.010 * 0.125 * 0.0000133334))
    platform_bytes, platform_events = cost.platform_log_lines(False)
    assert by_service["CloudWatch Logs"] == pytest.approx(
        invocations * (platform_bytes + 26 * platform_events) / 1e9 * 0.50
    )
    assert "X-Ray" not in by_service
    assert all(line.usage.origin == ASSUMED for line in breakdown.lines)
    # And the total is the "about $10" the design page quotes
    assert 9.0 < breakdown.total < 11.0


def test_larger_records_cost_the_original_design_more_write_units():
    handler = profile()
    small = AnchorInputs(0.0, 1.0, handler, handler, handler, handler)
    large = AnchorInputs(0.0, 2.0, handler, handler, handler, handler)
    difference = cost.price(cost.anchor_usage(large)).total - cost.price(cost.anchor_usage(small)).total
    assert difference == pytest.approx(2 * 0.625)


def test_fixed_costs_do_not_grow_with_callbacks():
    # Given four event sources idling, two encrypted topics, one secret, ten alarms and one key
    fixed = cost.fixed_costs(
        event_source_queues=4, encrypted_topic_publishers=[1, 2], secrets=1, alarms=10, keys=1
    )
    items = {item.item: item.usd_per_month for item in fixed.items}
    # Then idle polling is five 20 s long polls per queue, all month
    polls = 4 * 5 * 30 * 24 * 3600 / 20
    assert items["SQS empty receives of idle event sources"] == pytest.approx(polls * 0.4e-6)
    # And SNS's data keys follow its documented formula
    kms = 30 * 24 * 3600 / 300 * 2 * (1 + 2)
    assert items["KMS data keys for encrypted SNS topics"] == pytest.approx(kms * 0.03 / 10_000)
    assert fixed.total == pytest.approx(sum(items.values()))
    assert math.isclose(items["CloudWatch alarms"], 1.0)


def test_lambda_traces_one_invocation_a_second_and_five_percent_of_the_rest():
    from pipeline_bench.tuning import lambda_sampled_fraction

    # Below one invocation a second every invocation is a trace
    assert lambda_sampled_fraction(0.2) == 1.0
    assert lambda_sampled_fraction(1.0) == 1.0
    # Above it, the reservoir's one plus 5% of the rest
    assert lambda_sampled_fraction(3.0) == pytest.approx((1 + 0.05 * 2) / 3)
    assert lambda_sampled_fraction(1000.0) == pytest.approx(0.05, abs=0.001)
