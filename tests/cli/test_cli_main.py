"""The command line itself: help, exit codes, stack naming, discovery and the hand-over to ``local``."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.cli.builders import FakeStack, register_stack
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import StackNames, discover
from twilio_callbacks_cli.main import build_parser, main
from twilio_callbacks_cli.output import table
from twilio_callbacks_cli.progress import ProgressBar


def test_help_lists_every_command_and_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for command in ("local", "send", "status", "query", "redrive"):
        assert f"\n    {command} " in out
    assert "exit codes: 0 ok, 1 something failed, 2 bad usage, 3 stacks not deployed" in out
    assert "AWS_ENDPOINT_URL" in out


@pytest.mark.parametrize("command", ["send", "status", "redrive", "query", "query message", "query errors"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith("usage: twilio-callbacks " + command)
    assert "--endpoint-url" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["deploy"])
    assert exit_info.value.code == 2


def test_options_work_before_and_after_the_command(pipeline, capsys):
    # Given a region given before the command and the stack prefix after it (or the reverse)
    assert main(["--region", "us-east-1", "status", "--json"]) == 0
    assert main(["status", "--region", "us-east-1", "--json"]) == 0
    # And a wrong region, wherever it is given, finds no stacks
    capsys.readouterr()
    assert main(["status", "--region", "eu-west-1"]) == 3
    assert main(["--region", "eu-west-1", "status"]) == 3


def test_local_hands_over_every_argument_to_the_runner(monkeypatch):
    # Given the local runner (imported only when `local` is asked for)
    runner = importlib.import_module("aws_emulator.runner")
    received = []
    monkeypatch.setattr(runner, "main", lambda argv: received.append(argv) or 0)
    # When `local` is run with its own options, including ones the CLI also has
    assert main(["local", "--port", "3001", "--region", "us-west-2"]) == 0
    assert main(["local", "--help"]) == 0
    # Then the runner gets them untouched
    assert received == [["--port", "3001", "--region", "us-west-2"], ["--help"]]


def test_local_is_not_imported_for_other_commands(pipeline, capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "aws_emulator.runner", raising=False)
    assert main(["status", "--json"]) == 0
    assert "aws_emulator.runner" not in sys.modules


def test_stack_names_from_prefix_suffix_and_overrides():
    names = StackNames.build(prefix="dev-", suffix="-eu", overrides={"dynamo": "MyStatusStore", "s3": None})
    assert names["ingest"] == "dev-StatusCallbackHandler-eu"
    assert names["s3"] == "dev-SaveStatusCallbackToS3-eu"
    assert names["dynamo"] == "MyStatusStore"
    assert names["errors"] == "dev-CheckForStatusCallbackErrors-eu"
    parsed = build_parser().parse_args(["--stack-suffix=-eu", "status", "--errors-stack", "E"])
    assert (parsed.stack_suffix, parsed.errors_stack, parsed.stack_prefix) == ("-eu", "E", None)


def test_queues_are_discovered_by_output_suffix_not_a_fixed_list(pipeline):
    # Given a stack that outputs a queue and DLQ no one told the CLI about
    stack = FakeStack("StatusCallbackHandler-extra")
    stack.outputs.update(
        AuditQueueUrl="https://sqs.us-east-1.amazonaws.com/123456789012/audit",
        AuditQueueArn="arn:aws:sqs:us-east-1:123456789012:audit",
        AuditDeadLetterQueueUrl="https://sqs.us-east-1.amazonaws.com/123456789012/audit-dlq",
        SomethingElseUrl="https://example.test",
    )
    register_stack(pipeline.clients["cloudformation"], stack)
    # When the pipeline is discovered with that stack as the ingest stack
    found = discover(AwsTarget(), StackNames.build(overrides={"ingest": stack.name}))
    # Then its queues are found by their output names, paired with their DLQ
    assert [queue.name for queue in found.work_queues() if queue.stack == stack.name] == ["Audit"]
    [dlq] = [queue for queue in found.dead_letter_queues() if queue.stack == stack.name]
    assert dlq.name == "AuditDeadLetter" and dlq.base_name == "Audit"
    assert found.paired_source(dlq).url.endswith("/audit")
    assert found.work_queues()[0].arn is None or found.work_queues()[0].arn.startswith("arn:aws:sqs")


def test_table_pads_columns_and_shows_missing_values():
    text = table(["name", "count"], [["alpha", 1], ["b", None], ["c", ["x", "y"]]])
    assert text.splitlines() == ["name   count", "-----  -----", "alpha  1", "b      -", "c      x, y"]


def test_progress_bar_renders_and_stays_quiet_when_disabled():
    import io

    stream = io.StringIO()
    with ProgressBar(4, "callbacks", stream=stream) as bar:
        for _ in range(4):
            bar.advance()
    assert bar.render().startswith("[" + "#" * 30 + "] 4/4 callbacks 100%")
    assert stream.getvalue().endswith("\n") and "\r[" in stream.getvalue()
    silent = io.StringIO()
    with ProgressBar(2, "callbacks", stream=silent, enabled=False) as bar:
        bar.advance(2)
    assert silent.getvalue() == ""
    half = ProgressBar(10, "x", stream=io.StringIO())
    half.done = 5
    assert half.render().startswith("[" + "#" * 15 + "." * 15 + "]  5/10 x  50%")


def test_region_resolution(monkeypatch):
    # Given only AWS_REGION (which boto3 ignores, but Lambda and the local runner set)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert AwsTarget(environ={"AWS_REGION": "eu-west-1"}).region_name == "eu-west-1"
    # And --region wins over it
    assert AwsTarget(region="ap-south-1", environ={"AWS_REGION": "eu-west-1"}).region_name == "ap-south-1"
    # And an emulator endpoint without any region defaults to the local runner's
    assert AwsTarget(endpoint_url="http://127.0.0.1:4566", environ={}).region_name == "us-east-1"


def test_no_region_on_aws_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert main(["status"]) == 3
    assert "no AWS region configured" in capsys.readouterr().err
