"""Fixtures for the S3 archive: a moto bucket, the stack template, injected S3 faults."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import boto3
import pytest
from archiver_handler import Dependencies, Settings
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from moto import mock_aws

from aws_emulator.templates import load_template
from status_callbacks.domain.archive import decode_records
from status_callbacks.observability import metrics
from tests.archive.builders import BUCKET, TEMPLATE_PATH, HttpStatus, InvocationContext


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics are a module-level singleton; keep each test's counts apart."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture
def lambda_context() -> LambdaContext:
    return cast(LambdaContext, InvocationContext())


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto-backed S3 client with the archive bucket; no retries, so injected faults surface at once."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def deps(s3: Any) -> Dependencies:
    return Dependencies(settings=Settings(bucket=BUCKET), s3=s3)


@pytest.fixture
def archived(s3: Any) -> Callable[[], dict[str, list[dict[str, Any]]]]:
    """Every archive object in the bucket, decoded: key -> record dicts."""

    def read() -> dict[str, list[dict[str, Any]]]:
        listing = s3.list_objects_v2(Bucket=BUCKET)
        return {
            item["Key"]: decode_records(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
            for item in listing.get("Contents", [])
        }

    return read


@pytest.fixture
def fail_puts_for(s3: Any) -> Callable[[str], None]:
    """Make S3 answer PutObject with 503 SlowDown for keys containing a marker (e.g. a partition).

    A ``before-call`` hook on the moto-backed client returns the error response
    in place of the HTTP call, exactly as botocore would surface a real one. The
    marker is matched against the percent-encoded path, so ``=`` reads ``%3D``.
    """

    def install(marker: str) -> None:
        def refuse(params: dict[str, Any], model: Any, **_: Any) -> Any:
            if marker not in params.get("url_path", ""):
                return None
            error = {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}
            return HttpStatus(503), {**error, "ResponseMetadata": {"HTTPStatusCode": 503}}

        s3.meta.events.register("before-call.s3.PutObject", refuse, unique_id=f"refuse-{marker}")

    return install
