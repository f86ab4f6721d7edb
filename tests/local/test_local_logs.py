"""Handlers' output reaches CloudWatch Logs as Lambda ships it, and the console as before."""

from __future__ import annotations

import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from aws_emulator.aws import Clients
from aws_emulator.functions import FunctionHost
from aws_emulator.logs import HandlerOutput, LogEvent, LogShipper, lambda_log_events
from aws_emulator.provision import FunctionSpec

REGION = "us-east-1"

CHATTY_HANDLER = """
import json
import os

from aws_lambda_powertools import Logger

logger = Logger(service="chatty")
IMPORTED_WITH = os.environ.get("GREETING")


def handler(event, context):
    logger.info("structured", extra={"greeting": os.environ.get("GREETING")})
    print("plain " + str(IMPORTED_WITH))
    if event.get("raise"):
        raise RuntimeError("boom")
    return {"log_group": os.environ["AWS_LAMBDA_LOG_GROUP_NAME"], "stream": context.log_stream_name}
"""


class RecordedLogs:
    """Stands in for the log shipper: keeps what is put."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, str, list[LogEvent]]] = []

    def put(self, group: str, stream: str, events: Sequence[LogEvent], *, mergeable: bool = False) -> None:
        self.puts.append((group, stream, list(events)))


def chatty_spec(folder: Path, greeting: str = "hello", log_group: str | None = None) -> FunctionSpec:
    return FunctionSpec(
        stack="Test",
        logical_id="Chatty",
        name="Test-Chatty",
        arn=f"arn:aws:lambda:{REGION}:123456789012:function:Test-Chatty",
        code_folder=folder,
        handler="chatty_handler.handler",
        runtime="python3.13",
        timeout=30,
        memory_size=256,
        environment={"GREETING": greeting},
        log_group=log_group,
    )


@pytest.fixture
def chatty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "chatty"
    folder.mkdir()
    (folder / "chatty_handler.py").write_text(textwrap.dedent(CHATTY_HANDLER), encoding="utf-8")
    return folder


@pytest.fixture
def recorded() -> RecordedLogs:
    return RecordedLogs()


@pytest.fixture
def host(chatty_folder: Path, recorded: RecordedLogs) -> Iterator[FunctionHost]:
    function_host = FunctionHost([chatty_spec(chatty_folder, log_group="/chatty/logs")], {}, recorded)  # type: ignore[arg-type]
    function_host.load()
    yield function_host
    function_host.close()


def messages(events: list[LogEvent]) -> list[str]:
    return [event.message for event in events]


def test_an_invocation_is_one_batch_framed_by_lambdas_lines(
    host: FunctionHost, recorded: RecordedLogs, chatty_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    function = chatty_spec(chatty_folder)

    # When the function is invoked twice
    first = host.invoke(function, {})
    second = host.invoke(function, {})

    # Then each invocation is one batch to the LoggingConfig group, in the container's one stream
    assert [(group, stream) for group, stream, _ in recorded.puts] == [
        ("/chatty/logs", first.result["stream"])
    ] * 2
    assert first.result["log_group"] == "/chatty/logs"
    (_, _, first_events), (_, _, second_events) = recorded.puts
    lines = messages(first_events)
    assert lines[0] == f"START RequestId: {first.request_id} Version: $LATEST"
    assert '"message":"structured"' in lines[1] and '"greeting":"hello"' in lines[1]
    assert lines[2] == "plain hello"
    assert lines[3] == f"END RequestId: {first.request_id}"
    assert lines[4].startswith(f"REPORT RequestId: {first.request_id}\tDuration: ")
    assert "Memory Size: 256 MB" in lines[4]
    # and only the container's first invocation reports its init time
    assert "Init Duration" in lines[4] and "Init Duration" not in messages(second_events)[-1]
    assert [event.timestamp for event in first_events] == sorted(event.timestamp for event in first_events)
    # and the console still shows what the handler wrote
    assert capsys.readouterr().out.count("plain hello") == 2
    assert second.request_id != first.request_id


def test_a_handler_exception_gets_the_runtimes_error_line(
    host: FunctionHost, recorded: RecordedLogs, chatty_folder: Path
) -> None:
    invocation = host.invoke(chatty_spec(chatty_folder), {"raise": True})

    (_, _, events) = recorded.puts[0]
    errors = [line for line in messages(events) if line.startswith("[ERROR]")]
    assert invocation.failed
    assert len(errors) == 1 and errors[0].startswith("[ERROR] RuntimeError: boom\nTraceback")
    assert messages(events)[-2] == f"END RequestId: {invocation.request_id}"


def test_without_a_logging_config_lambda_writes_to_its_own_group(
    chatty_folder: Path, recorded: RecordedLogs
) -> None:
    function = chatty_spec(chatty_folder)
    host = FunctionHost([function], {}, recorded)  # type: ignore[arg-type]
    host.load()
    try:
        invocation = host.invoke(function, {})
    finally:
        host.close()

    assert invocation.result["log_group"] == "/aws/lambda/Test-Chatty"
    assert recorded.puts[0][0] == "/aws/lambda/Test-Chatty"


def test_a_replaced_function_gets_a_fresh_container(
    host: FunctionHost, recorded: RecordedLogs, chatty_folder: Path
) -> None:
    # Given a function invoked once with its first configuration
    before = host.invoke(chatty_spec(chatty_folder), {})

    # When its environment changes (a stack update) and a poller still holds the old spec
    host.replace(chatty_spec(chatty_folder, greeting="bonjour", log_group="/chatty/logs"))
    after = host.invoke(chatty_spec(chatty_folder), {})

    # Then the module was imported again with the new environment, into a new log stream
    after_lines = messages(recorded.puts[-1][2])
    assert "plain bonjour" in after_lines
    assert any('"greeting":"bonjour"' in line for line in after_lines)
    assert after.result["stream"] != before.result["stream"]
    assert "Init Duration" in after_lines[-1]


def test_only_the_invoking_threads_output_is_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    output = HandlerOutput()

    with output.capturing() as lines:
        print("mine")
        other = threading.Thread(target=lambda: print("someone else's"))
        other.start()
        other.join()
        sys.stdout.write("unterminated")

    assert messages(lines.close()) == ["mine", "unterminated"]
    assert sys.stdout is not output
    assert "someone else's" in capsys.readouterr().out


def test_report_lines_follow_the_output_even_when_clocks_disagree() -> None:
    output = [LogEvent(1_000_050, "late line")]

    events = lambda_log_events(
        "req-1", output, started_ms=1_000_000, ended_ms=1_000_040, duration_ms=40.2, memory_size=128
    )

    assert messages(events)[-2:] == ["END RequestId: req-1", events[-1].message]
    assert events[-1].timestamp >= 1_000_050
    assert "Billed Duration: 41 ms" in events[-1].message


def read_group(clients: Clients, group: str) -> list[dict[str, Any]]:
    return list(clients.logs.filter_log_events(logGroupName=group)["events"])


def test_the_shipper_creates_groups_and_streams_and_keeps_order(clients: Clients) -> None:
    shipper = LogShipper(lambda: clients.logs)
    try:
        # When two invocations' batches and a run of mergeable access log lines are put
        shipper.put("/aws/lambda/fn", "2026/12/03/[$LATEST]abc", [LogEvent(1_796_000_000_000, "one")])
        shipper.put("/aws/lambda/fn", "2026/12/03/[$LATEST]abc", [LogEvent(1_796_000_000_001, "two")])
        for index in range(3):
            shipper.put(
                "access",
                "api_$default",
                [LogEvent(1_796_000_000_000 + index, f"req {index}")],
                mergeable=True,
            )
        assert shipper.flush(30)
    finally:
        shipper.close()

    # Then the groups exist (created on first use, as Lambda creates /aws/lambda/<name>) with every line
    assert [event["message"] for event in read_group(clients, "/aws/lambda/fn")] == ["one", "two"]
    assert [event["message"] for event in read_group(clients, "access")] == ["req 0", "req 1", "req 2"]
    assert {event["logStreamName"] for event in read_group(clients, "/aws/lambda/fn")} == {
        "2026/12/03/[$LATEST]abc"
    }
