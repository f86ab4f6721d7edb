"""Hostile HTTP against the local routes (api.yaml as API Gateway maps it), through the whole pipeline.

Every request gets a defined answer — queued (200) and then rejected and
counted by the validator, or refused by the gateway (400 or 500) — the
gateway keeps serving, and genuine callbacks sent between hostile ones (so
they share validator batches) land exactly once. At the end the whole run is
reconciled: nothing hostile in any sink, every queued hostile request counted
as a rejection, every dead-letter queue empty, and no log line with the auth
token or a phone number.

Requests go out over raw sockets, so header values can carry what HTTP
client libraries refuse to send (CR/LF, quotes, non-ASCII bytes).
"""

from __future__ import annotations

import gzip
import json
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aws_emulator import LocalPipeline
from pipeline_harness.reconcile import AlertObserver, expect
from pipeline_harness.scenarios import Lifecycle, sign
from tests.fuzz.strategies import ANY_TEXT, RESERVED, param_names, reserved_heavy_text, signatures, text
from tests.reliability.harness import (
    TOKEN,
    LogCapture,
    alert_observer,
    captured_logs,
    client_factory,
    leaks,
    outputs_of,
    phone_numbers_of,
    reconcile_scenario,
    running_pipeline,
    scenario_lifecycles,
    set_queue_retries,
)
from tests.support.api_gateway import MappingFailedError, forward
from tests.support.signing import SIGNATURE_HEADER, TwilioRequest, message_status_params

pytestmark = pytest.mark.fuzz

HTTP = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# SQS's limit for one message (1 MiB since 2025): a bigger body makes the integration fail.
SQS_MAX_MESSAGE_BYTES = 1024 * 1024
# A form parameter no genuine callback carries, so any record holding it is a hostile request.
HOSTILE_MARK = "HostileProbe"
# The numbers hostile requests carry (tests.support.signing's and one of their own).
HOSTILE_NUMBERS = {"+15550000000", "+15555550123", "+15555550199"}
# The API's host in tests.support's model of the api.yaml mapping.
DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
# Characters left raw in a request line's query (a space, "#" or "%" would change what it says).
RAW_QUERY_SAFE = "".join(character for character in RESERVED if character not in " #%")


@dataclass
class Campaign:
    """Everything the module sent, for the final reconciliation."""

    genuine: list[Lifecycle] = field(default_factory=list)
    hostile_answers: Counter[int] = field(default_factory=Counter)
    refused_genuine: int = 0
    # Genuine callbacks whose custom values the mapping altered (a backslash escape): rejected.
    altered_genuine: list[Lifecycle] = field(default_factory=list)
    genuine_pool: Iterator[Lifecycle] = field(default_factory=lambda: iter(()))

    @property
    def hostile_queued(self) -> int:
        return self.hostile_answers[200]


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with running_pipeline(max_batching_window=0.2) as running:
        # A message that fails instead of being rejected reaches the DLQ in seconds, where the end sees it.
        set_queue_retries(running, visibility_seconds=1)
        yield running


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    pool = scenario_lifecycles(seed=77_000, count=600, forged=0.0, unsigned=0.0, duplicates=0.15)
    return Campaign(genuine_pool=iter(pool))


@pytest.fixture(scope="module", autouse=True)
def module_logs(pipeline: LocalPipeline) -> Iterator[LogCapture]:
    """Every log line of the module, from its first request on."""
    with captured_logs() as capture:
        yield capture


@pytest.fixture(scope="module", autouse=True)
def inbox(pipeline: LocalPipeline) -> AlertObserver:
    """The alerts topic's subscriber, from the module's first request on."""
    return alert_observer(pipeline, "fuzz-alerts")


@pytest.fixture(scope="module")
def http(pipeline: LocalPipeline) -> Iterator[RawHttp]:
    connection = RawHttp(pipeline.host, pipeline.http_port, pipeline.domain)
    yield connection
    connection.close()


# --- raw HTTP -----------------------------------------------------------------------------------------


