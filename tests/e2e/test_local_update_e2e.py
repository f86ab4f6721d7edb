"""A stack update played locally, the rejection summary, and which of the runner's requests are AWS's own."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from aws_emulator import LocalPipeline
from aws_emulator.runner import PipelineError
from aws_emulator.traffic import AwsRequest
from status_callbacks.adapters.dynamodb import events_of
from tests.e2e.probes import clients, eventually, log_messages, post_signed
from tests.support.signing import message_status_params

pytestmark = pytest.mark.e2e

TOKEN = "update-e2e-token-not-a-secret"
INGEST = "StatusCallbackHandler"
CUSTOM_DOMAIN = "https://hooks.example.com/v1"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with LocalPipeline(aws_port=0, http_port=0, token=TOKEN) as running:
        yield running


def stored(pipeline: LocalPipeline, sid: str) -> None:
    dynamodb = clients(pipeline).dynamodb
    table = pipeline.output("StatusTableName") or ""
    eventually(lambda: events_of(dynamodb, table, sid), f"{sid} stored in DynamoDB")


def registered(pipeline: LocalPipeline) -> tuple[dict[str, str], dict[str, str]]:
    (stack,) = clients(pipeline).cloudformation.describe_stacks(StackName=INGEST)["Stacks"]
    return (
        {item["ParameterKey"]: item["ParameterValue"] for item in stack["Parameters"]},
        {item["OutputKey"]: item["OutputValue"] for item in stack["Outputs"]},
    )


def test_a_public_base_url_update_reaches_the_validator_and_keeps_the_queues(pipeline: LocalPipeline) -> None:
    local_url = f"{pipeline.public_url}/twilio"
    sqs = clients(pipeline).sqs
    dead_letters = pipeline.output("IngestDeadLetterQueueUrl") or ""
    sqs.send_message(QueueUrl=dead_letters, MessageBody="waiting for a redrive")
    bursts = pipeline.rejection_bursts(interval=0.5)

    # When the ingest stack is updated to a custom domain's URL
    pipeline.update_parameters(INGEST, {"PublicBaseUrl": CUSTOM_DOMAIN})

    # Then DescribeStacks shows the new parameter and outputs
    parameters, outputs = registered(pipeline)
    assert parameters["PublicBaseUrl"] == CUSTOM_DOMAIN
    assert (outputs["CallbackUrl"], outputs["PublicBaseUrl"]) == (f"{CUSTOM_DOMAIN}/twilio", CUSTOM_DOMAIN)
    # and the validator, in a fresh container, checks signatures against the new URL:
    # a callback signed for the custom domain is accepted, one signed for the local URL is not
    custom = message_status_params("delivered", MessageSid="SM" + "7" * 32)
    local = message_status_params("delivered", MessageSid="SM" + "8" * 32)
    assert post_signed(local_url, custom, pipeline.token, signed_for=f"{CUSTOM_DOMAIN}/twilio") == 200
    assert post_signed(local_url, local, pipeline.token) == 200
    stored(pipeline, "SM" + "7" * 32)

    # and the console's summary names the rejection, once
    def summary() -> str | None:
        return bursts.poll()

    line = eventually(summary, "a rejection summary")
    # (which reason depends on the validator's diagnosis of an http:// local URL; the count does not)
    assert re.fullmatch(
        r"rejected 1 callback in the last 1 s: [A-Za-z]+ 1 — twilio-callbacks rejected list", line
    )
    # and what the queues held is still there
    (kept,) = sqs.receive_message(QueueUrl=dead_letters, WaitTimeSeconds=1)["Messages"]
    assert kept["Body"] == "waiting for a redrive"

    # When the update is rolled back, the local URL is the one again
    pipeline.update_parameters(INGEST, {"PublicBaseUrl": pipeline.public_url})
    again = message_status_params("delivered", MessageSid="SM" + "9" * 32)
    assert post_signed(local_url, again, pipeline.token) == 200
    stored(pipeline, "SM" + "9" * 32)
    assert "PublicBaseUrl" in registered(pipeline)[1]


def test_an_update_of_a_resource_property_is_refused_and_changes_nothing(pipeline: LocalPipeline) -> None:
    before = registered(pipeline)

    with pytest.raises(PipelineError, match=r"ValidatorFunctionIngestQueue .* BatchSize"):
        pipeline.update_parameters(INGEST, {"BatchSize": "20", "PublicBaseUrl": CUSTOM_DOMAIN})

    assert registered(pipeline) == before


def test_log_shipping_is_not_the_pipelines_own_traffic(pipeline: LocalPipeline) -> None:
    seen: list[AwsRequest] = []

    def record(request: AwsRequest) -> None:
        seen.append(request)

    pipeline.traffic.add_interceptor(record)
    try:
        params = message_status_params("delivered", MessageSid="SM" + "6" * 32)
        assert post_signed(f"{pipeline.public_url}/twilio", params, pipeline.token) == 200
        stored(pipeline, "SM" + "6" * 32)
        eventually(lambda: log_messages(pipeline, "ApiAccessLogGroupName"), "the access log line")
        assert pipeline.flush_logs()
    finally:
        pipeline.traffic.remove_interceptor(record)

    shipped = [request for request in seen if request.operation == "PutLogEvents"]
    assert shipped and all(request.internal for request in shipped)
    # The gateway's SendMessage and the handlers' calls are the pipeline's own
    sends = [request for request in seen if request.operation in ("SendMessage", "PublishBatch", "PutItem")]
    assert sends and not any(request.internal for request in sends)
