"""The local pipeline as the reliability and fuzz suites drive it: start, send, read logs, reconcile.

One `LocalPipeline` per test module (only one may run per process); each
test sends its own seeded lifecycles, whose SIDs no other test shares, and
reconciles only those, so tests on one pipeline stay independent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs

from aws_emulator import LocalPipeline
from aws_emulator.aws import Clients
from aws_emulator.pollers import MAX_BATCHING_WINDOW_SECONDS
from aws_emulator.traffic import AwsRequest
from pipeline_harness.reconcile import (
    AlertObserver,
    ClientFactory,
    Expectation,
    Reconciliation,
    Sinks,
    expect,
    wait_for_reconciliation,
)
from pipeline_harness.scenarios import Lifecycle, ScenarioOptions, generate
from pipeline_harness.sender import HttpSender, Summary, send_lifecycles
from tests.reliability.emulator import linear_sqs

# A test token, not a secret.
TOKEN = "reliability-auth-token-not-a-secret"
RUNNER_LOGGER = "aws_emulator"
# A request the client gives up on may still have been queued: wait long, so none is given up.
SEND_TIMEOUT_SECONDS = 60.0


@contextmanager
def running_pipeline(token: str = TOKEN, max_batching_window: float | None = None) -> Iterator[LocalPipeline]:
    """The whole pipeline on free ports, with moto's SQS kept linear (see `emulator`).

    ``max_batching_window`` caps how long a poller waits to fill a batch
    (the runner's default is 1 s); small test scenarios rarely fill one.
    """
    window = MAX_BATCHING_WINDOW_SECONDS if max_batching_window is None else max_batching_window
    with (
        linear_sqs(),
        LocalPipeline(aws_port=0, http_port=0, token=token, max_batching_window=window) as pipeline,
    ):
        yield pipeline


def client_factory(pipeline: LocalPipeline) -> ClientFactory:
    """boto3 clients for the pipeline's emulator, one per service."""
    return Clients(pipeline.endpoint_url, pipeline.region).client


def outputs_of(pipeline: LocalPipeline) -> dict[str, str]:
    """Every stack's outputs, merged (keys are unique across the four stacks)."""
    assert pipeline.deployment is not None
    stacks = pipeline.deployment.stacks
    return {key: value for stack in stacks for key, (value, _, _) in stack.outputs.items()}


def sinks_of(pipeline: LocalPipeline) -> Sinks:
    """The sinks and queues, including the runner's internal queues for rule targets it delivers."""
    assert pipeline.deployment is not None
    sources = pipeline.deployment.async_sources
    internal = {f"internal:{source.logical_id}": source.queue_url for source in sources}
    return Sinks.from_outputs(outputs_of(pipeline), extra_queues=internal)


def set_queue_retries(
    pipeline: LocalPipeline,
    *,
    visibility_seconds: int,
    max_receive_count: int | None = None,
    queues: Sequence[str] | None = None,
) -> None:
    """Shorten the work queues' visibility timeout (and receive count), so retries take seconds.

    The templates size these for Lambda timeouts of 30-60 s; locally a retry
    then waits minutes. ``queues`` names outputs without ``QueueUrl`` (e.g.
    ``Ingest``); default every work queue.

    Returns once the change is in force for every poller of a changed queue
    (see `PollsRestarted`): a receive already waiting when the attribute
    changed hands out its messages with the old visibility timeout.
    """
    sqs = client_factory(pipeline)("sqs")
    changed: list[str] = []
    for name, url in sinks_of(pipeline).queues.items():
        if name.startswith("internal:") or (queues is not None and name not in queues):
            continue
        attributes = {"VisibilityTimeout": str(visibility_seconds)}
        if max_receive_count is not None:
            current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
            policy = json.loads(current["RedrivePolicy"])
            policy["maxReceiveCount"] = max_receive_count
            attributes["RedrivePolicy"] = json.dumps(policy)
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        changed.append(url)
    # Installed only now: every receive it sees reads the new attributes.
    restarted = PollsRestarted(polled_queue_names(pipeline) & {queue_name(url) for url in changed})
    pipeline.traffic.add_interceptor(restarted)
    try:
        restarted.wait(POLL_RESTART_SECONDS)
    finally:
        pipeline.traffic.remove_interceptor(restarted)


# A poller's long poll lasts about a second (up to two in moto); allow for a busy machine.
POLL_RESTART_SECONDS = 30.0


def queue_name(queue_url_or_arn: str) -> str:
    """A queue's name, from its URL or ARN."""
    return queue_url_or_arn.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def polled_queue_names(pipeline: LocalPipeline) -> set[str]:
    """The queues an event source mapping (one poller thread each) receives from."""
    assert pipeline.deployment is not None
    return {queue_name(spec.queue_arn) for spec in pipeline.deployment.event_sources if spec.enabled}


class PollsRestarted:
    """A `Traffic` observer: set once every named queue received a ReceiveMessage after it was installed.

    moto reads a queue's ``VisibilityTimeout`` when a ReceiveMessage arrives,
    before it waits for messages (AWS, too, says attribute changes take time
    to propagate). A poller's long poll that began before a change would
    hand the first messages of a test the template's timeout (the validator's
    240 s), and a callback the test fails on purpose would not come back
    before its deadline. Each queue has one poller thread, receiving one
    call at a time: its next ReceiveMessage means the old poll has returned.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._waiting = set(names)
        self._lock = threading.Lock()
        self._done = threading.Event()
        if not self._waiting:
            self._done.set()

    def __call__(self, request: AwsRequest) -> None:
        if request.service != "sqs" or request.operation != "ReceiveMessage":
            return
        try:
            url = str(json.loads(request.body).get("QueueUrl", ""))
        except (ValueError, AttributeError):
            url = (parse_qs(request.body.decode("utf-8", "replace")).get("QueueUrl") or [""])[0]
        with self._lock:
            self._waiting.discard(queue_name(url))
            if not self._waiting:
                self._done.set()

    def wait(self, seconds: float) -> None:
        if not self._done.wait(seconds):
            with self._lock:
                waiting = sorted(self._waiting)
            raise AssertionError(f"not within {seconds} s: a new receive by the pollers of {waiting}")


T = TypeVar("T")


def eventually(probe: Callable[[], T], what: str, seconds: float = 60.0, interval: float = 0.25) -> T:
    """Poll until ``probe`` returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + seconds
    last = probe()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds} s: {what} (last: {last!r})")
        time.sleep(interval)
        last = probe()
    return last


