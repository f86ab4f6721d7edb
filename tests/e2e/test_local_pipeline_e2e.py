"""End to end on one machine: signed callbacks over HTTP, through every stack, into every sink.

Acts as Twilio against the local runner (real HTTP, real handlers, moto
behind them): a message lifecycle arriving out of order and duplicated, a
voice call, custom parameters with awkward characters, an error callback,
and everything that must not get in (forged, unsigned, garbage, oversized).
Then it reads what landed in S3, DynamoDB, the number-flags table and the
alerts topic, and checks that nothing is stuck or dead-lettered.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import requests

from aws_emulator import LocalPipeline
from aws_emulator.aws import Clients
from status_callbacks.adapters.dynamodb import current_of, events_of
from tests.e2e.probes import eventually, log_messages, post, post_signed
from tests.support.signing import (
    ACCOUNT_SID,
    SIGNATURE_HEADER,
    TO_NUMBER,
    call_status_params,
    form_body,
    message_status_params,
)

pytestmark = pytest.mark.e2e

MESSAGE_SID = "SM" + "a" * 32
CALL_SID = "CA" + "b" * 32
CUSTOM_SID = "SM" + "c" * 32
ERROR_SID = "SM" + "d" * 32
FORGED_SID = "SM" + "e" * 32
UNSIGNED_SID = "SM" + "f" * 32
LEGIT_SIDS = {MESSAGE_SID, CALL_SID, CUSTOM_SID, ERROR_SID}
CUSTOM = {"id": "order 42 & more", "category": "café 'quoted' + plus"}
INBOX = "AlertsInboxQueueUrl"
INGESTED = "callback batch ingested"
STACKS = {
    "StatusCallbackHandler",
    "SaveStatusCallbackToS3",
    "SaveStatusCallbackToDynamo",
    "CheckForStatusCallbackErrors",
}


@dataclass
class Sent:
    """What the scenario sent and what the HTTP API answered."""

    statuses: dict[str, int] = field(default_factory=dict)
    alerts_queue_url: str = ""


@pytest.fixture(scope="module")
def aws(pipeline: LocalPipeline) -> Callable[[str], Any]:
    return Clients(pipeline.endpoint_url, pipeline.region).client


@pytest.fixture(scope="module")
def sent(pipeline: LocalPipeline, aws: Callable[[str], Any]) -> Sent:
    """Send the whole scenario once; the tests below read what it left behind."""
    result = Sent()
    # Observe the alerts topic the way an operator would: a queue subscribed to it.
    sqs = aws("sqs")
    result.alerts_queue_url = sqs.create_queue(QueueName="e2e-alerts-observer")["QueueUrl"]
    aws("sns").subscribe(
        TopicArn=pipeline.output("AlertsTopicArn"),
        Protocol="sqs",
        Endpoint=sqs.get_queue_attributes(QueueUrl=result.alerts_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    callback_url = pipeline.output("CallbackUrl") or ""
    params_url = (
        f"{pipeline.output('CallbackWithParamsUrl')}"
        f"?id={quote(CUSTOM['id'], safe='')}&category={quote(CUSTOM['category'], safe='')}"
    )
    # A message lifecycle out of order, with Twilio retries (identical duplicates)
    for status in ("delivered", "queued", "sent", "delivered", "sent"):
        params = message_status_params(status, MessageSid=MESSAGE_SID, SmsSid=MESSAGE_SID)
        result.statuses[f"message-{status}"] = post_signed(callback_url, params, pipeline.token)
    # A voice call, out of order
    for sequence, status in (("3", "completed"), ("1", "ringing"), ("0", "initiated"), ("2", "in-progress")):
        params = call_status_params(status, sequence_number=sequence, CallSid=CALL_SID)
        result.statuses[f"call-{status}"] = post_signed(callback_url, params, pipeline.token)
    # An undeliverable message: an error event, a number flag and an alert
    params = message_status_params("undelivered", MessageSid=ERROR_SID, SmsSid=ERROR_SID, ErrorCode="30003")
    result.statuses["error"] = post_signed(callback_url, params, pipeline.token)
    # Everything that must not get in
    result.statuses["forged"] = post_signed(
        callback_url, message_status_params("delivered", MessageSid=FORGED_SID), token="not-the-token"
    )
    unsigned = message_status_params("delivered", MessageSid=UNSIGNED_SID)
    result.statuses["unsigned"] = post(callback_url, form_body(unsigned), {"Content-Type": "text/plain"})
    result.statuses["garbage"] = post(callback_url, "%%%not=form&&&=", {SIGNATURE_HEADER: "Zm9yZ2Vk"})
    result.statuses["binary"] = post(callback_url, bytes(range(256)), {SIGNATURE_HEADER: "Zm9yZ2Vk"})
    result.statuses["empty"] = post(callback_url, b"", {SIGNATURE_HEADER: "Zm9yZ2Vk"})
    oversized = message_status_params("delivered", MessageSid=FORGED_SID, Body="x" * (1024 * 1024 + 1))
    result.statuses["oversized"] = post_signed(callback_url, oversized, pipeline.token)
    result.statuses["wrong-method"] = requests.get(callback_url, timeout=30).status_code
    result.statuses["wrong-path"] = post_signed(
        callback_url + "-nope", message_status_params(), pipeline.token
    )
    # After all that, custom parameters with spaces, &, ', + and non-ASCII still work
    params = message_status_params("delivered", MessageSid=CUSTOM_SID, SmsSid=CUSTOM_SID)
    result.statuses["custom"] = post_signed(params_url, params, pipeline.token)
    return result


def archived_records(pipeline: LocalPipeline, aws: Callable[[str], Any]) -> list[dict[str, Any]]:
    s3 = aws("s3")
    bucket = pipeline.output("ArchiveBucketName")
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="callbacks/"):
        for item in page.get("Contents", []):
            assert item["Key"].startswith("callbacks/dt=") and item["Key"].endswith(".json.gz")
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            records += [
                json.loads(line) for line in gzip.decompress(body).decode("utf-8").splitlines() if line
            ]
    return records


def archived_by_sid(
    pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> dict[str, dict[str, dict[str, Any]]]:
    """sid → event_id → record (the archive is at least once, so copies collapse)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for record in archived_records(pipeline, aws):
        found.setdefault(record["sid"], {})[record["event_id"]] = record
    return found


