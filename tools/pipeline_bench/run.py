"""One benchmark run: the workload through the local pipeline, measured, then checked.

Order: build the seeded workload; start `LocalPipeline` (provisioning is not
counted); attach the recorder to its traffic hook and function host; send the
callbacks on schedule from a few sender threads, holding back while too many
are in flight; wait until every callback is visible in every sink it belongs
to; snapshot the counts; only then read the sinks back to check them (those
reads carry `BENCH_USER_AGENT` and are not counted); stop the pipeline. After
it stopped: CPU time of the validator's domain code over the run's own
forwarded requests, and each handler's cold import time in a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from aws_emulator import pollers
from aws_emulator.aws import patched_environ
from aws_emulator.provision import FunctionSpec
from aws_emulator.runner import AUTH_TOKEN_SECRET_PARAMETER, LocalPipeline, default_stacks_dir
from pipeline_bench.measure import (
    BENCH_USER_AGENT,
    LogCapture,
    Recorder,
    Snapshot,
    TableSpec,
    Topology,
)
from pipeline_bench.stacks import StackFacts, all_stack_facts
from pipeline_bench.workload import (
    DEFAULT_CALLBACKS,
    DEFAULT_ERROR_RATE,
    DEFAULT_RATE,
    DEFAULT_SEED,
    Key,
    ScheduledCallback,
    Workload,
    build_workload,
)
from pipeline_harness.scenarios import sign
from pipeline_harness.sender import HttpSender
from status_callbacks.adapters.dynamodb import current_of
from status_callbacks.domain.forwarded import parse_forwarded_request
from status_callbacks.domain.lifecycle import lifecycle_position
from status_callbacks.domain.record import parse_form_body
from status_callbacks.domain.signature import matching_url, urls_for_root
from status_callbacks.domain.tokens import AuthTokens
from status_callbacks.domain.validation import Accepted, signed_url_root, validate_callback

BENCH_TOKEN = "bench-auth-token-not-a-secret"  # noqa: S105 - a fixed local token, signed and checked locally
SINKS = ("s3", "dynamodb", "error_bus", "alerts", "flags")
# How often idle local pollers look again inside a batching window (the runner's default is 0.05 s).
POLL_IDLE_SECONDS = 0.25
# Variables a Lambda function would not inherit from this shell (pytest sets some of them).
_NOT_IN_LAMBDA = (
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_DEV",
    "POWERTOOLS_DEBUG",
    "LOG_LEVEL",
    "AWS_LAMBDA_LOG_LEVEL",
)
_SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class BenchOptions:
    """What to run."""

    callbacks: int = DEFAULT_CALLBACKS
    rate: float = DEFAULT_RATE
    seed: int = DEFAULT_SEED
    error_rate: float = DEFAULT_ERROR_RATE
    senders: int = 8
    max_in_flight: int = 200
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    max_batching_window: float = pollers.MAX_BATCHING_WINDOW_SECONDS
    land_timeout: float = 120.0
    import_repeats: int = 2
    validator_repeats: int = 2
    stacks_dir: Path | None = None


@dataclass(frozen=True)
class Sent:
    """One HTTP request the benchmark made, acting as Twilio."""

    key: Key
    attempt: int
    sent_at: float
    latency: float
    status: int | None


@dataclass
class BenchRun:
    """Everything one run measured, before it is turned into figures."""

    options: BenchOptions
    workload: Workload
    functions: dict[str, FunctionSpec]
    facts: dict[str, StackFacts]
    event_sources: dict[str, tuple[int, float]]
    snapshot: Snapshot
    traffic_totals: dict[str, dict[str, int]]
    sent: list[Sent]
    expected: dict[str, int]
    first_send: float
    last_send: float
    verification: dict[str, Any]
    pipeline_start_seconds: float
    validator: ValidatorTiming
    cold_import_ms: dict[str, float]
    wall_seconds: float = 0.0


Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


# --- the local emulator, made quick enough ----------------------------------------------------


@contextlib.contextmanager
def emulator_speedups() -> Iterator[None]:
    """Make the local emulator cheaper per request, without changing what the pipeline does.

    The benchmark needs thousands of callbacks through one Python process; the
    emulator, not our code, is what limits it. Three patches, undone on exit:

    - idle pollers look again every 0.25 s inside a batching window instead of
      0.05 s: the same batches from fewer empty receives (those are the
      runner's, not Lambda's, and were most of the benchmark's CPU);
    - moto's SQS reads the clock through a datetime round trip, once per
      message per queue scan (every send and receive scans the queue): it
      gets ``time.time()``, the same epoch value;
    - moto's SQS checks each received message's retention by computing all
      of the queue's attributes; it reads the one attribute instead.
    """
    from moto.sqs import models as sqs_models  # noqa: PLC0415 - moto is imported only when benchmarking

    original_seconds = sqs_models.unix_time
    original_millis = sqs_models.unix_time_millis

    def unix_time(dt: Any = None) -> float:
        return float(original_seconds(dt)) if dt is not None else time.time()

    def unix_time_millis(dt: Any = None) -> float:
        return float(original_millis(dt)) if dt is not None else time.time() * 1000

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > time.time())

    patches: list[tuple[Any, str, Any]] = [
        (pollers, "_IDLE_SLEEP_SECONDS", POLL_IDLE_SECONDS),
        (sqs_models, "unix_time", unix_time),
        (sqs_models, "unix_time_millis", unix_time_millis),
    ]
    if hasattr(sqs_models.SQSBackend, "is_message_valid_based_on_retention_period"):
        patches.append((sqs_models.SQSBackend, "is_message_valid_based_on_retention_period", retained))
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@contextlib.contextmanager
def captured_stdout(capture: LogCapture) -> Iterator[None]:
    saved = sys.stdout
    sys.stdout = capture
    try:
        yield
    finally:
        sys.stdout = saved


# --- wiring -----------------------------------------------------------------------------------


def topology_of(pipeline: LocalPipeline, facts: Mapping[str, StackFacts]) -> Topology:
    """Physical names of the stacks' resources, and the roles the recorder needs."""
    deployment = pipeline.deployment
    assert deployment is not None
    queues, topics, tables, buckets, buses = {}, {}, {}, {}, {}
    for stack in deployment.stacks:
        for logical_id, resource in stack.resources.items():
            ref = str(resource.ref)
            if resource.type == "AWS::SQS::Queue":
                queues[ref.rsplit("/", 1)[-1]] = (stack.name, logical_id)
            elif resource.type == "AWS::SNS::Topic":
                topics[ref] = (stack.name, logical_id)
            elif resource.type == "AWS::S3::Bucket":
                buckets[ref] = (stack.name, logical_id)
            elif resource.type == "AWS::Events::EventBus":
                buses[ref.rsplit("/", 1)[-1]] = (stack.name, logical_id)
            elif resource.type == "AWS::DynamoDB::Table":
                table = facts[stack.name].tables.get(logical_id) if stack.name in facts else None
                tables[ref] = TableSpec(
                    (stack.name, logical_id), table.keys if table else (), table.indexes if table else ()
                )
    subscribed = frozenset(queue for stack in facts.values() for queue in stack.subscribed_queues)
    return Topology(
        queues=queues,
        topics=topics,
        tables=tables,
        buckets=buckets,
        buses=buses,
        # The auth token secret is created outside the stacks; the ingest stack names it.
        secrets={
            str(stack.parameters[AUTH_TOKEN_SECRET_PARAMETER]): (stack.name, "AuthTokenSecret")
            for stack in deployment.stacks
            if AUTH_TOKEN_SECRET_PARAMETER in stack.parameters
        },
        functions={function.name: function for function in deployment.functions},
        subscribed_queues=subscribed,
        ingest_queue=str(pipeline.output("IngestQueueUrl") or "").rsplit("/", 1)[-1],
        status_table=str(pipeline.output("StatusTableName") or ""),
        alerts_topic=str(pipeline.output("AlertsTopicArn") or ""),
        archiver=str(pipeline.output("ArchiverFunctionName") or ""),
        flagger=str(pipeline.output("FlaggerFunctionName") or ""),
    )


def _bench_client(pipeline: LocalPipeline, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=pipeline.endpoint_url,
        region_name=pipeline.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - the emulator's placeholder credentials
        config=Config(user_agent_extra=BENCH_USER_AGENT),
    )


# --- sending ----------------------------------------------------------------------------------

# The sinks the sender watches, by the function whose batches fill them.
_SINK_FUNCTIONS = {"s3": "ArchiverFunction", "dynamodb": "WriterFunction"}


def held_by_sinks(pipeline: LocalPipeline, options: BenchOptions) -> dict[str, int]:
    """Each watched sink's batching allowance, from its event source as deployed."""
    deployment = pipeline.deployment
    held: dict[str, int] = {}
    if deployment is None:
        return held
    for spec in deployment.event_sources:
        consumer = deployment.function(spec.function)
        for sink, function in _SINK_FUNCTIONS.items():
            if consumer is not None and consumer.logical_id == function:
                held[sink] = batching_allowance(spec.batch_size, spec.batching_window, options)
    return held


def batching_allowance(batch_size: int, window: float, options: BenchOptions) -> int:
    """Callbacks a sink's event source may hold on purpose while it fills a batch.

    With the templates' windows honoured, the archive holds up to a minute of
    callbacks before it writes: those are not a backlog, so the sender does not
    wait for them (half as much again for arrivals bunched by the schedule).
    """
    held = options.rate * min(window, options.max_batching_window) * 1.5
    return min(batch_size, math.ceil(held))


def send_workload(
    workload: Workload,
    *,
    base_url: str,
    token: str,
    recorder: Recorder,
    options: BenchOptions,
    progress: Progress = _quiet,
    held: Mapping[str, int] | None = None,
) -> list[Sent]:
    """Send every callback at its scheduled time; pause the schedule while too many are in flight.

    In flight means sent but not yet stored, less what a sink's batching window
    holds on purpose (``held``, by sink).
    """
    allowance = dict(held or {})
    http = HttpSender()
    ready: queue.Queue[ScheduledCallback | None] = queue.Queue()
    sent: list[Sent] = []
    lock = threading.Lock()

    def sender() -> None:
        while (scheduled := ready.get()) is not None:
            request = sign(scheduled.callback, base_url, token)
            started = time.monotonic()
            outcome = http.send(request)
            with lock:
                sent.append(
                    Sent(scheduled.key, scheduled.callback.attempt, started, outcome.latency, outcome.status)
                )

    workers = [
        threading.Thread(target=sender, name=f"bench-send-{n}", daemon=True) for n in range(options.senders)
    ]
    for worker in workers:
        worker.start()
    start = time.monotonic()
    slip = 0.0
    dispatched: set[Key] = set()
    next_report = start + 10
    for scheduled in workload.callbacks:
        while True:
            now = time.monotonic()
            landed = min(recorder.landed_count("s3"), recorder.landed_count("dynamodb"))
            backlog = max(
                len(dispatched) - recorder.landed_count(sink) - allowance.get(sink, 0)
                for sink in ("s3", "dynamodb")
            )
            if backlog > options.max_in_flight:
                # The schedule waits with the sender, so no burst follows the pause.
                time.sleep(0.05)
                slip += time.monotonic() - now
                continue
            due = start + scheduled.at + slip
            if now >= due:
                break
            time.sleep(min(due - now, 0.05))
        dispatched.add(scheduled.key)
        ready.put(scheduled)
        if time.monotonic() >= next_report:
            progress(f"sent {len(dispatched)}/{len(workload.keys())} callbacks, {landed} landed everywhere")
            next_report += 10
    for _ in workers:
        ready.put(None)
    for worker in workers:
        worker.join()
    return sent


def expected_landings(workload: Workload) -> dict[str, int]:
    keys = len(workload.keys())
    errors = len(workload.error_keys())
    return {
        "s3": keys,
        "dynamodb": keys,
        "error_bus": errors,
        "alerts": errors,
        "flags": len(workload.flag_keys()),
    }


def wait_until_landed(
    recorder: Recorder, expected: Mapping[str, int], timeout: float, progress: Progress = _quiet
) -> bool:
    """True once every sink holds every callback it should; False at the timeout."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 10
    while time.monotonic() < deadline:
        missing = {sink: count - recorder.landed_count(sink) for sink, count in expected.items()}
        if all(gap <= 0 for gap in missing.values()):
            return True
        if time.monotonic() >= next_report:
            progress(f"waiting for sinks: {', '.join(f'{s} {g}' for s, g in missing.items() if g > 0)} to go")
            next_report += 10
        time.sleep(0.1)
    return False


# --- checks after the run (not counted) ---------------------------------------------------


def _furthest_statuses(workload: Workload) -> dict[str, str]:
    best: dict[str, tuple[int, str]] = {}
    for scheduled in workload.callbacks:
        callback = scheduled.callback
        position = lifecycle_position(callback.product.value, callback.status, callback.form)
        if callback.sid not in best or position > best[callback.sid][0]:
            best[callback.sid] = (position, callback.status)
    return {sid: status for sid, (_, status) in best.items()}


def verify_sinks(pipeline: LocalPipeline, workload: Workload, sample: int = 25) -> dict[str, Any]:
    """Read the sinks back: every callback archived, a sample's current status right, no dead letters."""
    s3, dynamodb, sqs = (_bench_client(pipeline, name) for name in ("s3", "dynamodb", "sqs"))
    bucket = str(pipeline.output("ArchiveBucketName"))
    archived: set[Key] = set()
    objects = records = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            objects += 1
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())
            for line in body.decode("utf-8").split("\n"):
                if not line:
                    continue
                record = json.loads(line)
                records += 1
                archived.add((str(record.get("sid")), str(record.get("status"))))
    furthest = _furthest_statuses(workload)
    table = str(pipeline.output("StatusTableName"))
    checked = right = 0
    for sid in sorted(furthest)[:sample]:
        current = current_of(dynamodb, table, sid)
        checked += 1
        right += bool(current and current.get("status") == furthest[sid])
    dead_letters = {}
    deployment = pipeline.deployment
    assert deployment is not None
    for stack in deployment.stacks:
        for key, (url, _, _) in stack.outputs.items():
            if key.endswith("DeadLetterQueueUrl"):
                attributes = sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
                dead_letters[key] = int(attributes["ApproximateNumberOfMessages"])
    return {
        "archive_objects": objects,
        "archived_records": records,
        "archived_distinct_callbacks": len(archived),
        "all_callbacks_archived": archived >= workload.keys(),
        "current_status_checked": checked,
        "current_status_right": right,
        "dead_letters": dead_letters,
    }


