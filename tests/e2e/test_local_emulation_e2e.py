"""The whole pipeline under API Gateway's other possible answers, behind an API mapping's base path.

AWS does not document whether an SQS integration base64-encodes a form body,
whether ``${request.querystring.x}`` is decoded, or what a missing value
does. The default pipeline plays one answer to each; this one plays the
others at once (``body=base64,query=raw,missing=fail``) under the base path
``hooks``, and the validator must still accept every genuine callback and
say in its log line which answer it met.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from aws_emulator import LocalPipeline
from aws_emulator.http_gateway import GatewayEmulation
from status_callbacks.adapters.dynamodb import events_of
from tests.e2e.probes import clients, eventually, log_messages, post, post_signed
from tests.support.signing import SIGNATURE_HEADER, form_body, message_status_params

pytestmark = pytest.mark.e2e

TOKEN = "emulation-e2e-token-not-a-secret"
PLAIN_SID = "SM" + "1" * 32
PARAMS_SID = "SM" + "2" * 32
CUSTOM = {"id": "order 42 & more", "category": "café + plus"}
INGESTED = "callback batch ingested"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    emulation = GatewayEmulation(body="base64", query="raw", missing="fail")
    with LocalPipeline(
        aws_port=0, http_port=0, token=TOKEN, emulation=emulation, base_path="hooks"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def answers(pipeline: LocalPipeline) -> dict[str, int]:
    """Genuine callbacks through the outputs' URLs, and one missing a declared query parameter."""
    callback_url = pipeline.output("CallbackUrl") or ""
    params_url = pipeline.output("CallbackWithParamsUrl") or ""
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in CUSTOM.items())
    plain = message_status_params("delivered", MessageSid=PLAIN_SID, SmsSid=PLAIN_SID)
    custom = message_status_params("sent", MessageSid=PARAMS_SID, SmsSid=PARAMS_SID)
    return {
        "plain": post_signed(callback_url, plain, pipeline.token),
        "custom": post_signed(f"{params_url}?{query}", custom, pipeline.token),
        "no-category": post_signed(f"{params_url}?id=1", custom, pipeline.token),
        "bare-route": post(
            callback_url.replace("/hooks/", "/"), form_body(plain), {SIGNATURE_HEADER: "Zm9yZ2Vk"}
        ),
    }


def test_the_routes_and_urls_are_under_the_base_path(
    answers: dict[str, int], pipeline: LocalPipeline
) -> None:
    assert pipeline.output("CallbackUrl") == f"{pipeline.api_base_url}/hooks/twilio"
    assert f"{pipeline.api_base_url}/hooks/twilio-params?id=<id>&category=<category>" in pipeline.banner()
    stack = clients(pipeline).cloudformation.describe_stacks(StackName="StatusCallbackHandler")["Stacks"][0]
    parameters = {item["ParameterKey"]: item["ParameterValue"] for item in stack["Parameters"]}
    assert parameters["PublicBaseUrl"] == f"{pipeline.api_base_url}/hooks"
    assert answers["bare-route"] == 404


def test_genuine_callbacks_validate_whatever_api_gateway_forwards(
    answers: dict[str, int], pipeline: LocalPipeline
) -> None:
    assert (answers["plain"], answers["custom"]) == (200, 200)
    dynamodb = clients(pipeline).dynamodb
    table = pipeline.output("StatusTableName") or ""

    for sid in (PLAIN_SID, PARAMS_SID):
        eventually(lambda sid=sid: events_of(dynamodb, table, sid), f"{sid} stored in DynamoDB")

    def ingested() -> list[dict[str, Any]] | None:
        lines = [json.loads(line) for line in log_messages(pipeline, "ValidatorLogGroupName", INGESTED)]
        return lines if sum(line["published"] for line in lines) >= 2 else None

    # And the validator's log lines say which answers it met: base64 bodies, raw query values
    lines = eventually(ingested, "the validator's batch lines")
    assert sum(line["rejected"] for line in lines) == 0
    assert sum(line["base64_bodies"] for line in lines) == 2
    assert sum(line["raw_query"] for line in lines) == 1


def test_a_missing_declared_parameter_fails_with_the_reason_in_the_access_log(
    answers: dict[str, int], pipeline: LocalPipeline
) -> None:
    assert answers["no-category"] == 500
    reason = "Unable to resolve property MessageAttributes from source $request.querystring.category"

    def failed() -> list[dict[str, Any]]:
        lines = [
            json.loads(line) for line in log_messages(pipeline, "ApiAccessLogGroupName", "Unable to resolve")
        ]
        return [line for line in lines if line["status"] == "500"]

    (line,) = eventually(failed, "the failed request's access log line")
    assert (line["route"], line["integrationError"]) == ("POST /twilio-params", reason)
