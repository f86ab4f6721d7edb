"""Measure the local pipeline: time to ready, and time from a POST to each sink.

Run: ``.venv/bin/python -m tests.e2e.latency [rounds]``. Starts the pipeline on
free ports, sends one signed error callback per round (it reaches every
sink: S3, DynamoDB, the number-flags table and the alerts topic) and prints
the time each sink took to show it, measured with ``time.monotonic``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import requests

from aws_emulator import LocalPipeline
from aws_emulator.aws import Clients
from tests.support.signing import SIGNATURE_HEADER, TO_NUMBER, form_body, message_status_params, sign

DEADLINE_SECONDS = 30.0


def _client(pipeline: LocalPipeline, service: str) -> Any:
    return Clients(pipeline.endpoint_url, pipeline.region).client(service)


def _probes(
    pipeline: LocalPipeline, sid: str, objects_before: int, alerts_url: str
) -> dict[str, Callable[[], bool]]:
    """One check per sink: has this round's callback arrived there?"""
    s3, dynamodb, sqs = (_client(pipeline, name) for name in ("s3", "dynamodb", "sqs"))
    bucket = pipeline.output("ArchiveBucketName")

    def archived() -> bool:
        return int(s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)) > objects_before

    def stored() -> bool:
        key = {"sid": {"S": sid}, "sk": {"S": "CURRENT"}}
        return "Item" in dynamodb.get_item(TableName=pipeline.output("StatusTableName"), Key=key)

    def flagged() -> bool:
        key = {"phone_number": {"S": TO_NUMBER}, "error_code": {"S": "30003"}}
        item = dynamodb.get_item(TableName=pipeline.output("NumberFlagsTableName"), Key=key).get("Item", {})
        return bool(item.get("last_sid", {}).get("S") == sid)

    def alerted() -> bool:
        messages = sqs.receive_message(QueueUrl=alerts_url, WaitTimeSeconds=0).get("Messages") or []
        for message in messages:
            sqs.delete_message(QueueUrl=alerts_url, ReceiptHandle=message["ReceiptHandle"])
        return any(sid in message["Body"] for message in messages)

    return {"s3": archived, "dynamodb": stored, "flags": flagged, "alerts": alerted}


def measure(rounds: int) -> dict[str, list[float]]:
    """Seconds from POST to visible, per sink, for each round."""
    started = time.monotonic()
    with LocalPipeline(aws_port=0, http_port=0) as pipeline:
        ready = time.monotonic() - started
        s3, sqs, sns = (_client(pipeline, name) for name in ("s3", "sqs", "sns"))
        alerts_url = sqs.create_queue(QueueName="latency-alerts")["QueueUrl"]
        alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=pipeline.output("AlertsTopicArn"), Protocol="sqs", Endpoint=alerts_arn)
        url = pipeline.output("CallbackUrl") or ""
        results: dict[str, list[float]] = {
            "ready": [ready],
            "http": [],
            "s3": [],
            "dynamodb": [],
            "flags": [],
            "alerts": [],
        }
        for round_number in range(rounds):
            sid = f"SM{round_number:032x}"
            params = message_status_params("undelivered", MessageSid=sid, SmsSid=sid, ErrorCode="30003")
            objects_before = s3.list_objects_v2(Bucket=pipeline.output("ArchiveBucketName")).get(
                "KeyCount", 0
            )
            sent = time.monotonic()
            response = requests.post(
                url,
                data=form_body(params),
                headers={
                    SIGNATURE_HEADER: sign(url, params, pipeline.token),
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                timeout=30,
            )
            response.raise_for_status()
            results["http"].append(time.monotonic() - sent)
            probes = _probes(pipeline, sid, objects_before, alerts_url)
            pending = dict(probes)
            while pending and time.monotonic() - sent < DEADLINE_SECONDS:
                for sink, probe in list(pending.items()):
                    if probe():
                        results[sink].append(time.monotonic() - sent)
                        del pending[sink]
                time.sleep(0.02)
            if pending:
                raise SystemExit(
                    f"round {round_number}: not landed within {DEADLINE_SECONDS} s: {sorted(pending)}"
                )
    return results


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    results = measure(rounds)
    for name, values in results.items():
        print(
            f"{name:9} n={len(values)} median={statistics.median(values):.2f}s "
            f"min={min(values):.2f}s max={max(values):.2f}s"
        )


if __name__ == "__main__":
    main()
