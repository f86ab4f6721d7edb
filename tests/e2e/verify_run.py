"""Running ``twilio-callbacks verify`` against a local pipeline from a test, and reading its JSON report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aws_emulator import LocalPipeline
from twilio_callbacks_cli.main import main

# Generous for a loaded 2-core machine; a passing run stops as soon as everything is in.
PASSING_TIMEOUT = "120"
# A failing stage never completes, so this whole wait is spent: long enough for every other stage.
FAILING_TIMEOUT = "40"


def verify(pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, Any]:
    """Run the command; its JSON report, found among the handlers' one-line JSON logs on stdout."""
    code = main(["verify", "--endpoint-url", pipeline.endpoint_url, "--json", *options])
    out = capsys.readouterr().out
    start = 0 if out.startswith("{\n") else out.index("\n{\n") + 1
    report, _ = json.JSONDecoder().raw_decode(out, start)
    return code, report


def stages(report: Any) -> dict[str, dict[str, Any]]:
    return {stage["stage"]: stage for stage in report["stages"]}
