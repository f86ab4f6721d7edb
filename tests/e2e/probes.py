"""Acting as Twilio and watching the local pipeline: shared by the e2e modules.

Everything the pipeline does happens asynchronously (pollers, log shipping),
so reads poll with a generous deadline instead of reading once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests

from aws_emulator import LocalPipeline
from aws_emulator.aws import Clients
from tests.support.signing import SIGNATURE_HEADER, form_body, sign

DEADLINE_SECONDS = 30
FORM = "application/x-www-form-urlencoded"

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, seconds: float = DEADLINE_SECONDS) -> T:
    """Poll until the probe returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + seconds
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what} (last: {last!r})")


def post(url: str, body: str | bytes, headers: Mapping[str, str]) -> int:
    return requests.post(url, data=body, headers=dict(headers), timeout=30).status_code


def post_signed(url: str, params: Mapping[str, str], token: str, signed_for: str | None = None) -> int:
    """POST a form callback to ``url``, signed as Twilio signs it for ``signed_for`` (default ``url``).

    Signing for another URL is what a proxy or custom domain in front of the API looks like.
    """
    headers = {SIGNATURE_HEADER: sign(signed_for or url, params, token), "Content-Type": FORM}
    return post(url, form_body(params), headers)


def clients(pipeline: LocalPipeline) -> Clients:
    return Clients(pipeline.endpoint_url, pipeline.region)


def log_messages(pipeline: LocalPipeline, group_output: str, term: str = "") -> list[str]:
    """Messages of the log group a stack output names, as FilterLogEvents finds them (every page).

    ``term`` is a quoted-term filter pattern; moto ignores JSON patterns
    (``{ $.message = … }``), so callers filter JSON fields themselves.
    """
    group = pipeline.output(group_output)
    assert group, f"no output {group_output}"
    arguments: dict[str, Any] = {"logGroupName": group}
    if term:
        arguments["filterPattern"] = f'"{term}"'
    paginator = clients(pipeline).logs.get_paginator("filter_log_events")
    return [event["message"] for page in paginator.paginate(**arguments) for event in page["events"]]