def status_table(pipeline: LocalPipeline) -> str:
    return pipeline.output("StatusTableName") or ""


def test_the_http_api_answers_as_api_gateway(sent: Sent) -> None:
    accepted = {key: code for key, code in sent.statuses.items() if key.startswith(("message", "call"))}
    assert set(accepted.values()) == {200}
    # API Gateway queues whatever arrives on a route; the validator decides
    assert [sent.statuses[key] for key in ("error", "forged", "unsigned", "garbage", "binary", "empty")] == [
        200
    ] * 6
    assert sent.statuses["oversized"] == 500
    assert sent.statuses["wrong-method"] == 404
    assert sent.statuses["wrong-path"] == 404
    assert sent.statuses["custom"] == 200


def test_the_message_lifecycle_lands_in_dynamodb_once_per_status(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    dynamodb = aws("dynamodb")

    def statuses() -> set[str] | None:
        found = {item["status"] for item in events_of(dynamodb, status_table(pipeline), MESSAGE_SID)}
        return found if found == {"queued", "sent", "delivered"} else None

    eventually(statuses, "three status items for the message")
    events = events_of(dynamodb, status_table(pipeline), MESSAGE_SID)
    assert len(events) == 3
    current = current_of(dynamodb, status_table(pipeline), MESSAGE_SID)
    assert current is not None and current["status"] == "delivered"


def test_the_call_ends_completed_despite_arriving_out_of_order(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    dynamodb = aws("dynamodb")

    eventually(
        lambda: len(events_of(dynamodb, status_table(pipeline), CALL_SID)) == 4, "four call status items"
    )
    current = current_of(dynamodb, status_table(pipeline), CALL_SID)
    assert current is not None and current["status"] == "completed"


def test_the_archive_holds_each_callback_as_gzip_ndjson(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    def complete() -> dict[str, dict[str, dict[str, Any]]] | None:
        found = archived_by_sid(pipeline, aws)
        counts = {sid: len(found.get(sid, {})) for sid in LEGIT_SIDS}
        return found if counts == {MESSAGE_SID: 3, CALL_SID: 4, CUSTOM_SID: 1, ERROR_SID: 1} else None

    archived = eventually(complete, "every distinct callback archived")

    statuses = {record["status"] for record in archived[MESSAGE_SID].values()}
    assert statuses == {"queued", "sent", "delivered"}
    error_record = next(iter(archived[ERROR_SID].values()))
    assert (error_record["error_code"], error_record["product"]) == ("30003", "message")
    assert error_record["twilio"]["To"] == TO_NUMBER
    assert error_record["account_sid"] == ACCOUNT_SID


def test_custom_parameters_survive_spaces_ampersands_quotes_plus_and_non_ascii(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    archived = eventually(
        lambda: archived_by_sid(pipeline, aws).get(CUSTOM_SID), "the custom-params callback"
    )

    (record,) = archived.values()
    assert record["custom"] == CUSTOM
    assert record["route"] == "/twilio-params"
    assert "id" not in record["twilio"]


def test_an_error_callback_flags_the_number_and_alerts(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    dynamodb = aws("dynamodb")
    flags_table = pipeline.output("NumberFlagsTableName")

    flag = eventually(
        lambda: dynamodb.get_item(
            TableName=flags_table, Key={"phone_number": {"S": TO_NUMBER}, "error_code": {"S": "30003"}}
        ).get("Item"),
        "the number flag",
    )
    assert flag["last_sid"]["S"] == ERROR_SID

    sqs = aws("sqs")
    messages = eventually(
        lambda: sqs.receive_message(QueueUrl=sent.alerts_queue_url, MaxNumberOfMessages=10).get("Messages"),
        "an alert on the alerts topic",
    )
    (alert,) = messages
    assert "30003" in alert["Body"]
    assert ERROR_SID in alert["Body"]
    assert TO_NUMBER not in alert["Body"]


def test_nothing_forged_unsigned_or_malformed_landed_anywhere(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    # Wait until the legitimate callbacks are all in, so the forged ones had the same chance
    eventually(lambda: set(archived_by_sid(pipeline, aws)) >= LEGIT_SIDS, "the legitimate callbacks")
    wait_until_settled(pipeline, aws)

    archived = archived_by_sid(pipeline, aws)
    dynamodb = aws("dynamodb")
    assert set(archived) == LEGIT_SIDS
    for sid in (FORGED_SID, UNSIGNED_SID):
        assert events_of(dynamodb, status_table(pipeline), sid) == []
    table_sids = {item["sid"]["S"] for item in dynamodb.scan(TableName=status_table(pipeline))["Items"]}
    assert table_sids == LEGIT_SIDS


def queue_depths(pipeline: LocalPipeline, aws: Callable[[str], Any], dead_letter: bool) -> dict[str, int]:
    sqs = aws("sqs")
    depths = {}
    for stack in pipeline.deployment.stacks if pipeline.deployment else []:
        for key, (url, _, _) in stack.outputs.items():
            # The alerts inbox is read by people, not drained by a function.
            if not key.endswith("QueueUrl") or ("DeadLetter" in key) != dead_letter or key == INBOX:
                continue
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            depths[f"{stack.name}.{key}"] = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
    return depths


def wait_until_settled(pipeline: LocalPipeline, aws: Callable[[str], Any]) -> None:
    eventually(
        lambda: not any(queue_depths(pipeline, aws, dead_letter=False).values()), "every queue drained"
    )


def test_every_queue_drains_and_every_dead_letter_queue_stays_empty(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    wait_until_settled(pipeline, aws)

    dead_letters = queue_depths(pipeline, aws, dead_letter=True)

    assert {name.split(".", 1)[0] for name in dead_letters} == STACKS
    assert dead_letters == dict.fromkeys(dead_letters, 0)


def test_the_stacks_are_registered_with_local_outputs(
    pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    cloudformation = aws("cloudformation")

    stacks = {stack["StackName"]: stack for stack in cloudformation.describe_stacks()["Stacks"]}

    assert set(stacks) == STACKS
    ingest = {
        output["OutputKey"]: output["OutputValue"] for output in stacks["StatusCallbackHandler"]["Outputs"]
    }
    assert ingest["CallbackUrl"] == f"{pipeline.api_base_url}/twilio"
    assert ingest["ApiBaseUrl"] == pipeline.api_base_url
    exports = {export["Name"]: export["Value"] for export in cloudformation.list_exports()["Exports"]}
    assert exports["StatusCallbackHandler-TopicArn"] == ingest["TopicArn"]
    # and their parameters as deployed: the runner's URL, the inbox on, batching windows as polled
    parameters = {
        name: {item["ParameterKey"]: item["ParameterValue"] for item in stack["Parameters"]}
        for name, stack in stacks.items()
    }
    assert parameters["StatusCallbackHandler"]["PublicBaseUrl"] == pipeline.public_url
    assert parameters["StatusCallbackHandler"]["AuthTokenSecretName"] == ingest["AuthTokenSecretName"]
    errors = parameters["CheckForStatusCallbackErrors"]
    assert (errors["AlertsInbox"], errors["AlertSeverities"]) == ("Enabled", "info,warning,critical")
    # (the template's 5 s window is capped to the pollers' 1 s)
    assert errors["MaximumBatchingWindowInSeconds"] == "1"
    assert INBOX in {output["OutputKey"] for output in stacks["CheckForStatusCallbackErrors"]["Outputs"]}
    secret = aws("secretsmanager").get_secret_value(SecretId=ingest["AuthTokenSecretName"])
    assert json.loads(secret["SecretString"]) == {"AUTH_TOKEN": pipeline.token}


def test_the_banner_tells_a_person_how_to_use_it(pipeline: LocalPipeline) -> None:
    banner = pipeline.banner()

    assert f"{pipeline.api_base_url}/twilio\n" in banner
    assert f"{pipeline.api_base_url}/twilio-params?id=<id>&category=<category>" in banner
    assert f"export AWS_ENDPOINT_URL={pipeline.endpoint_url}" in banner
    assert pipeline.token not in banner  # a token the caller supplied is never printed
    assert "twilio-callbacks send" in banner


def test_an_error_callback_reaches_the_alerts_inbox_with_its_subject(
    sent: Sent, pipeline: LocalPipeline, aws: Callable[[str], Any]
) -> None:
    sqs = aws("sqs")
    inbox = pipeline.output(INBOX)

    def peek() -> list[dict[str, Any]]:
        # Visibility 0: reading leaves the messages for the next read.
        return list(
            sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages")
            or []
        )

    eventually(peek, "an alert in the alerts inbox")
    wait_until_settled(pipeline, aws)

    (message,) = peek()
    envelope = json.loads(message["Body"])
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == pipeline.output("AlertsTopicArn")
    assert "30003" in envelope["Subject"] and ERROR_SID in envelope["Subject"]
    assert ERROR_SID in envelope["Message"] and TO_NUMBER not in envelope["Message"]


def test_handler_output_lands_in_each_functions_log_group_framed_by_lambda(
    sent: Sent, pipeline: LocalPipeline
) -> None:
    accepted = sum(1 for code in sent.statuses.values() if code == 200)

    def ingested() -> list[dict[str, Any]] | None:
        lines = [json.loads(line) for line in log_messages(pipeline, "ValidatorLogGroupName", INGESTED)]
        return lines if sum(line["received"] for line in lines) >= accepted else None

    batches = eventually(ingested, "the validator's batch lines in its log group")
    assert pipeline.flush_logs()
    messages = log_messages(pipeline, "ValidatorLogGroupName")

    # Then every batch line says how the callbacks arrived (text bodies, decoded query values)
    assert {line["message"] for line in batches} == {INGESTED}
    assert sum(line["base64_bodies"] for line in batches) == sum(line["raw_query"] for line in batches) == 0
    # and each invocation is framed by Lambda's START/END/REPORT, its own lines carrying its request id
    starts = {line.split()[2] for line in messages if line.startswith("START RequestId: ")}
    ends = {line.split()[2] for line in messages if line.startswith("END RequestId: ")}
    reports = {line.split()[2] for line in messages if line.startswith("REPORT RequestId: ")}
    assert starts == ends == reports and len(starts) >= 1
    assert {line["function_request_id"] for line in batches} <= starts
    assert any(line.startswith('{"_aws"') for line in messages)  # EMF metrics go to the log too


def test_every_request_has_an_access_log_line(sent: Sent, pipeline: LocalPipeline) -> None:
    expected = {
        status: sum(1 for code in sent.statuses.values() if code == int(status)) for status in ("404", "500")
    }

    def lines() -> list[dict[str, Any]] | None:
        found = [json.loads(line) for line in log_messages(pipeline, "ApiAccessLogGroupName")]
        statuses = [line["status"] for line in found]
        return found if {status: statuses.count(status) for status in expected} == expected else None

    found = eventually(lines, "an access log line per refused request")

    assert expected["404"] == 2 and expected["500"] >= 1
    assert {line["route"] for line in found if line["status"] == "404"} == {"-"}
    assert {line["route"] for line in found if line["status"] == "200"} == {
        "POST /twilio",
        "POST /twilio-params",
    }
    assert {line["integrationError"] for line in found if line["status"] == "200"} == {"-"}
    # The oversized body SQS refused: the integration error says why
    assert all(line["integrationError"] != "-" for line in found if line["status"] == "500")
