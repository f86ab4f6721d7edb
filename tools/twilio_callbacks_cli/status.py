"""``status``: where everything is and how full it is, from the stacks' outputs.

The same read-only calls work against AWS and the local runner's emulator:
DescribeStacks for the outputs, GetQueueAttributes for queue depths and
ListObjectsV2 to count archived objects and, from the rejected-request store's
keys, the requests the validator refused in the last 24 hours.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from twilio_callbacks_cli import discovery as keys
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import Pipeline, QueueRef, discover
from twilio_callbacks_cli.errors import EXIT_OK, EXIT_UNAVAILABLE
from twilio_callbacks_cli.output import iso_ms, key_values, print_json, table
from twilio_callbacks_cli.rejected_store import HOUR_MS, RejectedStore, replay_command

# Counting stops here: a listing of millions of objects is an Athena question.
MAX_OBJECTS_COUNTED = 100_000
_DEPTH_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
REJECTED_WINDOW = "24h"
_REJECTED_WINDOW_MS = 24 * HOUR_MS


def queue_depth(sqs: Any, queue: QueueRef) -> dict[str, Any]:
    """Visible and in-flight message counts of one queue (None when unreadable)."""
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=_DEPTH_ATTRIBUTES)[
            "Attributes"
        ]
    except (ClientError, BotoCoreError) as error:
        return {"url": queue.url, "messages": None, "in_flight": None, "error": type(error).__name__}
    return {
        "url": queue.url,
        "messages": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def count_objects(
    s3: Any, bucket: str, prefix: str = "", limit: int = MAX_OBJECTS_COUNTED
) -> tuple[int | None, bool]:
    """Objects under the archive prefix, and whether counting stopped at the limit."""
    counted = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            counted += int(page.get("KeyCount", 0))
            if counted >= limit:
                return counted, True
    except (ClientError, BotoCoreError):
        return None, False
    return counted, False


def rejected_summary(pipeline: Pipeline, s3: Any, now_ms: int) -> dict[str, Any] | None:
    """Requests rejected in the last 24 h by reason, from the store's keys; None without a store."""
    if not pipeline.output(keys.REJECTED_BUCKET_NAME):
        return None
    since_ms = now_ms - _REJECTED_WINDOW_MS
    summary: dict[str, Any] = {"window": REJECTED_WINDOW, "since": iso_ms(since_ms)}
    try:
        counts = RejectedStore.of(pipeline, s3).counts(since_ms, now_ms)
    except (ClientError, BotoCoreError) as error:
        return {**summary, "total": None, "by_reason": {}, "error": type(error).__name__}
    largest = counts.most_common(1)
    return {
        **summary,
        "total": counts.total(),
        "by_reason": {reason.value: count for reason, count in counts.most_common()},
        "largest_reason_remedy": largest[0][0].remedy if largest else None,
        "replay_command": replay_command(REJECTED_WINDOW) if largest else None,
    }


def _unique_names(queues: Sequence[QueueRef]) -> dict[str, QueueRef]:
    names: dict[str, QueueRef] = {}
    clashing = {queue.name for queue in queues if sum(other.name == queue.name for other in queues) > 1}
    for queue in queues:
        names[f"{queue.stack}/{queue.name}" if queue.name in clashing else queue.name] = queue
    return names


def _inbox_depth(pipeline: Pipeline, target: AwsTarget) -> dict[str, Any] | None:
    """Alerts waiting in the errors stack's inbox (AlertsInbox=Enabled), else None."""
    inbox = next((queue for queue in pipeline.queues() if queue.is_inbox), None)
    return queue_depth(target.client("sqs"), inbox) if inbox else None


def collect_status(pipeline: Pipeline, target: AwsTarget) -> dict[str, Any]:
    """The status document: resource locations from outputs, then live counts."""
    output = pipeline.output
    queues = _unique_names(pipeline.work_queues())
    dead_letters = _unique_names(pipeline.dead_letter_queues())
    sqs = target.client("sqs") if queues or dead_letters else None
    bucket = output(keys.ARCHIVE_BUCKET_NAME)
    prefix = output(keys.ARCHIVE_PREFIX) or ""
    s3 = target.client("s3")
    objects, truncated = count_objects(s3, bucket, prefix) if bucket else (None, False)
    return {
        "stacks": {
            role: {"name": stack.name, "status": stack.status} for role, stack in pipeline.stacks.items()
        },
        "missing_stacks": list(pipeline.missing.values()),
        "api_url": output(keys.API_BASE_URL),
        "callback_url": output(keys.CALLBACK_URL),
        "callback_with_params_url": output(keys.CALLBACK_WITH_PARAMS_URL),
        "aws_endpoint_url": target.configured_endpoint_url,
        "region": target.region_name,
        "topic_arn": output(keys.TOPIC_ARN),
        "auth_token_secret_name": output(keys.AUTH_TOKEN_SECRET_NAME),
        "bucket": bucket,
        "glue_database": output(keys.GLUE_DATABASE_NAME),
        "glue_table": output(keys.GLUE_TABLE_NAME),
        "athena_workgroup": output(keys.ATHENA_WORKGROUP_NAME),
        "table": output(keys.STATUS_TABLE_NAME),
        "event_bus": output(keys.ERROR_EVENT_BUS_NAME),
        "event_bus_arn": output(keys.ERROR_EVENT_BUS_ARN),
        "alerts_topic_arn": output(keys.ALERTS_TOPIC_ARN),
        "number_flags_table": output(keys.NUMBER_FLAGS_TABLE_NAME),
        "queue_urls": {name: queue.url for name, queue in queues.items()},
        "dead_letter_queue_urls": [queue.url for queue in dead_letters.values()],
        "queue_depths": {name: queue_depth(sqs, queue) for name, queue in queues.items()},
        "dlq_depths": {name: queue_depth(sqs, queue) for name, queue in dead_letters.items()},
        "alerts_in_inbox": _inbox_depth(pipeline, target),
        "objects_archived": objects,
        "objects_archived_truncated": truncated,
        "rejected": rejected_summary(pipeline, s3, int(time.time() * 1000)),
    }


