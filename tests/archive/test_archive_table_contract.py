"""The Glue table describes what the archiver really writes: columns, types, SerDe, partition layout.

The table is read from the template and the objects from a moto bucket the
real handler wrote to, so a change on either side that Athena would choke on
fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from archiver_handler import Dependencies, handle
from aws_lambda_powertools.utilities.typing import LambdaContext

from status_callbacks.domain import archive
from tests.archive.builders import BUCKET, load_event

Archived = Callable[[], dict[str, list[dict[str, Any]]]]
# Java date pattern letters the projection format may use, and their strftime equivalents.
JAVA_TO_STRFTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d"}


def _table(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["ArchiveTable"]["Properties"]["TableInput"]


def _matches(hive_type: str, value: Any) -> bool:
    """Would the OpenX SerDe read this JSON value into this Hive column type without loss?"""
    if hive_type in {"int", "bigint"}:
        return isinstance(value, int) and not isinstance(value, bool)
    if hive_type == "string":
        return value is None or isinstance(value, str)
    if hive_type == "map<string,string>":
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    raise AssertionError(f"column type {hive_type} is not covered by this test")


@pytest.fixture
def written(
    deps: Dependencies, lambda_context: LambdaContext, archived: Archived
) -> dict[str, list[dict[str, Any]]]:
    """What the archiver wrote for the sample two-day batch (with an error code and custom params)."""
    response = handle(load_event("sqs-batch-two-days.json"), lambda_context, deps)
    assert response == {"batchItemFailures": []}
    return archived()


def test_every_archived_line_has_exactly_the_tables_columns_with_matching_types(
    template: dict[str, Any], written: dict[str, list[dict[str, Any]]]
):
    # Given the table's columns and the records the archiver wrote
    columns = {column["Name"]: column["Type"] for column in _table(template)["StorageDescriptor"]["Columns"]}
    records = [record for lines in written.values() for record in lines]
    assert any(record["error_code"] for record in records) and any(record["custom"] for record in records)

    # Then each line's keys are the columns (no column reads NULL forever, no field is invisible)
    for record in records:
        assert set(record) == set(columns)
        # And each value has the type its column declares
        for name, hive_type in columns.items():
            assert _matches(hive_type, record[name]), f"{name}={record[name]!r} is not {hive_type}"


def test_the_envelope_columns_come_first_then_twilio_and_custom(template: dict[str, Any]):
    names = [column["Name"] for column in _table(template)["StorageDescriptor"]["Columns"]]

    assert names == [
        "schema_version",
        "event_id",
        "product",
        "sid",
        "status",
        "account_sid",
        "error_code",
        "received_at",
        "route",
        "twilio",
        "custom",
    ]


def test_the_serde_reads_gzip_json_lines_and_keeps_twilio_parameter_case(
    template: dict[str, Any], written: dict[str, list[dict[str, Any]]]
):
    table = _table(template)
    storage = table["StorageDescriptor"]

    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert storage["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert table["Parameters"]["compressionType"] == "gzip"
    # Athena picks the codec from the extension
    assert all(key.endswith(".gz") for key in written)
    # With case.insensitive off, top-level keys must already be lower case for the columns to match,
    # and the map columns keep Twilio's names (MessageSid, not messagesid)
    assert storage["SerdeInfo"]["Parameters"]["case.insensitive"] == "false"
    for records in written.values():
        for record in records:
            assert all(key == key.lower() for key in record)
            assert "MessageSid" in record["twilio"]


def test_object_keys_sit_where_the_projection_template_points_for_their_records_day(
    template: dict[str, Any], written: dict[str, list[dict[str, Any]]]
):
    # Given the projection's location template with the deployed bucket substituted
    parameters = _table(template)["Parameters"]
    location_template = parameters["storage.location.template"]["Fn::Sub"]
    assert location_template.count("${!dt}") == 1
    location_for_day = location_template.replace("${ArchiveBucket}", BUCKET)

    for key, records in written.items():
        for record in records:
            # When the record's day is projected
            day = archive.partition_of(record["received_at"])
            location = location_for_day.replace("${!dt}", day)
            # Then the object holding it is directly under that location
            assert f"s3://{BUCKET}/{key}".rsplit("/", 1)[0] + "/" == location


def test_the_projection_is_a_daily_date_in_the_format_the_archiver_writes(template: dict[str, Any]):
    table = _table(template)
    parameters = table["Parameters"]
    (partition_key,) = table["PartitionKeys"]

    assert partition_key["Name"] == archive.PARTITION_COLUMN
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.dt.type"] == "date"
    assert (parameters["projection.dt.interval"], parameters["projection.dt.interval.unit"]) == ("1", "DAYS")
    java_format = parameters["projection.dt.format"]
    strftime_format = re.sub("yyyy|MM|dd", lambda m: JAVA_TO_STRFTIME[m.group(0)], java_format)
    assert strftime_format == archive.PARTITION_DATE_FORMAT
    assert datetime.strptime(archive.partition_of(1_769_904_000_000), strftime_format).day == 1
    assert re.fullmatch(
        r"NOW-\$\{PartitionProjectionYears\}YEARS,NOW", parameters["projection.dt.range"]["Fn::Sub"]
    )


def test_table_location_lifecycle_iam_and_function_agree_on_the_archive_prefix(template: dict[str, Any]):
    resources = template["Resources"]
    prefix = archive.ARCHIVE_PREFIX
    table = _table(template)
    lifecycle_prefixes = {
        rule["Fn::If"][1]["Prefix"]
        for rule in resources["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        if "Fn::If" in rule and "Prefix" in rule["Fn::If"][1]
    }
    iam = [
        statement["Resource"]
        for policy in resources["ArchiverRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Action"] == "s3:PutObject"
    ]

    assert table["StorageDescriptor"]["Location"] == {"Fn::Sub": f"s3://${{ArchiveBucket}}/{prefix}"}
    assert table["Parameters"]["storage.location.template"]["Fn::Sub"].startswith(
        f"s3://${{ArchiveBucket}}/{archive.partition_prefix('${!dt}', prefix)}"
    )
    assert resources["ArchiverFunction"]["Properties"]["Environment"]["Variables"]["ARCHIVE_PREFIX"] == prefix
    assert lifecycle_prefixes == {prefix}
    assert iam == [{"Fn::Sub": f"${{ArchiveBucket.Arn}}/{prefix}*"}]
    assert template["Outputs"]["ArchivePrefix"]["Value"] == prefix