# --- after the pipeline stopped ---------------------------------------------------------------


@dataclass(frozen=True)
class ValidatorTiming:
    """The validator's domain code over the run's own forwarded requests."""

    us_per_record: float
    records: int
    valid: int
    candidate_urls_per_record: float
    urls_tried_per_valid_record: float


def validator_cpu(
    messages: list[tuple[str, dict[str, Any]]], token: str, public_base_url: str | None, repeats: int
) -> ValidatorTiming:
    """CPU µs per record of signature validation plus record serialisation (no AWS calls).

    The best of ``repeats`` passes, timed with ``time.process_time`` once the
    pipeline has stopped (nothing else runs in the process). A second, untimed
    pass counts how many candidate URLs each record has and which one matched.
    """
    if not messages:
        return ValidatorTiming(0.0, 0, 0, 0.0, 0.0)
    tokens = AuthTokens.from_secret({"AUTH_TOKEN": token})
    received_at = int(time.time() * 1000)
    best = float("inf")
    valid = 0
    for _ in range(max(1, repeats)):
        valid = 0
        started = time.process_time()
        for body, attributes in messages:
            result = validate_callback(
                body, attributes, tokens, received_at=received_at, public_base_url=public_base_url
            )
            if isinstance(result, Accepted):
                result.record.to_json()
                valid += 1
        best = min(best, time.process_time() - started)
    candidates = tried = 0
    for body, attributes in messages:
        request = parse_forwarded_request(body, attributes)
        urls = urls_for_root(signed_url_root(request, public_base_url), request.query)
        matched = matching_url(
            request.signature, urls, parse_form_body(request.body), tokens.for_account(None)
        )
        candidates += len(urls)
        tried += urls.index(matched) + 1 if matched else 0
    return ValidatorTiming(
        us_per_record=best / len(messages) * 1_000_000,
        records=len(messages),
        valid=valid,
        candidate_urls_per_record=candidates / len(messages),
        urls_tried_per_valid_record=tried / valid if valid else 0.0,
    )


