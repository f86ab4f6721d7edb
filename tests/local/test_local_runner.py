"""The `twilio-callbacks local` command: options, URLs and the auth token it seeds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from aws_emulator import runner
from aws_emulator.runner import LocalPipeline
from aws_emulator.templates import load_stack


def test_ports_come_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PORT", "4600")
    monkeypatch.setenv("PORT", "3100")

    from_environment = runner._parser().parse_args([])
    from_flags = runner._parser().parse_args(["--aws-port", "4700", "--port", "3200"])

    assert (from_environment.aws_port, from_environment.port, from_environment.host) == (
        4600,
        3100,
        "127.0.0.1",
    )
    assert (from_flags.aws_port, from_flags.port) == (4700, 3200)


def test_defaults_are_the_documented_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_PORT", raising=False)
    monkeypatch.delenv("PORT", raising=False)

    options = runner._parser().parse_args([])

    assert (options.aws_port, options.port, options.public_url) == (4566, 3000, None)


def test_the_public_url_is_what_signatures_and_the_domain_use() -> None:
    local = LocalPipeline(http_port=3000)
    tunnelled = LocalPipeline(http_port=3000, public_url="https://abc123.ngrok.app/")

    assert (local.public_url, local.domain) == ("http://127.0.0.1:3000", "127.0.0.1:3000")
    assert (tunnelled.public_url, tunnelled.domain) == ("https://abc123.ngrok.app", "abc123.ngrok.app")
    assert tunnelled.api_base_url == "http://127.0.0.1:3000"


def test_a_token_is_generated_only_when_none_is_supplied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    generated = LocalPipeline()
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "from-the-environment")
    supplied = LocalPipeline()

    assert generated.token_generated
    assert len(generated.token) == 32 and int(generated.token, 16) >= 0
    assert (supplied.token, supplied.token_generated) == ("from-the-environment", False)


def test_a_pipeline_that_cannot_start_exits_1_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a folder without any stack
    code = runner.main(["--stacks-dir", str(tmp_path), "--port", "0", "--aws-port", "0"])

    # Then the command says why and fails
    assert code == 1
    assert "no stacks" in capsys.readouterr().err


def test_the_resource_type_table_can_be_printed(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner.main(["--resource-types"])

    table = capsys.readouterr().out
    assert code == 0
    assert "AWS::SQS::Queue" in table and "moto" in table
    assert "AWS::Lambda::Function" in table and "in-process" in table
    assert "AWS::IAM::Role" in table and "skipped" in table


def test_a_taken_aws_port_is_reported_instead_of_hanging(capsys: pytest.CaptureFixture[str]) -> None:
    # Given something already listening where moto would go
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code = runner.main(["--aws-port", str(port), "--port", "0"])

    assert code == 1
    assert f"127.0.0.1:{port} is not available" in capsys.readouterr().err


def test_a_stack_prefixed_override_reaches_only_that_stack() -> None:
    # Given the pipeline started with StatusCallbackHandler.Tracing=Active
    with LocalPipeline(
        aws_port=0,
        http_port=0,
        token="override-test-token",
        parameter_overrides={"StatusCallbackHandler.Tracing": "Active"},
    ) as pipeline:
        deployment = pipeline.deployment
        assert deployment is not None
        tracing = {function.logical_id: function.tracing for function in deployment.functions}

    # Then the ingest stack's validator traces, and the other stacks keep their PassThrough default
    assert tracing["ValidatorFunction"] == "Active"
    assert {
        tracing[name] for name in ("ArchiverFunction", "WriterFunction", "RouterFunction", "FlaggerFunction")
    } == {"PassThrough"}


def test_emulation_and_base_path_come_from_flags_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_CALLBACKS_EMULATE", "body=base64,missing=fail")
    options = runner._parser().parse_args(["--emulate", "query=raw", "--base-path", "/hooks/"])

    from_flags = LocalPipeline(emulation=options.emulate, base_path=options.base_path, http_port=3000)
    from_environment = LocalPipeline(http_port=3000)

    assert str(from_flags.emulation) == "body=text,query=raw,missing=empty"
    assert str(from_environment.emulation) == "body=base64,query=decoded,missing=fail"
    assert from_flags.public_url == "http://127.0.0.1:3000/hooks"
    assert LocalPipeline(http_port=3000, public_url="https://t.ngrok.app", base_path="hooks").public_url == (
        "https://t.ngrok.app/hooks"
    )


def test_a_bad_emulation_choice_stops_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as flag:
        runner.main(["--emulate", "body=gzip"])
    assert flag.value.code == 2
    assert "body=gzip: choose text or base64" in capsys.readouterr().err

    monkeypatch.setenv("TWILIO_CALLBACKS_EMULATE", "query=percent")
    assert runner.main(["--port", "0", "--aws-port", "0"]) == 2
    assert "query=percent: choose decoded or raw" in capsys.readouterr().err


ERRORS_STACK = Path(__file__).resolve().parents[2] / "aws_stacks" / "CheckForStatusCallbackErrors"


@pytest.mark.parametrize(
    ("overrides", "default"),
    [
        ({}, "Enabled"),
        ({"CheckForStatusCallbackErrors.AlertsInbox": "Disabled"}, "Disabled"),
        # A plain override is applied at deploy time, over the template's own default.
        ({"AlertsInbox": "Disabled"}, "Disabled"),
    ],
)
def test_the_alerts_inbox_is_on_locally_unless_the_caller_says_otherwise(
    overrides: dict[str, str], default: str
) -> None:
    stack = load_stack(ERRORS_STACK, "us-east-1")

    local = LocalPipeline(parameter_overrides=overrides)._with_stack_overrides(stack)

    assert local.parameters["AlertsInbox"]["Default"] == default
