"""What the recorder counts from the pipeline's requests, and what the log capture attributes."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from aws_emulator.http_gateway import render_access_log
from aws_emulator.traffic import INTERNAL_USER_AGENT, AwsRequest, Forward
from pipeline_bench.measure import (
    BENCH_USER_AGENT,
    IndexSpec,
    LogCapture,
    Recorder,
    TableSpec,
    Topology,
    percentile,
)
from pipeline_bench.stacks import ACCESS_LOG_CONTEXT, all_stack_facts

REPO = Path(__file__).resolve().parents[2]
STATUS_TABLE = "status-table"
ERRORS_INDEX = IndexSpec("ErrorsByCode", ("error_shard", "received_at"), "INCLUDE", ("status", "product"))


def topology() -> Topology:
    return Topology(
        queues={
            "ingest-q": ("Ingest", "IngestQueue"),
            "archive-q": ("Archive", "ArchiveQueue"),
        },
        topics={"arn:aws:sns:us-east-1:1:alerts": ("Errors", "AlertsTopic")},
        tables={STATUS_TABLE: TableSpec(("Status", "StatusTable"), ("sid", "sk"), (ERRORS_INDEX,))},
        buckets={"archive-bucket": ("Archive", "ArchiveBucket")},
        buses={"errors": ("Errors", "ErrorEventBus")},
        secrets={"TwilioStatusCallbackHandler": ("Ingest", "AuthTokenSecret")},
        functions={},
        subscribed_queues=frozenset({"ArchiveQueue"}),
        ingest_queue="ingest-q",
        status_table=STATUS_TABLE,
        alerts_topic="arn:aws:sns:us-east-1:1:alerts",
        archiver="archiver",
        flagger="flagger",
    )


def request(service: str, operation: str, body: object, agent: str = "Boto3/1.0") -> AwsRequest:
    raw = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
    return AwsRequest(service, operation, "POST", "/", {"user-agent": agent}, raw)


def answered(recorder: Recorder, aws_request: AwsRequest, answer: dict[str, object]) -> None:
    decision = recorder.intercept(aws_request)
    assert isinstance(decision, Forward) and decision.rewrite_response is not None
    assert decision.rewrite_response(json.dumps(answer).encode()) == json.dumps(answer).encode()


def status_item(sid: str, sk: str, **extra: object) -> dict[str, object]:
    item: dict[str, object] = {"sid": {"S": sid}, "sk": {"S": sk}, "status": {"S": sk.removeprefix("EVENT#")}}
    item.update(extra)
    return item


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(topology(), LogCapture())


def test_receives_count_only_when_they_return_messages(recorder):
    # Given one receive that returned two messages from a subscribed queue and two empty ones
    receive = request("sqs", "ReceiveMessage", {"QueueUrl": "http://x/1/archive-q"})
    answered(
        recorder, receive, {"Messages": [{"MessageId": "m1", "Body": "a"}, {"MessageId": "m2", "Body": "b"}]}
    )
    answered(recorder, receive, {})
    answered(recorder, receive, {"Messages": []})
    snapshot = recorder.snapshot()
    # Then one billable receive, two empty ones kept apart, and two SNS deliveries to that queue
    assert snapshot.calls[("sqs", "ReceiveMessage", ("Archive", "ArchiveQueue"))] == 1
    assert snapshot.empty_receives[("Archive", "ArchiveQueue")] == 2
    assert snapshot.deliveries == {("Archive", "ArchiveQueue"): 2}


def test_a_redelivered_message_is_one_delivery(recorder):
    receive = request("sqs", "ReceiveMessage", {"QueueUrl": "http://x/1/archive-q"})
    answered(recorder, receive, {"Messages": [{"MessageId": "m1", "Body": "a"}]})
    answered(recorder, receive, {"Messages": [{"MessageId": "m1", "Body": "a"}]})
    assert recorder.snapshot().deliveries == {("Archive", "ArchiveQueue"): 1}


def test_runner_plumbing_and_benchmark_reads_are_not_counted(recorder):
    # Given a request to a runner-owned queue and one of the benchmark's own checks
    recorder.intercept(request("sqs", "ReceiveMessage", {"QueueUrl": "http://x/1/local-runner-q-123"}))
    recorder.intercept(
        request("sqs", "SendMessage", {"QueueUrl": "http://x/1/ingest-q"}, agent=f"Boto3 {BENCH_USER_AGENT}")
    )
    snapshot = recorder.snapshot()
    # Then neither is an AWS request of the workload
    assert not snapshot.calls
    assert snapshot.plumbing == {("sqs", "ReceiveMessage"): 1}


def test_logs_the_runner_ships_in_lambdas_place_are_not_counted(recorder):
    # Given the runner putting a handler's log lines and an access log line, as Lambda and API Gateway do
    shipped = request(
        "logs",
        "PutLogEvents",
        {"logGroupName": "/aws/lambda/validator", "logEvents": []},
        agent=f"Boto3/1.0 {INTERNAL_USER_AGENT}",
    )
    recorder.intercept(shipped)
    recorder.intercept(shipped)
    # and a handler of the pipeline writing logs itself
    recorder.intercept(request("logs", "PutLogEvents", {"logGroupName": "/aws/lambda/validator"}))
    snapshot = recorder.snapshot()
    # Then only the handler's own request is the workload's; the shipped ones are plumbing
    assert snapshot.calls == {("logs", "PutLogEvents", ("", "logs")): 1}
    assert snapshot.plumbing == {("logs", "PutLogEvents"): 2}


def test_ingest_sends_are_kept_for_the_validator_timing(recorder):
    attributes = {"Signature": {"DataType": "String", "StringValue": "=abc"}}
    recorder.intercept(
        request(
            "sqs",
            "SendMessage",
            {"QueueUrl": "http://x/1/ingest-q", "MessageBody": "A=1", "MessageAttributes": attributes},
        )
    )
    assert recorder.ingest_messages == [("A=1", attributes)]
    assert recorder.snapshot().units[("sqs", "SendMessage", ("Ingest", "IngestQueue"))] == 1


def test_write_units_follow_item_size_and_error_items_add_an_index_entry(recorder):
    # Given a healthy 1.5 KB event item and a small error item carrying the index keys
    big = status_item("SM1", "EVENT#delivered", twilio={"M": {"Body": {"S": "x" * 1500}}})
    error = status_item(
        "SM2",
        "EVENT#undelivered",
        error_shard={"S": "30003#1"},
        received_at={"N": "1"},
        product={"S": "message"},
    )
    for item in (big, error):
        answered(recorder, request("dynamodb", "PutItem", {"TableName": STATUS_TABLE, "Item": item}), {})
    snapshot = recorder.snapshot()
    # Then the big one costs two units, the error one one plus one index write
    assert snapshot.write_units[(("Status", "StatusTable"), "table")] == 3
    assert snapshot.write_units[(("Status", "StatusTable"), "ErrorsByCode")] == 1
    assert snapshot.event_item_units == [2, 1]
    assert set(snapshot.landed["dynamodb"]) == {("SM1", "delivered"), ("SM2", "undelivered")}


def test_a_failed_conditional_write_costs_one_unit_and_no_index_write(recorder):
    current = status_item("SM1", "CURRENT", error_shard={"S": "30003#1"}, received_at={"N": "1"})
    put = request("dynamodb", "PutItem", {"TableName": STATUS_TABLE, "Item": current})
    answered(recorder, put, {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"})
    snapshot = recorder.snapshot()
    assert snapshot.write_units == {(("Status", "StatusTable"), "table"): 1}
    assert (snapshot.current_writes, snapshot.current_stale) == (1, 1)
    assert "dynamodb" not in snapshot.landed


def test_publish_batches_bill_64_kb_chunks_and_alerts_land(recorder):
    # Given a PublishBatch of two 40 KB messages and one alert
    form = {
        "TopicArn": "arn:aws:sns:us-east-1:1:callbacks",
        "PublishBatchRequestEntries.member.1.Message": "x" * 40_000,
        "PublishBatchRequestEntries.member.2.Message": "y" * 40_000,
    }
    recorder.intercept(request("sns", "PublishBatch", urlencode(form)))
    alert = '"[warning] Twilio error 30007 on message SMabc (status undelivered): Carrier filtering."'
    recorder.intercept(
        request("sns", "Publish", urlencode({"TopicArn": "arn:aws:sns:us-east-1:1:alerts", "Message": alert}))
    )
    snapshot = recorder.snapshot()
    # Then the batch is two billing units and the alert is seen as landed
    assert snapshot.units[("sns", "PublishBatch", ("", "callbacks"))] == 2
    assert snapshot.units[("sns", "Publish", ("Errors", "AlertsTopic"))] == 1
    assert set(snapshot.landed["alerts"]) == {("SMabc", "undelivered")}


def test_error_events_count_entries_and_land_on_the_bus(recorder):
    detail = json.dumps({"ErrorCode": "30003", "record": {"sid": "SM9", "status": "undelivered"}})
    entries = [{"EventBusName": "errors", "Source": "s", "DetailType": "d", "Detail": detail}] * 2
    recorder.intercept(request("events", "PutEvents", {"Entries": entries}))
    snapshot = recorder.snapshot()
    assert snapshot.units[("events", "PutEvents", ("Errors", "ErrorEventBus"))] == 2
    assert snapshot.events_entries == 2
    assert set(snapshot.landed["error_bus"]) == {("SM9", "undelivered")}


def test_log_capture_attributes_output_to_the_running_function(monkeypatch):
    # Given output written while two functions run, a print in two writes and a log line in one
    capture = LogCapture()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "validator")
    capture.write('{"_aws":{"Timestamp":1},"Published":[10.0]}')
    capture.write("\n")
    capture.write('{"level":"INFO","message":"callback batch ingested"}\n')
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "writer")
    capture.write('{"level":"WARNING","message":"Status store write failed"}\n')
    # Then each function's bytes and lines are its own, split by kind
    size, events, kinds = capture.totals("validator")
    assert events == 2
    assert size == len('{"_aws":{"Timestamp":1},"Published":[10.0]}') + len(
        '{"level":"INFO","message":"callback batch ingested"}'
    )
    assert set(kinds) == {"emf", "INFO"}
    assert capture.totals("writer")[2].keys() == {"WARNING"}


def test_index_entries_project_only_what_the_index_declares():
    item = {
        "sid": "SM1",
        "sk": "EVENT#failed",
        "error_shard": "21610#0",
        "received_at": 5,
        "status": "failed",
    }
    item["twilio"] = {"Body": "x" * 2000}
    size = ERRORS_INDEX.entry_size(item, ("sid", "sk"))
    assert size is not None and size < 200
    assert ERRORS_INDEX.entry_size({"sid": "SM1", "sk": "CURRENT"}, ("sid", "sk")) is None
    everything = IndexSpec("All", ("error_shard", "received_at"), "ALL")
    assert (everything.entry_size(item, ("sid", "sk")) or 0) > 2000


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0


def test_template_facts_come_from_the_stacks():
    # Given the four stacks' templates
    facts = all_stack_facts(REPO / "aws_stacks")
    # Then the consumer queues are SNS subscriptions, the status table's error index is known, and
    # the access log renders without placeholders (each function's memory and tracing mode come
    # from the deployment: tests/local/test_local_provision.py)
    assert len(facts) == 4
    subscribed = {queue for stack in facts.values() for queue in stack.subscribed_queues}
    assert {"ArchiveQueue", "StatusQueue", "ErrorQueue"} <= subscribed
    status = facts["SaveStatusCallbackToDynamo"].tables["StatusTable"]
    assert [index.name for index in status.indexes] == ["ErrorsByCode"]
    log_format = facts["StatusCallbackHandler"].access_log_format
    assert log_format is not None
    line = render_access_log(log_format, ACCESS_LOG_CONTEXT)
    assert "$context" not in line and "requestId" in line