def _import_ms(function: FunctionSpec) -> float | None:
    module = function.handler.rpartition(".")[0]
    if function.code_folder is None or not module:
        return None
    path = os.pathsep.join(str(folder) for folder in (function.code_folder, *function.layer_folders))
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": path,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        **{name: value for name, value in function.environment.items() if name.startswith("POWERTOOLS_")},
    }
    completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed module name from the template
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    for line in completed.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module and parts[1].isdigit():
            return int(parts[1]) / 1000
    return None


def cold_imports(functions: Mapping[str, FunctionSpec], repeats: int) -> dict[str, float]:
    """Median cumulative import time (ms) of each handler module in a fresh interpreter."""

    runnable = [function for function in functions.values() if function.code_folder is not None]
    jobs = [function for function in runnable for _ in range(max(1, repeats))]
    with ThreadPoolExecutor(max_workers=2) as pool:
        measured = list(pool.map(_import_ms, jobs))
    timings: dict[str, list[float]] = {}
    for function, milliseconds in zip(jobs, measured, strict=True):
        if milliseconds is not None:
            timings.setdefault(function.logical_id, []).append(milliseconds)
    return {name: round(statistics.median(values), 1) for name, values in timings.items()}


# --- the run --------------------------------------------------------------------------------


def run_benchmark(options: BenchOptions, progress: Progress = _quiet) -> BenchRun:
    """Run the workload through the local pipeline and measure it."""
    began = time.monotonic()
    workload = build_workload(
        options.callbacks, rate=options.rate, seed=options.seed, error_rate=options.error_rate
    )
    stacks_dir = options.stacks_dir or default_stacks_dir()
    facts = all_stack_facts(stacks_dir)
    capture = LogCapture()
    scrubbed: dict[str, str | None] = dict.fromkeys(_NOT_IN_LAMBDA)
    progress(
        f"workload: {len(workload)} callbacks ({len(workload.error_keys())} with an ErrorCode), seed "
        f"{options.seed}"
    )
    with patched_environ(scrubbed), emulator_speedups(), captured_stdout(capture):
        pipeline = LocalPipeline(
            aws_port=0,
            http_port=0,
            token=BENCH_TOKEN,
            stacks_dir=stacks_dir,
            max_batching_window=options.max_batching_window,
            parameter_overrides=options.parameter_overrides,
        )
        with pipeline:
            progress(f"local pipeline ready in {pipeline.started_in:.1f} s")
            topology = topology_of(pipeline, facts)
            recorder = Recorder(topology, capture)
            pipeline.add_invocation_observer(recorder.observe)
            # Provisioning and start-up are not the workload's requests.
            pipeline.traffic.reset()
            pipeline.traffic.add_interceptor(recorder.intercept)
            sent = send_workload(
                workload,
                base_url=pipeline.public_url,
                token=pipeline.token,
                recorder=recorder,
                options=options,
                progress=progress,
                held=held_by_sinks(pipeline, options),
            )
            expected = expected_landings(workload)
            complete = wait_until_landed(recorder, expected, options.land_timeout, progress)
            time.sleep(_SETTLE_SECONDS)
            snapshot = recorder.snapshot()
            traffic_totals = pipeline.traffic.counts()
            pipeline.traffic.remove_interceptor(recorder.intercept)
            progress(
                "all callbacks landed; checking the sinks" if complete else "timed out waiting for sinks"
            )
            verification = verify_sinks(pipeline, workload)
            verification["complete"] = complete
            deployment = pipeline.deployment
            assert deployment is not None
            functions = {function.logical_id: function for function in deployment.functions}
            event_sources = {}
            for spec in deployment.event_sources:
                consumer = deployment.function(spec.function)
                if consumer is not None:
                    event_sources[consumer.logical_id] = (spec.batch_size, spec.batching_window)
            started_in = pipeline.started_in
            public_url = pipeline.public_url
            messages = list(recorder.ingest_messages)
    progress("measuring the validator's CPU time and the handlers' cold imports")
    validator = validator_cpu(messages, BENCH_TOKEN, public_url, options.validator_repeats)
    imports = cold_imports(functions, options.import_repeats)
    run = BenchRun(
        options=options,
        workload=workload,
        functions=functions,
        facts=facts,
        event_sources=event_sources,
        snapshot=snapshot,
        traffic_totals=traffic_totals,
        sent=sent,
        expected=expected,
        first_send=min((item.sent_at for item in sent), default=0.0),
        last_send=max((item.sent_at for item in sent), default=0.0),
        verification=verification,
        pipeline_start_seconds=started_in,
        validator=validator,
        cold_import_ms=imports,
    )
    run.wall_seconds = time.monotonic() - began
    return run