class RawHttp:
    """One kept-alive connection to the local gateway that sends requests byte for byte.

    Kept alive because the gateway, like API Gateway, serves each connection
    on its own thread (with its own SQS client): a connection per request
    would measure connection set-up, not the routes.
    """

    def __init__(self, host: str, port: int, domain: str) -> None:
        self._address = (host, port)
        self._domain = domain.encode("ascii")
        self._socket: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._buffer = b""

    def _read_until(self, marker: bytes) -> bytes:
        assert self._socket is not None
        while marker not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, size: int) -> bytes:
        assert self._socket is not None
        while len(self._buffer) < size:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self._buffer += chunk
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return body

    def post(
        self, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes, method: bytes = b"POST"
    ) -> int:
        """Send one request; the status code of its answer (the connection is reopened when closed)."""
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + self._domain]
        lines += [name + b": " + value for name, value in headers]
        lines += [f"Content-Length: {len(body)}".encode("ascii"), b"", b""]
        request = b"\r\n".join(lines) + body
        for attempt in (1, 2):
            if self._socket is None:
                self._socket = socket.create_connection(self._address, timeout=30)
            try:
                self._socket.sendall(request)
                head = self._read_until(b"\r\n\r\n")
            except (ConnectionError, BrokenPipeError):
                # A kept-alive connection the server closed after its last answer: once more on a new one
                self.close()
                if attempt == 2:
                    raise
                continue
            status_line, *header_lines = head.split(b"\r\n")
            length = 0
            closing = False
            for line in header_lines:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
                if name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                    closing = True
            self._read_exactly(length)
            if closing or status_line.startswith(b"HTTP/1.0"):
                self.close()
            return int(status_line.split(b" ")[1])
        raise AssertionError("unreachable")


def post_signed(pipeline: LocalPipeline, http: RawHttp, lifecycle: Lifecycle) -> list[int]:
    """Post every callback of a lifecycle as Twilio would; the status of each."""
    statuses = []
    for callback in lifecycle.callbacks:
        request = sign(callback, pipeline.api_base_url, pipeline.token)
        parts = urlsplit(request.url)
        target = (parts.path + (f"?{parts.query}" if parts.query else "")).encode("ascii")
        headers = [(name.encode("ascii"), value.encode("utf-8")) for name, value in request.headers.items()]
        statuses.append(http.post(target, headers, request.body.encode("utf-8")))
    return statuses


def send_genuine(pipeline: LocalPipeline, http: RawHttp, campaign: Campaign) -> None:
    """A genuine lifecycle right behind a hostile request, so both share validator batches."""
    lifecycle = next(campaign.genuine_pool)
    assert post_signed(pipeline, http, lifecycle) == [200] * len(lifecycle.callbacks)
    campaign.genuine.append(lifecycle)


def forwarded_query(url: str) -> dict[str, str] | None:
    """The custom values the validator receives for a request to ``url`` (None: API Gateway answers 500)."""
    try:
        message = forward(TwilioRequest(url=url, body="A=1", headers={SIGNATURE_HEADER: "signature"}))
    except MappingFailedError:
        return None
    return {
        name.split(".", 2)[2]: attribute["StringValue"].removeprefix("=")
        for name, attribute in message.attributes.items()
        if name.startswith("Query.")
    }


def gateway_answer(route: str, query: str, signature: bytes | None, body: bytes) -> int:
    """What API Gateway answers, by the api.yaml mapping as tests.support models it (queued = 200).

    Header and query values are substituted into the MessageAttributes JSON
    unescaped: a value that makes it invalid JSON fails the integration.
    HTTP drops the spaces and tabs that lead a header value.
    """
    headers = {}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature.decode("utf-8", errors="replace").lstrip(" \t")
    request = TwilioRequest(
        url=f"https://{DOMAIN}{route}" + (f"?{query}" if query else ""),
        body=body.decode("utf-8", errors="replace"),
        headers=headers,
    )
    try:
        forward(request)
    except MappingFailedError:
        return 500
    return 500 if len(body) > SQS_MAX_MESSAGE_BYTES else 200


# --- hostile requests ---------------------------------------------------------------------------------


def _hostile_form(extra: dict[str, str]) -> bytes:
    return urlencode(
        list(message_status_params("delivered", **{HOSTILE_MARK: "1"}, **extra).items())
    ).encode()


hostile_bodies = st.one_of(
    text.map(str.encode),
    st.binary(max_size=300),
    st.dictionaries(param_names, text, max_size=5).map(lambda value: json.dumps(value).encode()),
    st.dictionaries(param_names, text, max_size=3).map(_hostile_form),
    st.just(_hostile_form({}) + b"&Caller=%2B15550000000"),
    # Under SNS's record limit, over it (rejected as oversized), over SQS's (refused by the gateway)
    st.sampled_from([200, 300, 1100]).map(lambda kb: _hostile_form({"Body": "x" * (kb * 1024)})),
    st.just(b""),
)
# CR and LF end a header line: header injection has its own test below.
header_values = st.one_of(signatures.map(lambda value: value.encode("utf-8")), st.binary(max_size=40)).filter(
    lambda raw: b"\r" not in raw and b"\n" not in raw
)


@HTTP
@given(
    st.sampled_from([b"/twilio", b"/twilio-params"]),
    st.one_of(st.none(), header_values),
    hostile_bodies,
    st.sampled_from([b"application/x-www-form-urlencoded", b"application/json", b"text/plain", b""]),
)
def test_hostile_bodies_and_signature_headers_get_a_defined_answer(
    pipeline: LocalPipeline,
    http: RawHttp,
    campaign: Campaign,
    route: bytes,
    signature: bytes | None,
    body: bytes,
    content_type: bytes,
) -> None:
    # Given any body, content type and signature header (or none)
    headers = [(b"Content-Type", content_type)] if content_type else []
    if signature is not None:
        headers.append((b"X-Twilio-Signature", signature))

    # When it is posted, with a genuine lifecycle right behind it
    status = http.post(route, headers, body)
    campaign.hostile_answers[status] += 1
    send_genuine(pipeline, http, campaign)

    # Then it is queued for the validator to decide (200), or the SQS integration fails (500)
    assert status == gateway_answer(route.decode(), "", signature, body)


_query_text = st.one_of(reserved_heavy_text, st.text(st.sampled_from(RESERVED), max_size=12))


@HTTP
@given(_query_text, _query_text, st.booleans(), st.one_of(st.none(), header_values))
def test_query_strings_with_every_reserved_character_get_a_defined_answer(
    pipeline: LocalPipeline,
    http: RawHttp,
    campaign: Campaign,
    first: str,
    second: str,
    encoded: bool,
    signature: bytes | None,
) -> None:
    # Given values written percent-encoded, or (where HTTP allows) raw in the request line
    if encoded:
        query = f"id={quote(first, safe='')}&category={quote(second, safe='')}"
    else:
        query = f"id={quote(first, safe=RAW_QUERY_SAFE)}&category={quote(second, safe=RAW_QUERY_SAFE)}"
    headers = [(b"Content-Type", b"application/x-www-form-urlencoded")]
    if signature is not None:
        headers.append((b"X-Twilio-Signature", signature))

    status = http.post(f"/twilio-params?{query}".encode("ascii"), headers, _hostile_form({}))
    campaign.hostile_answers[status] += 1
    send_genuine(pipeline, http, campaign)

    assert status == gateway_answer("/twilio-params", query, signature, _hostile_form({}))


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("header splitting", b"X-Twilio-Signature: abc\r\nX-Injected: 1"),
        ("folded header", b"X-Twilio-Signature: abc\r\n def"),
        ("bare CR", b"X-Twilio-Signature: abc\rdef"),
        ("bare LF", b"X-Twilio-Signature: abc\ndef"),
        (
            "JSON breakout",
            b'X-Twilio-Signature: x"},"Domain":{"DataType":"String","StringValue":"=evil.example',
        ),
        ("backslash", b"X-Twilio-Signature: abc\\"),
        ("NUL", b"X-Twilio-Signature: a\x00b"),
        ("UTF-8", "X-Twilio-Signature: sîgnätürè☃".encode()),
    ],
)
def test_header_injection_is_refused_or_rejected(
    pipeline: LocalPipeline, http: RawHttp, campaign: Campaign, name: str, header: bytes
) -> None:
    header_name, _, value = header.partition(b": ")
    # Its own connection: a request the parser misreads would desynchronise a kept-alive one
    hostile = RawHttp(pipeline.host, pipeline.http_port, pipeline.domain)
    try:
        status = hostile.post(
            b"/twilio",
            [(b"Content-Type", b"application/x-www-form-urlencoded"), (header_name, value)],
            _hostile_form({}),
        )
    finally:
        hostile.close()
    campaign.hostile_answers[status] += 1
    send_genuine(pipeline, http, campaign)

    # Refused by HTTP parsing (400) or the mapping (500), or queued for the validator to reject
    assert status in {200, 400, 500}, name


@HTTP
@given(
    st.lists(
        st.text(
            st.one_of(st.sampled_from(RESERVED), ANY_TEXT.filter(lambda c: c not in "\ufffe\uffff")),
            max_size=16,
        ),
        min_size=2,
        max_size=2,
    )
)
def test_genuine_callbacks_with_any_custom_values_are_accepted_or_refused_by_the_mapping(
    pipeline: LocalPipeline, http: RawHttp, campaign: Campaign, values: list[str]
) -> None:
    # Given a genuine callback whose StatusCallback URL carries these custom values
    lifecycle = next(campaign.genuine_pool)
    query = (("id", values[0]), ("category", values[1]))
    custom = replace(
        lifecycle,
        callbacks=tuple(replace(c, route="/twilio-params", query=query) for c in lifecycle.callbacks),
    )

    statuses = post_signed(pipeline, http, custom)

    # Then it is refused (500, Twilio sees it) when a value breaks the MessageAttributes JSON;
    # queued otherwise, to land intact — unless the JSON read a backslash in it as an escape
    url = sign(custom.callbacks[0], pipeline.api_base_url, pipeline.token).url
    received = forwarded_query(f"https://{DOMAIN}/twilio-params?{urlsplit(url).query}")
    if received is None:
        assert set(statuses) == {500}
        campaign.refused_genuine += len(statuses)
    else:
        assert set(statuses) == {200}
        if received == dict(query):
            campaign.genuine.append(custom)
        else:
            campaign.altered_genuine.append(custom)


def test_replayed_valid_callbacks_are_accepted_and_stay_one_record(
    pipeline: LocalPipeline, http: RawHttp, campaign: Campaign
) -> None:
    # Given valid callbacks captured and replayed three more times
    captured = [next(campaign.genuine_pool) for _ in range(10)]
    for _ in range(4):
        for lifecycle in captured:
            assert set(post_signed(pipeline, http, lifecycle)) == {200}
    campaign.genuine += captured  # the end reconciles them: one record each despite four deliveries


def test_the_whole_campaign_reconciles(
    pipeline: LocalPipeline, http: RawHttp, campaign: Campaign, module_logs: LogCapture, inbox: AlertObserver
) -> None:
    # Given everything above has been sent (and, standing alone, at least one genuine lifecycle)
    send_genuine(pipeline, http, campaign)
    expectation = expect(campaign.genuine)

    result = reconcile_scenario(pipeline, expectation, alerts=inbox, deadline_seconds=120)

    # Then every genuine callback landed exactly once (one alert per error), nothing else did,
    # and no DLQ holds anything
    assert result.problems() == [], "\n".join([*result.problems(), json.dumps(result.figures())])
    assert result.landed.idle
    assert hostile_records(pipeline) == []
    # and each hostile request the gateway queued was rejected and counted, and nothing else was
    # (and so were the genuine callbacks whose custom values the mapping altered: a known gap)
    altered = expect(campaign.altered_genuine)
    assert not set(altered.valid) & (set(result.landed.archive) | set(result.landed.items.values()))
    batches = module_logs.json_lines("callback batch ingested")
    assert sum(batch["rejected"] for batch in batches) == campaign.hostile_queued + altered.valid_sent
    assert sum(batch["failed"] for batch in batches) == 0
    # and no log line carried the token or a phone number
    numbers = phone_numbers_of(campaign.genuine) | HOSTILE_NUMBERS
    assert leaks(module_logs.snapshot(), [TOKEN], numbers) == []
    figures = {
        "hostile_answers": dict(campaign.hostile_answers),
        "genuine_refused": campaign.refused_genuine,
        "genuine_altered_and_rejected": altered.valid_sent,
    }
    print(json.dumps({**figures, **result.figures()}))


def hostile_records(pipeline: LocalPipeline) -> list[str]:
    """Archive objects and status items holding a hostile request's marker parameter."""
    client, outputs = client_factory(pipeline), outputs_of(pipeline)
    s3, bucket = client("s3"), outputs["ArchiveBucketName"]
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if HOSTILE_MARK.encode() in gzip.decompress(
                s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            ):
                found.append(item["Key"])
    for page in client("dynamodb").get_paginator("scan").paginate(TableName=outputs["StatusTableName"]):
        found += [item["sid"]["S"] for item in page.get("Items", []) if HOSTILE_MARK in json.dumps(item)]
    return found
