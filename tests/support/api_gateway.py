"""API Gateway and SQS as the ingest stack wires them, for tests and sample events.

`forward` turns a request leaving Twilio into the SQS message the route's
SQS-SendMessage integration sends, by evaluating that route's
``MessageAttributes`` mapping *read from api.yaml* — so a wrong mapping breaks
the tests. Query values are percent-decoded as API Gateway decodes them (a
``+`` stays a ``+``). `lambda_sqs_record` / `lambda_event_from_messages` give
the Lambda SQS event the validator receives.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

import yaml

from tests.support.signing import TwilioRequest

REPO_ROOT = Path(__file__).resolve().parents[2]
API_YAML = REPO_ROOT / "aws_stacks" / "StatusCallbackHandler" / "api.yaml"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
DEFAULT_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:StatusCallbackHandler-IngestQueue"
# The execute-api host of a deployed API (its id is random per deployment).
API_DOMAIN = f"a1b2c3d4e5.execute-api.{REGION}.amazonaws.com"
API_BASE_URL = f"https://{API_DOMAIN}"

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class RouteNotFoundError(LookupError):
    """API Gateway would answer 404: api.yaml has no such route."""


class MappingFailedError(ValueError):
    """API Gateway could not build the SQS request from the mapping (a 500 to Twilio)."""


@functools.cache
def load_api(path: Path = API_YAML) -> dict[str, Any]:
    """api.yaml as data."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def routes(api: Mapping[str, Any] | None = None) -> list[str]:
    """Every POST route api.yaml declares."""
    api = api or load_api()
    return [path for path, item in api["paths"].items() if "post" in item]


def integration(route: str, api: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The route's x-amazon-apigateway-integration object."""
    api = api or load_api()
    if route not in api["paths"]:
        raise RouteNotFoundError(route)
    value = api["paths"][route]["post"]["x-amazon-apigateway-integration"]
    assert isinstance(value, dict)
    return value


def decoded_query(query: str, plus_as_space: bool = False) -> dict[str, str]:
    """Query values as API Gateway hands them to a mapping: percent-decoded, repeats joined by commas.

    API Gateway is taken to leave ``+`` as is; ``plus_as_space`` models a
    gateway that form-decodes it instead, so tests can cover both.
    """
    decode = unquote_plus if plus_as_space else unquote
    values: dict[str, list[str]] = {}
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        values.setdefault(decode(name), []).append(decode(value))
    return {name: ",".join(items) for name, items in values.items()}


@dataclass(frozen=True)
class ForwardedMessage:
    """The SendMessage request API Gateway makes (SQS API shapes)."""

    body: str
    attributes: dict[str, dict[str, str]]


def forward(
    request: TwilioRequest, api: Mapping[str, Any] | None = None, plus_as_space: bool = False
) -> ForwardedMessage:
    """Evaluate the route's api.yaml mapping for this request, as API Gateway does."""
    parts = urlsplit(request.url)
    parameters = integration(parts.path, api)["requestParameters"]
    if parameters["MessageBody"] != "$request.body":
        raise MappingFailedError("MessageBody is not the raw request body")
    headers = {name.lower(): value for name, value in request.headers.items()}
    query = decoded_query(parts.query, plus_as_space)
    context = {
        "context.domainName": parts.hostname or "",
        # The $default stage adds no stage segment to the path.
        "context.path": parts.path,
        "context.routeKey": f"POST {parts.path}",
        "context.identity.sourceIp": request.source_ip,
    }

    def evaluate(match: re.Match[str]) -> str:
        variable = match[1]
        if variable.startswith("request.header."):
            return headers.get(variable.removeprefix("request.header.").lower(), "")
        if variable.startswith("request.querystring."):
            return query.get(variable.removeprefix("request.querystring."), "")
        if variable in context:
            return context[variable]
        raise MappingFailedError(f"mapping uses ${{{variable}}}, which this simulation does not know")

    rendered = _VARIABLE.sub(evaluate, parameters["MessageAttributes"])
    try:
        attributes = json.loads(rendered)
    except json.JSONDecodeError as error:
        # Values are substituted unescaped: a `"` or `\` in a header or query value breaks the JSON.
        raise MappingFailedError("MessageAttributes is not JSON after substitution") from error
    return ForwardedMessage(body=request.body, attributes=attributes)


def send(sqs: Any, queue_url: str, message: ForwardedMessage) -> str:
    """SendMessage as the integration does; returns the SQS message id."""
    response = sqs.send_message(
        QueueUrl=queue_url, MessageBody=message.body, MessageAttributes=message.attributes
    )
    return str(response["MessageId"])


def md5_of_message_attributes(attributes: Mapping[str, Mapping[str, str]]) -> str:
    """SQS's MD5OfMessageAttributes for string attributes."""
    digest = hashlib.md5()
    for name in sorted(attributes):
        attribute = attributes[name]
        for part in (name, attribute["DataType"]):
            encoded = part.encode("utf-8")
            digest.update(struct.pack(">I", len(encoded)) + encoded)
        value = attribute["StringValue"].encode("utf-8")
        digest.update(b"\x01" + struct.pack(">I", len(value)) + value)
    return digest.hexdigest()


def lambda_sqs_record(
    message: ForwardedMessage,
    message_id: str,
    sent_timestamp: int,
    queue_arn: str = DEFAULT_QUEUE_ARN,
    receive_count: int = 1,
) -> dict[str, Any]:
    """One record of the Lambda SQS event for this message."""
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB-{message_id}",
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(sent_timestamp),
            "SenderId": "AROAEXAMPLEAPIGATEWAY:apigateway",
            "ApproximateFirstReceiveTimestamp": str(sent_timestamp + 250),
        },
        "messageAttributes": {
            name: {
                "stringValue": attribute["StringValue"],
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": attribute["DataType"],
            }
            for name, attribute in message.attributes.items()
        },
        "md5OfBody": hashlib.md5(message.body.encode("utf-8")).hexdigest(),
        "md5OfMessageAttributes": md5_of_message_attributes(message.attributes),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def lambda_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A Lambda SQS event holding these records."""
    return {"Records": list(records)}


def lambda_event_from_messages(messages: Iterable[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Convert ReceiveMessage output (AttributeNames/MessageAttributeNames All) to the Lambda event."""
    records = []
    for message in messages:
        attributes = {
            name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
            for name, value in (message.get("MessageAttributes") or {}).items()
        }
        record = lambda_sqs_record(
            ForwardedMessage(body=message["Body"], attributes=attributes),
            message_id=message["MessageId"],
            sent_timestamp=int(message["Attributes"]["SentTimestamp"]),
            queue_arn=queue_arn,
            receive_count=int(message["Attributes"].get("ApproximateReceiveCount", "1")),
        )
        record["receiptHandle"] = message["ReceiptHandle"]
        records.append(record)
    return lambda_event(records)


def receive_event(sqs: Any, queue_url: str, queue_arn: str, max_messages: int = 10) -> dict[str, Any]:
    """Receive up to ``max_messages`` from the queue as the Lambda event source mapping would."""
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        WaitTimeSeconds=0,
    )
    return lambda_event_from_messages(response.get("Messages", []), queue_arn)