def render(status: dict[str, Any]) -> str:
    """The status as aligned text: stacks, where things are, then queue depths."""
    stacks = table(
        ["stack", "role", "status"],
        [[stack["name"], role, stack["status"]] for role, stack in status["stacks"].items()]
        + [[name, "-", "NOT DEPLOYED"] for name in status["missing_stacks"]],
    )
    where = key_values(
        [
            ("api url", status["api_url"]),
            ("callback url", status["callback_url"]),
            ("callback url (params)", status["callback_with_params_url"]),
            ("aws endpoint", status["aws_endpoint_url"] or "AWS"),
            ("region", status["region"]),
            ("topic", status["topic_arn"]),
            ("auth token secret", status["auth_token_secret_name"]),
            ("archive bucket", status["bucket"]),
            ("glue table", _joined(status["glue_database"], status["glue_table"])),
            ("athena workgroup", status["athena_workgroup"]),
            ("status table", status["table"]),
            ("error event bus", status["event_bus"]),
            ("alerts topic", status["alerts_topic_arn"]),
            ("number flags table", status["number_flags_table"]),
            ("objects archived", _objects(status)),
            ("alerts in the inbox", _inbox(status["alerts_in_inbox"])),
        ]
    )
    rows = [
        [name, kind, depth["messages"], depth["in_flight"], _queue_name(depth["url"])]
        for kind, depths in (("queue", status["queue_depths"]), ("dead-letter", status["dlq_depths"]))
        for name, depth in depths.items()
    ]
    sections = [stacks, where]
    if rows:
        sections.append(table(["queue", "kind", "messages", "in flight", "sqs name"], rows))
    if status["rejected"] is not None:
        sections.append(_rejected(status["rejected"]))
    return "\n\n".join(sections)


def _rejected(rejected: dict[str, Any]) -> str:
    heading = "requests rejected in the last 24 h"
    if rejected["total"] is None:
        return f"{heading}: unknown ({rejected['error']})"
    if not rejected["total"]:
        return f"{heading}: 0"
    reasons = ", ".join(f"{reason} {count}" for reason, count in rejected["by_reason"].items())
    largest = next(iter(rejected["by_reason"]))
    return "\n".join(
        [
            f"{heading}: {rejected['total']} ({reasons})",
            f"  {largest}: {rejected['largest_reason_remedy']}",
            f"  kept; once fixed: {rejected['replay_command']}",
        ]
    )


def _inbox(depth: dict[str, Any] | None) -> str:
    if depth is None:
        return "no inbox (deploy the errors stack with AlertsInbox=Enabled)"
    return f"{depth['messages'] + depth['in_flight']} (twilio-callbacks query alerts)"


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _joined(database: str | None, name: str | None) -> str | None:
    return f"{database}.{name}" if database and name else name


def _objects(status: dict[str, Any]) -> str | None:
    count = status["objects_archived"]
    if count is None:
        return None
    return f"{count}+" if status["objects_archived_truncated"] else str(count)


def register(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``status`` subcommand."""
    parser = subparsers.add_parser(
        "status",
        parents=list(parents),
        help="where everything is: URLs, resource names, queue depths, archived objects",
        description=(
            "Read the four stacks' outputs and show the API URL, topic, bucket, tables, event bus and every "
            "queue and dead-letter queue with its depth, and the requests the validator rejected in the last "
            "24 hours by reason, with the remedy of the largest and the replay command. Works against the "
            "local runner (AWS_ENDPOINT_URL) and AWS alike. Exits 3 when a stack is missing."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(command=command)


def command(args: argparse.Namespace, target: AwsTarget) -> int:
    """Run ``status``; a missing stack is reported and makes the exit code non-zero."""
    pipeline = discover(target, args.stack_names)
    status = collect_status(pipeline, target)
    if args.json:
        print_json(status)
    else:
        print(render(status))
    if pipeline.missing:
        names = ", ".join(pipeline.missing.values())
        print(f"twilio-callbacks: stack(s) not deployed: {names}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK
