"""``redrive``: send dead-lettered messages back where they failed, once the cause is fixed.

A DLQ that catches a queue's failures goes back to that queue: the one SQS
names as its source (ListDeadLetterSourceQueues), else the one the outputs
pair with it (``<Name>DeadLetterQueueUrl`` ↔ ``<Name>QueueUrl``). On AWS that
is SQS's own StartMessageMoveTask; where it is not offered (the local
emulator, or a queue SQS does not see as a DLQ) messages are moved a batch at
a time: receive, send to the source with body and message attributes intact,
and delete from the DLQ only what was sent.

A DLQ that catches something else's failures has no source queue, so its
messages are replayed to what failed, read from the message itself: a Lambda
on-failure record is invoked again with its original payload, and an event
EventBridge could not deliver goes back to its Lambda target (or, for other
targets, back onto its bus, where consumers drop what they already handled).
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import DEFAULT_STACK_NAMES, Pipeline, QueueRef, discover
from twilio_callbacks_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from twilio_callbacks_cli.output import print_json, table
from twilio_callbacks_cli.status import queue_depth

MOVE_TASK = "move-task"
RECEIVE_SEND_DELETE = "receive-send-delete"
REPLAY = "replay"
FOUND_BY_SQS = "sqs redrive policy"
FOUND_BY_OUTPUTS = "stack outputs"
_BATCH = 10
# Long enough to send and delete a batch; a message not deleted reappears in the DLQ after it.
_VISIBILITY_SECONDS = 60
# Two empty long polls in a row mean the queue is drained (one can miss a sampled server).
_EMPTY_POLLS_TO_STOP = 2
_TASK_DONE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
# Attributes EventBridge sets on a message it dead-letters.
_RULE_ARN = "RULE_ARN"
_TARGET_ARN = "TARGET_ARN"

Message = dict[str, Any]
# Delivers a batch of DLQ messages; returns the indexes delivered.
Deliver = Callable[[list[Message]], set[int]]


@dataclass(frozen=True)
class Source:
    """Where a DLQ's messages go back to, and how that was found."""

    url: str
    found_by: str


@dataclass
class RedriveResult:
    """What happened to one dead-letter queue."""

    queue: str
    url: str
    depth: int | None
    source_url: str | None = None
    found_by: str | None = None
    method: str | None = None
    moved: int = 0
    failed: int = 0
    note: str | None = None
    task_handle: str | None = None

    @property
    def complete(self) -> bool:
        return self.failed == 0 and not (self.note or "").startswith((_UNREADABLE, _MOVE_TASK_FAILED))

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "url": self.url,
            "depth": self.depth,
            "source_url": self.source_url,
            "source_found_by": self.found_by,
            "method": self.method,
            "moved": self.moved,
            "failed": self.failed,
            "note": self.note,
            "task_handle": self.task_handle,
        }


_UNREADABLE = "queue depth unreadable"
_MOVE_TASK_FAILED = "move task did not complete"


def find_source(sqs: Any, pipeline: Pipeline, dead_letter: QueueRef) -> Source | None:
    """The DLQ's source queue: SQS's redrive configuration first, then the outputs pairing."""
    try:
        urls = sqs.list_dead_letter_source_queues(QueueUrl=dead_letter.url).get("queueUrls", [])
    except (ClientError, BotoCoreError):
        urls = []
    if len(urls) == 1:
        return Source(urls[0], FOUND_BY_SQS)
    paired = pipeline.paired_source(dead_letter)
    if paired is not None:
        return Source(paired.url, FOUND_BY_OUTPUTS)
    return None


def _queue_arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def start_move_task(sqs: Any, dead_letter_url: str, source_url: str) -> str | None:
    """Start SQS's own move; None when the endpoint does not offer it."""
    try:
        response = sqs.start_message_move_task(
            SourceArn=_queue_arn(sqs, dead_letter_url), DestinationArn=_queue_arn(sqs, source_url)
        )
    except (ClientError, NotImplementedError):
        return None
    return str(response["TaskHandle"])


def wait_for_move_task(
    sqs: Any, dead_letter_url: str, timeout: float = 300.0, sleep: Callable[[float], None] = time.sleep
) -> tuple[str, int]:
    """Poll the move task until it ends; its status and how many messages it moved."""
    source_arn = _queue_arn(sqs, dead_letter_url)
    deadline = time.monotonic() + timeout
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1).get("Results", [])
        status = str(tasks[0].get("Status")) if tasks else "COMPLETED"
        moved = int(tasks[0].get("ApproximateNumberOfMessagesMoved", 0)) if tasks else 0
        if status in _TASK_DONE or time.monotonic() > deadline:
            return status, moved
        sleep(2.0)


# --- draining a DLQ ------------------------------------------------------------------------


def drain(sqs: Any, dead_letter_url: str, limit: int, deliver: Deliver) -> tuple[int, int]:
    """Hand up to ``limit`` messages to ``deliver`` and delete those it delivered; (moved, failed).

    What was not delivered is made visible again at once and stays in the DLQ;
    a batch with nothing delivered stops the run rather than spin on it.
    """
    moved = failed = empty_polls = 0
    while moved + failed < limit and empty_polls < _EMPTY_POLLS_TO_STOP:
        messages = sqs.receive_message(
            QueueUrl=dead_letter_url,
            MaxNumberOfMessages=min(_BATCH, limit - moved - failed),
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
            VisibilityTimeout=_VISIBILITY_SECONDS,
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not messages:
            empty_polls += 1
            continue
        empty_polls = 0
        delivered = deliver(messages)
        kept = [message for index, message in enumerate(messages) if index not in delivered]
        failed += len(kept)
        if kept:
            sqs.change_message_visibility_batch(
                QueueUrl=dead_letter_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                    for index, message in enumerate(kept)
                ],
            )
        if delivered:
            deleted = sqs.delete_message_batch(
                QueueUrl=dead_letter_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": messages[index]["ReceiptHandle"]}
                    for index in delivered
                ],
            )
            # Delivered but not deleted: it is redriven again later, and consumers drop duplicates.
            moved += len(delivered) - len(deleted.get("Failed", []))
        if not delivered:
            break
    return moved, failed


def resendable_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Message attributes as SendMessage takes them: data type and the one value set."""
    cleaned: dict[str, Any] = {}
    for name, attribute in attributes.items():
        value = {"DataType": attribute["DataType"]}
        for field_name in ("StringValue", "BinaryValue"):
            if field_name in attribute:
                value[field_name] = attribute[field_name]
        cleaned[name] = value
    return cleaned


def send_to_queue(sqs: Any, queue_url: str) -> Deliver:
    """Deliver messages by sending them to a queue, body and attributes intact."""
    fifo = queue_url.endswith(".fifo")

    def deliver(messages: list[Message]) -> set[int]:
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = resendable_attributes(message["MessageAttributes"])
            if fifo:
                system = message.get("Attributes", {})
                entry["MessageGroupId"] = system.get("MessageGroupId", "redrive")
                entry["MessageDeduplicationId"] = system.get("MessageDeduplicationId", message["MessageId"])
            entries.append(entry)
        try:
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError):
            return set()
        return {int(entry["Id"]) for entry in response.get("Successful", [])}

    return deliver


# --- replaying what a DLQ without a source queue holds --------------------------------------


def _string_attribute(message: Message, name: str) -> str | None:
    attribute = (message.get("MessageAttributes") or {}).get(name) or {}
    value = attribute.get("StringValue")
    return str(value) if value else None


def _is_function_arn(arn: str | None) -> bool:
    return bool(arn) and ":lambda:" in str(arn) and ":function:" in str(arn)


def _bus_of_rule(rule_arn: str | None) -> str:
    # arn:aws:events:<region>:<account>:rule/<bus>/<rule>; the default bus has no <bus> part.
    resource = (rule_arn or "").split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) == 3 else "default"


class NotReplayableError(ValueError):
    """A dead-lettered message that names no function or bus to replay it to."""


def replay_one(lambda_client: Any, events_client: Any, message: Message) -> None:
    """Replay one dead-lettered message to what failed on it; raises when that is not possible."""
    try:
        body = json.loads(message["Body"])
    except ValueError as error:
        raise NotReplayableError("body is not JSON") from error
    if not isinstance(body, dict):
        raise NotReplayableError("body is not a JSON object")
    context = body.get("requestContext")
    if isinstance(context, dict) and "requestPayload" in body and context.get("functionArn"):
        # A Lambda on-failure record: invoke the function again with the event it failed on.
        lambda_client.invoke(
            FunctionName=context["functionArn"],
            InvocationType="Event",
            Payload=json.dumps(body["requestPayload"]).encode("utf-8"),
        )
        return
    if not {"source", "detail-type", "detail"} <= body.keys():
        raise NotReplayableError("neither a Lambda on-failure record nor an EventBridge event")
    target = _string_attribute(message, _TARGET_ARN)
    if _is_function_arn(target):
        # EventBridge hands a Lambda target the event itself.
        lambda_client.invoke(
            FunctionName=target, InvocationType="Event", Payload=message["Body"].encode("utf-8")
        )
        return
    entry = {
        "EventBusName": _bus_of_rule(_string_attribute(message, _RULE_ARN)),
        "Source": body["source"],
        "DetailType": body["detail-type"],
        "Detail": json.dumps(body["detail"], ensure_ascii=False),
        "Resources": list(body.get("resources") or []),
    }
    if body.get("time"):
        entry["Time"] = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00"))
    response = events_client.put_events(Entries=[entry])
    if response.get("FailedEntryCount"):
        failure = response["Entries"][0]
        raise NotReplayableError(f"{failure.get('ErrorCode')}: {failure.get('ErrorMessage')}")


class Replayer:
    """Delivers messages by replaying each to the function or bus it failed on; keeps why any could not be."""

    def __init__(self, lambda_client: Any, events_client: Any) -> None:
        self._lambda = lambda_client
        self._events = events_client
        self.reasons: Counter[str] = Counter()

    def __call__(self, messages: list[Message]) -> set[int]:
        delivered = set()
        for index, message in enumerate(messages):
            try:
                replay_one(self._lambda, self._events, message)
            except NotReplayableError as error:
                self.reasons[str(error)] += 1
            except ClientError as error:
                details = error.response.get("Error", {})
                self.reasons[f"{details.get('Code')}: {details.get('Message')}"] += 1
            except BotoCoreError as error:
                self.reasons[type(error).__name__] += 1
            else:
                delivered.add(index)
        return delivered


# --- one DLQ --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedriveOptions:
    dry_run: bool = False
    max_messages: int | None = None
    use_move_task: bool = True


def redrive(
    target: AwsTarget, sqs: Any, pipeline: Pipeline, dead_letter: QueueRef, options: RedriveOptions
) -> RedriveResult:
    """Redrive one DLQ (or, dry, say what would happen)."""
    depth = queue_depth(sqs, dead_letter)["messages"]
    result = RedriveResult(dead_letter.name, dead_letter.url, depth)
    source = find_source(sqs, pipeline, dead_letter)
    if source is not None:
        result.source_url, result.found_by = source.url, source.found_by
    result.method = RECEIVE_SEND_DELETE if source is not None else REPLAY
    if depth is None:
        result.note = _UNREADABLE
        return result
    if options.dry_run or depth == 0:
        result.note = "dry run" if options.dry_run else "empty"
        if source is None:
            result.note += "; no source queue: messages are replayed to the function or bus that failed"
        return result
    limit = options.max_messages if options.max_messages is not None else depth
    if source is None:
        replayer = Replayer(target.client("lambda"), target.client("events"))
        result.moved, result.failed = drain(sqs, dead_letter.url, limit, replayer)
        if replayer.reasons:
            reason, _ = replayer.reasons.most_common(1)[0]
            result.note = f"left in the DLQ: {reason}"
        return result
    if options.use_move_task and options.max_messages is None and source.found_by == FOUND_BY_SQS:
        handle = start_move_task(sqs, dead_letter.url, source.url)
        if handle is not None:
            result.method, result.task_handle = MOVE_TASK, handle
            status, result.moved = wait_for_move_task(sqs, dead_letter.url)
            if status != "COMPLETED":
                result.note = f"{_MOVE_TASK_FAILED} ({status})"
                result.failed = max(depth - result.moved, 0)
            return result
    result.moved, result.failed = drain(sqs, dead_letter.url, limit, send_to_queue(sqs, source.url))
    return result


def select(pipeline: Pipeline, stack: str | None, queue: str | None, every: bool) -> list[QueueRef]:
    """The dead-letter queues the options name (none when nothing is named)."""
    dead_letters = pipeline.dead_letter_queues()
    if stack:
        names = {DEFAULT_STACK_NAMES.get(stack, stack)}
        names |= {deployed.name for role, deployed in pipeline.stacks.items() if role == stack}
        dead_letters = [dlq for dlq in dead_letters if dlq.stack in names]
    if queue:
        wanted = queue.lower()
        dead_letters = [
            dlq
            for dlq in dead_letters
            if wanted
            in {
                dlq.name.lower(),
                dlq.base_name.lower(),
                dlq.output_key.lower(),
                dlq.queue_name.lower(),
                dlq.url.lower(),
            }
        ]
    if not dead_letters and (stack or queue):
        known = ", ".join(f"{dlq.base_name} ({dlq.stack})" for dlq in pipeline.dead_letter_queues()) or "none"
        raise UsageError(f"no dead-letter queue matches; known: {known}")
    if not (stack or queue or every):
        return []
    return dead_letters


# --- command --------------------------------------------------------------------------------


def register(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``redrive`` subcommand."""
    parser = subparsers.add_parser(
        "redrive",
        parents=list(parents),
        help="send dead-lettered messages back to their source queues (or replay them)",
        description=textwrap.fill(
            "Once the cause of failures is fixed, move a DLQ's messages back to its source queue, body and "
            "message attributes intact. A DLQ without a source queue (a Lambda's on-failure destination, "
            "an EventBridge target's DLQ) is replayed to the function or bus that failed. Without --queue, "
            "--stack or --all it lists the dead-letter queues."
        ),
        epilog=(
            "examples:\n"
            "  twilio-callbacks redrive                      # list DLQs, depths and sources\n"
            "  twilio-callbacks redrive --queue Ingest --dry-run\n"
            "  twilio-callbacks redrive --stack dynamo\n"
            "  twilio-callbacks redrive --all"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stack", help="only this stack's DLQs (ingest, s3, dynamo, errors, or a stack name)"
    )
    parser.add_argument("--queue", help="one DLQ by name (e.g. Ingest), output key, queue name or URL")
    parser.add_argument("--all", action="store_true", dest="every", help="every DLQ of every stack")
    parser.add_argument("--dry-run", action="store_true", help="show depths and where messages would go")
    parser.add_argument(
        "--max-messages", type=int, metavar="N", help="move at most N messages per DLQ (default: all present)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(command=command)


def _print(results: list[RedriveResult], as_json: bool) -> None:
    if as_json:
        print_json([result.to_dict() for result in results])
        return
    rows = [
        [
            r.queue,
            r.depth,
            r.source_url.rsplit("/", 1)[-1] if r.source_url else None,
            r.method,
            r.moved,
            r.failed,
            r.note,
        ]
        for r in results
    ]
    print(table(["dead-letter queue", "depth", "source queue", "method", "moved", "failed", "note"], rows))


def command(args: argparse.Namespace, target: AwsTarget) -> int:
    """Run ``redrive``; exit 1 when any message could not be moved."""
    if args.max_messages is not None and args.max_messages < 1:
        raise UsageError("--max-messages must be at least 1")
    pipeline = discover(target, args.stack_names)
    sqs = target.client("sqs")
    chosen = select(pipeline, args.stack, args.queue, args.every)
    if not chosen:
        listing = [
            redrive(target, sqs, pipeline, dlq, RedriveOptions(dry_run=True))
            for dlq in pipeline.dead_letter_queues()
        ]
        _print(listing, args.json)
        if not args.json:
            print("\nchoose what to redrive: --queue NAME, --stack STACK or --all (add --dry-run to preview)")
        return EXIT_USAGE
    options = RedriveOptions(
        dry_run=args.dry_run,
        max_messages=args.max_messages,
        # The emulator has no move task; SQS on AWS does it server-side, faster and resumable.
        use_move_task=target.configured_endpoint_url is None,
    )
    results = [redrive(target, sqs, pipeline, dlq, options) for dlq in chosen]
    _print(results, args.json)
    return EXIT_OK if all(result.complete for result in results) else EXIT_FAILED