def queue_depth(sqs: Any, url: str) -> int:
    """Messages waiting, in flight or delayed in one queue."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(value) for value in attributes.values())


@dataclass
class Scenario:
    """Lifecycles sent to the pipeline, what they must leave behind, and how sending went."""

    lifecycles: list[Lifecycle]
    expectation: Expectation
    summary: Summary

    @property
    def phone_numbers(self) -> set[str]:
        return phone_numbers_of(self.lifecycles)


def phone_numbers_of(lifecycles: Iterable[Lifecycle]) -> set[str]:
    """Every phone number the lifecycles' callbacks carry (To, From, Caller, Called)."""
    numbers = set()
    for lifecycle in lifecycles:
        for callback in lifecycle.callbacks:
            form = callback.form
            numbers |= {form[key] for key in ("To", "From", "Caller", "Called") if key in form}
    return numbers


def scenario_lifecycles(seed: int, count: int, **options: Any) -> list[Lifecycle]:
    """A realistic mix: messages and calls, errors, retries, shuffles, forgeries; both routes."""
    defaults: dict[str, Any] = {
        "kind": "mixed",
        "error_rate": 0.3,
        "out_of_order": 0.3,
        "duplicates": 0.1,
        "forged": 0.05,
        "unsigned": 0.03,
    }
    defaults.update(options)
    plain = ScenarioOptions(count=count - count // 2, seed=seed, **defaults)
    with_params = ScenarioOptions(count=count // 2, seed=seed + 1, route="/twilio-params", **defaults)
    return list(generate(plain)) + list(generate(with_params))


def send(
    pipeline: LocalPipeline,
    lifecycles: Sequence[Lifecycle],
    concurrency: int = 8,
    timeout_seconds: float = SEND_TIMEOUT_SECONDS,
) -> Scenario:
    """Post every lifecycle (each in its own order, over kept-alive connections); build the expectation."""
    summary = send_lifecycles(
        lifecycles,
        pipeline.api_base_url,
        pipeline.token,
        concurrency=concurrency,
        sender=HttpSender(timeout=timeout_seconds).send,
    )
    return Scenario(list(lifecycles), expect(lifecycles), summary)


def reconcile_scenario(
    pipeline: LocalPipeline,
    scenario: Scenario | Expectation,
    alerts: AlertObserver | None,
    deadline_seconds: float = 60.0,
) -> Reconciliation:
    """Wait for the scenario to land (or the deadline) and compare."""
    expectation = scenario.expectation if isinstance(scenario, Scenario) else scenario
    return wait_for_reconciliation(
        client_factory(pipeline),
        sinks_of(pipeline),
        expectation,
        alerts=alerts,
        deadline_seconds=deadline_seconds,
        interval_seconds=0.25,
    )


def alert_observer(pipeline: LocalPipeline, name: str) -> AlertObserver:
    """A queue subscribed to the alerts topic, as an operator's inbox."""
    topic = outputs_of(pipeline)["AlertsTopicArn"]
    return AlertObserver(client_factory(pipeline), topic, name)


# --- logs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One log record as it was emitted (Powertools JSON for handlers)."""

    logger: str
    level: int
    text: str


class LogCapture(logging.Handler):
    """Every log line of this process (handlers' Powertools JSON and the runner's), as emitted.

    Attach it after the pipeline started: each handler container's Powertools
    Logger filters its own records out of root handlers that exist when it is
    created. Lines are formatted with the emitting logger's own formatter, so
    ``extra`` fields are checked too.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[LogLine] = []
        self._fallback = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        handler = getattr(logging.getLogger(record.name), "powertools_handler", None)
        formatter = getattr(handler, "formatter", None) or self._fallback
        try:
            text = formatter.format(record)
        except Exception:  # a line that cannot be formatted is still checked, as its raw parts
            text = f"{record.name} {record.msg!r} {record.args!r}"
        with self._guard:
            self.lines.append(LogLine(record.name, record.levelno, text))

    def snapshot(self) -> list[LogLine]:
        with self._guard:
            return list(self.lines)

    def clear(self) -> None:
        with self._guard:
            self.lines.clear()

    def containing(self, needle: str, min_level: int = logging.DEBUG) -> list[LogLine]:
        return [line for line in self.snapshot() if line.level >= min_level and needle in line.text]

    def json_lines(self, message: str) -> list[dict[str, Any]]:
        """Handler log lines (Powertools JSON) whose message is ``message``."""
        found = []
        for line in self.snapshot():
            try:
                document = json.loads(line.text)
            except ValueError:
                continue
            if isinstance(document, dict) and document.get("message") == message:
                found.append(document)
        return found


@contextmanager
def captured_logs(level: int = logging.DEBUG) -> Iterator[LogCapture]:
    """Capture every log line in this process; the runner's INFO lines included."""
    capture = LogCapture()
    root = logging.getLogger()
    runner = logging.getLogger(RUNNER_LOGGER)
    previous_level = runner.level
    runner.setLevel(min(level, logging.INFO))
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        runner.setLevel(previous_level)


def leaks(lines: Iterable[LogLine], secrets: Iterable[str], phone_numbers: Iterable[str]) -> list[str]:
    """Log lines that carry the auth token (any level) or a phone number (INFO and above)."""
    found = []
    numbers = [(number, number.replace("+", "%2B")) for number in phone_numbers]
    secrets = [secret for secret in secrets if secret]
    for line in lines:
        if any(secret in line.text for secret in secrets):
            found.append(f"secret in {line.logger}: {line.text[:200]}")
        if line.level >= logging.INFO:
            for number, encoded in numbers:
                if number in line.text or encoded in line.text:
                    found.append(f"phone number in {line.logger}: {line.text[:200]}")
                    break
    return found
