"""``query``: a SID's history, errors by code, a number's flags and archived records, on seeded stores.

The stores are seeded through the layer's own write paths (status_store,
error_routing, archive), the ones the Lambdas use, from scenarios ``send``
would generate.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_harness.scenarios import Kind, ScenarioOptions, generate
from status_callbacks.adapters import dynamodb
from status_callbacks.domain import archive, flags, routes
from status_callbacks.domain.record import CallbackRecord, build_record
from status_callbacks.domain.validation import RejectionReason
from tests.cli.builders import API_BASE_URL, keep_rejected, rejected_by_validator, replace_outputs
from tests.support.signing import message_status_params, signed_callback
from twilio_callbacks_cli import rejected
from twilio_callbacks_cli.main import main
from twilio_callbacks_cli.output import mask_number
from twilio_callbacks_cli.timeframes import parse_time

NOW_MS = int(time.time() * 1000)
MINUTE_MS = 60_000


def run(capsys, *arguments):
    code = main(["query", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records_of(lifecycle, first_received_at):
    """The records the validator would publish for a lifecycle's callbacks, in arrival order."""
    return [
        build_record(callback.form, dict(callback.query), callback.route, first_received_at + index * 1000)
        for index, callback in enumerate(lifecycle.callbacks)
    ]


def store(pipeline, records):
    """Write records as the status store's writer does, one at a time in arrival order."""
    table = pipeline.output("StatusTableName")
    for record in records:
        dynamodb.put_event(pipeline.dynamodb, table, record)
        dynamodb.advance_current(pipeline.dynamodb, table, record)


def flag(pipeline, record: CallbackRecord):
    """Record the number flag the error router's flagger would for this error callback."""
    detail = json.loads(json.dumps(routes.error_detail(record)))
    number_flag = flags.number_flag_from_detail(detail)
    assert isinstance(number_flag, flags.NumberFlag)
    dynamodb.record_number_flag(
        pipeline.dynamodb, pipeline.output("NumberFlagsTableName"), number_flag, record.received_at
    )


# --- message -----------------------------------------------------------------------


def test_message_history_and_lifecycle_aware_current_status(pipeline, capsys):
    # Given a message whose callbacks arrived out of order (delivered before sent), with a Twilio retry
    lifecycle = next(
        lc
        for lc in generate(ScenarioOptions(count=20, seed=1, out_of_order=1.0, duplicates=0.3))
        if [c.status for c in lc.callbacks if c.attempt == 1][-1] == "sent"
    )
    store(pipeline, records_of(lifecycle, NOW_MS))
    # When its history is queried
    code, out, _ = run(capsys, "message", lifecycle.sid, "--json")
    report = json.loads(out)
    # Then the current status is the furthest along, not the last to arrive
    assert code == 0
    assert report["sid"] == lifecycle.sid
    assert report["product"] == "message"
    assert report["status"] == "delivered"
    # And each status appears once, in lifecycle order, even though one arrived twice
    assert [event["status"] for event in report["events"]] == ["queued", "sent", "delivered"]
    assert all(event["route"] == "/twilio" for event in report["events"])
    # And phone numbers are masked unless asked for
    to_number = lifecycle.callbacks[0].form["To"]
    assert to_number not in out
    assert report["events"][0]["twilio"]["To"] == mask_number(to_number)
    code, out, _ = run(capsys, "message", lifecycle.sid, "--json", "--show-numbers")
    assert json.loads(out)["events"][0]["twilio"]["To"] == to_number


def test_failed_message_reports_its_error_code(pipeline, capsys):
    lifecycle = next(iter(generate(ScenarioOptions(seed=2, error_rate=1.0, error_codes=("30006",)))))
    store(pipeline, records_of(lifecycle, NOW_MS))
    code, out, _ = run(capsys, "message", lifecycle.sid, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["status"] == "undelivered"
    assert report["error_code"] == "30006"
    assert report["events"][-1]["error_code"] == "30006"


def test_call_history_orders_by_sequence_number(pipeline, capsys):
    # Given a call whose progress events arrived shuffled
    lifecycle = next(iter(generate(ScenarioOptions(seed=3, kind=Kind.CALL, out_of_order=1.0))))
    store(pipeline, records_of(lifecycle, NOW_MS))
    # When it is queried (human output)
    code, out, _ = run(capsys, "message", lifecycle.sid)
    # Then it is completed and its events read in sequence
    assert code == 0
    assert "current status  completed" in out
    rows = [line.split() for line in out.splitlines() if line[:4].isdigit()]
    assert [row[1] for row in rows] == ["initiated", "ringing", "in-progress", "completed"]
    assert [row[3] for row in rows] == ["0", "1", "2", "3"]


def test_custom_params_show_in_the_history(pipeline, capsys):
    custom = (("id", "order 42"), ("category", "alerts & more"))
    lifecycle = next(iter(generate(ScenarioOptions(seed=4, custom_params=custom))))
    store(pipeline, records_of(lifecycle, NOW_MS))
    code, out, _ = run(capsys, "message", lifecycle.sid, "--json")
    assert code == 0
    assert all(event["custom"] == dict(custom) for event in json.loads(out)["events"])
    assert all(event["route"] == "/twilio-params" for event in json.loads(out)["events"])


def test_unknown_sid_exits_4(pipeline, capsys):
    code, out, err = run(capsys, "message", "SM" + "0" * 32)
    assert code == 4
    assert out == ""
    assert "no callbacks stored for SM" in err


def rejected_for(pipeline, sid, received_ats):
    """Forged or wrong-token callbacks naming this SID, kept by the validator, one object each."""
    url = f"{API_BASE_URL}/twilio"
    for index, received_at in enumerate(received_ats):
        request = signed_callback(url, message_status_params(MessageSid=sid, SmsSid=sid), "not-the-token")
        keep_rejected(pipeline, [rejected_by_validator(request, f"m-{sid[-4:]}-{index}", received_at)])


def test_a_sid_with_nothing_stored_but_rejected_requests_says_why(pipeline, capsys):
    # Given no callbacks stored for a SID, but two requests for it rejected today (and one 8 days ago)
    sid = "SM" + "7" * 32
    eight_days_ago = NOW_MS - 8 * 24 * 60 * MINUTE_MS
    rejected_for(pipeline, sid, [eight_days_ago, NOW_MS - 20 * MINUTE_MS, NOW_MS - MINUTE_MS])
    # When it is queried
    code, out, err = run(capsys, "message", sid)
    code_json, out_json, _ = run(capsys, "message", sid, "--json")
    # Then it still exits 4, but says when and why its requests were rejected, and how to replay them
    assert code == code_json == 4
    assert f"requests for {sid} rejected in the last 7 days: 2" in out
    assert f"InvalidSignature: {RejectionReason.INVALID_SIGNATURE.remedy}" in out
    day = datetime.fromtimestamp((NOW_MS - 20 * MINUTE_MS) / 1000, tz=UTC).strftime("%Y-%m-%d")
    assert f"twilio-callbacks rejected replay --since {day}" in out
    assert f"no callbacks stored for {sid}, but rejected requests for it are kept (2)" in err
    report = json.loads(out_json)
    assert report["events"] == []
    assert [r["reason"] for r in report["rejected"]["requests"]] == ["InvalidSignature"] * 2
    assert report["rejected"]["truncated"] is False


def test_a_stored_sid_lists_its_rejected_requests_after_its_history(pipeline, capsys):
    # Given a message's lifecycle stored, and one more request for it rejected
    lifecycle = next(iter(generate(ScenarioOptions(seed=5))))
    store(pipeline, records_of(lifecycle, NOW_MS - 10 * MINUTE_MS))
    rejected_for(pipeline, lifecycle.sid, [NOW_MS - MINUTE_MS])
    # When it is queried
    code, out, _ = run(capsys, "message", lifecycle.sid)
    _, out_json, _ = run(capsys, "message", lifecycle.sid, "--json")
    # Then the history comes first, then the rejection
    assert code == 0
    rejections = f"requests for {lifecycle.sid} rejected in the last 7 days: 1"
    assert out.index("current status") < out.index(rejections)
    assert len(json.loads(out_json)["rejected"]["requests"]) == 1


def test_the_sid_search_reads_a_bounded_number_of_objects_and_says_so(pipeline, capsys, monkeypatch):
    # Given three objects naming a SID, and a search bounded to the newest two
    sid = "SM" + "8" * 32
    rejected_for(pipeline, sid, [NOW_MS - 3 * MINUTE_MS, NOW_MS - 2 * MINUTE_MS, NOW_MS - MINUTE_MS])
    monkeypatch.setattr(rejected, "MAX_REJECTED_OBJECTS", 2)
    # When it is queried
    _, out, _ = run(capsys, "message", sid)
    # Then the two newest are shown, and the bound is said
    assert "rejected in the last 7 days: 2" in out
    assert "searched the newest 2 of 3 rejected-request objects" in out


# --- errors ------------------------------------------------------------------------


@pytest.fixture
def seeded_errors(pipeline):
    """Error callbacks at known times: 30007 twice recently, 30003 once, 30007 two days ago, one healthy."""
    failing_30007 = list(generate(ScenarioOptions(count=3, seed=5, error_rate=1.0, error_codes=("30007",))))
    failing_30003 = list(generate(ScenarioOptions(count=1, seed=6, error_rate=1.0, error_codes=("30003",))))
    healthy = list(generate(ScenarioOptions(count=1, seed=7)))
    by_code = {"30007": failing_30007, "30003": failing_30003, "ok": healthy}
    plan = [
        ("30007", 0, NOW_MS - 10 * MINUTE_MS),
        ("30007", 1, NOW_MS - 20 * MINUTE_MS),
        ("30003", 0, NOW_MS - 30 * MINUTE_MS),
        ("30007", 2, NOW_MS - 2 * 24 * 60 * MINUTE_MS),
        ("ok", 0, NOW_MS - 5 * MINUTE_MS),
    ]
    sids = {}
    for code, index, received_at in plan:
        lifecycle = by_code[code][index]
        store(pipeline, records_of(lifecycle, received_at))
        sids[(code, index)] = lifecycle.sid
    return sids


def test_errors_by_code_over_the_last_hour(seeded_errors, capsys):
    # When 30007 errors of the last hour are asked for
    code, out, _ = run(capsys, "errors", "--code", "30007", "--since", "1h", "--json")
    report = json.loads(out)
    # Then the two recent ones are listed oldest first, not the one from two days ago
    assert code == 0
    assert [error["sid"] for error in report["errors"]] == [
        seeded_errors[("30007", 1)],
        seeded_errors[("30007", 0)],
    ]
    assert {error["error_code"] for error in report["errors"]} == {"30007"}
    assert {error["status"] for error in report["errors"]} == {"undelivered"}
    assert report["counts"]["30007"]["count"] == 2
    assert report["counts"]["30007"]["reason"] == routes.route_for("30007").reason


def test_errors_without_a_code_cover_the_routing_table(seeded_errors, capsys):
    # When errors of the last three days are asked for without a code
    day = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d")
    code, out, _ = run(capsys, "errors", "--since", day, "--json")
    report = json.loads(out)
    # Then every code in the error router's table was searched and all four errors are found
    assert code == 0
    assert set(report["codes"]) == set(routes.ROUTES)
    assert {code: entry["count"] for code, entry in report["counts"].items()} == {"30003": 1, "30007": 3}
    assert seeded_errors[("ok", 0)] not in out


def test_errors_human_output(seeded_errors, capsys):
    code, out, _ = run(capsys, "errors", "--since", "2h")
    assert code == 0
    assert "code   count  reason" in out
    assert any(line.startswith("30007  2 ") for line in out.splitlines())
    assert seeded_errors[("30003", 0)] in out


def test_errors_with_an_iso_range(seeded_errors, capsys):
    since = datetime.fromtimestamp((NOW_MS - 25 * MINUTE_MS) / 1000, UTC).isoformat()
    until = datetime.fromtimestamp((NOW_MS - 15 * MINUTE_MS) / 1000, UTC).isoformat().replace("+00:00", "Z")
    code, out, _ = run(capsys, "errors", "--code", "30007", "--since", since, "--until", until, "--json")
    assert code == 0
    assert [error["sid"] for error in json.loads(out)["errors"]] == [seeded_errors[("30007", 1)]]


def test_errors_with_nothing_found_say_so(pipeline, capsys):
    code, out, _ = run(capsys, "errors", "--code", "30034", "--since", "1h")
    assert code == 0
    assert "none (codes searched: 30034)" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", datetime(2026, 11, 22, 11, 0, tzinfo=UTC)),
        ("30m", datetime(2026, 11, 22, 11, 30, tzinfo=UTC)),
        ("7d", datetime(2026, 11, 15, 12, 0, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-21T08:15:00Z", datetime(2026, 11, 21, 8, 15, tzinfo=UTC)),
        ("2026-11-21T08:15:00+02:00", datetime(2026, 11, 21, 6, 15, tzinfo=UTC)),
        ("2026-11-21T08:15:00", datetime(2026, 11, 21, 8, 15, tzinfo=UTC)),
    ],
)
def test_time_forms(text, expected):
    assert parse_time(text, datetime(2026, 11, 22, 12, 0, tzinfo=UTC)) == expected


def test_unreadable_time_is_a_usage_error(pipeline, capsys):
    code, _, err = run(capsys, "errors", "--since", "yesterday")
    assert code == 2
    assert "cannot read time 'yesterday'" in err


# --- number ------------------------------------------------------------------------


def test_number_flags(pipeline, capsys):
    # Given a number that failed twice with 30003 and once with 21610, and another number
    lifecycles = list(generate(ScenarioOptions(count=3, seed=6, error_rate=1.0, error_codes=("30003",))))
    opted_out = next(iter(generate(ScenarioOptions(seed=7, error_rate=1.0, error_codes=("21610",)))))
    number = lifecycles[0].callbacks[-1].form["To"]
    for index, lifecycle in enumerate([lifecycles[0], lifecycles[1], opted_out]):
        record = records_of(lifecycle, NOW_MS - (3 - index) * MINUTE_MS)[-1]
        twilio = {**record.twilio, "To": number}
        flag(pipeline, build_record(twilio, {}, record.route, record.received_at))
    other = records_of(lifecycles[2], NOW_MS)[-1]
    flag(pipeline, build_record({**other.twilio, "To": "+15550000001"}, {}, other.route, other.received_at))
    # When the number is queried
    code, out, _ = run(capsys, "number", number, "--json")
    report = json.loads(out)
    # Then its flags show per code: reason, how often, when first and last seen
    assert code == 0
    assert report["phone_number"] == number
    by_code = {flag_entry["error_code"]: flag_entry for flag_entry in report["flags"]}
    assert set(by_code) == {"21610", "30003"}
    assert by_code["30003"]["callbacks"] == 2
    assert by_code["30003"]["reason"] == routes.route_for("30003").reason
    assert by_code["30003"]["first_seen_at"] < by_code["30003"]["last_seen_at"]
    assert by_code["21610"]["callbacks"] == 1 and by_code["21610"]["last_sid"] == opted_out.sid
    # And the human output shows the number (the user asked for it)
    code, out, _ = run(capsys, "number", number)
    assert code == 0 and out.startswith(number)
    assert "30003" in out and "21610" in out


def test_number_without_flags_exits_4(pipeline, capsys):
    code, _, err = run(capsys, "number", "+15559999999")
    assert code == 4
    assert "no flags for +15559999999" in err


def test_number_must_be_e164(pipeline, capsys):
    code, _, err = run(capsys, "number", "555-0100")
    assert code == 2
    assert "E.164" in err


# --- archive -----------------------------------------------------------------------


@pytest.fixture
def archived(pipeline):
    """Two days of archived lifecycles, written as the archiver writes batches."""
    day_one = datetime(2026, 11, 20, 23, 59, 58, tzinfo=UTC)
    day_two = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    lifecycles = list(generate(ScenarioOptions(count=6, seed=8, kind=Kind.MIXED)))
    batches = [
        [r for lc in lifecycles[:3] for r in records_of(lc, int(day_one.timestamp() * 1000))],
        [r for lc in lifecycles[3:] for r in records_of(lc, int(day_two.timestamp() * 1000))],
    ]
    for number, batch in enumerate(batches):
        plan = archive.plan_archive((f"{number}-{index}", record) for index, record in enumerate(batch))
        for archive_object in plan.objects:
            pipeline.s3.put_object(
                Bucket=pipeline.output("ArchiveBucketName"),
                Key=archive_object.key,
                Body=archive_object.body(),
            )
    return lifecycles, batches


def test_archive_of_one_day(archived, capsys):
    _, batches = archived
    # When 2026-11-21 is read (day one's batch straddles midnight into it)
    code, out, _ = run(capsys, "archive", "--date", "2026-11-21", "--limit", "100", "--json")
    report = json.loads(out)
    # Then exactly the records received that UTC day come back, whole and as archived
    expected = {
        r.event_id for batch in batches for r in batch if archive.partition_of(r.received_at) == "2026-11-21"
    }
    assert code == 0
    assert report["prefix"] == "callbacks/dt=2026-11-21/"
    assert {record["event_id"] for record in report["records"]} == expected
    assert not report["truncated"]
    assert all(record["schema_version"] == 1 and record["twilio"] for record in report["records"])
    # And phone numbers inside the records are masked
    assert all("+1555" not in json.dumps(record["twilio"]) for record in report["records"])


def test_archive_for_one_sid_with_a_limit(archived, capsys):
    lifecycles, _ = archived
    sid = lifecycles[4].sid
    code, out, _ = run(capsys, "archive", "--date", "2026-11-21", "--sid", sid, "--json")
    records = json.loads(out)["records"]
    assert code == 0
    assert {record["sid"] for record in records} == {sid}
    assert len(records) == len(lifecycles[4].callbacks)
    code, out, _ = run(capsys, "archive", "--date", "2026-11-21", "--limit", "2", "--json")
    report = json.loads(out)
    assert len(report["records"]) == 2 and report["truncated"]


def test_archive_human_output_and_empty_day(archived, capsys):
    code, out, _ = run(capsys, "archive", "--date", "2026-11-21", "--limit", "3")
    assert code == 0
    assert out.splitlines()[0].startswith(
        "s3://savestatuscallbacktos3-archivebucket/callbacks/dt=2026-11-21/"
    )
    assert "limit reached" in out
    code, out, _ = run(capsys, "archive", "--date", "2026-01-01")
    assert code == 0 and "no records" in out


def test_archive_date_must_be_a_day(pipeline, capsys):
    code, _, err = run(capsys, "archive", "--date", "21/11/2026")
    assert code == 2
    assert "YYYY-MM-DD" in err


def test_query_needs_its_stack(aws, capsys):
    code, _, err = run(capsys, "message", "SM" + "1" * 32)
    assert code == 3
    assert "SaveStatusCallbackToDynamo" in err


# --- alerts ------------------------------------------------------------------------


@pytest.fixture
def inbox(pipeline):
    """The error stack's inbox queue subscribed to its alerts topic as the template does (envelope kept)."""
    sqs = pipeline.sqs
    url = pipeline.output("AlertsInboxQueueUrl")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns = pipeline.clients["sns"]
    topic = pipeline.output("AlertsTopicArn")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "false"})

    def alert(subject, text):
        sns.publish(TopicArn=topic, Subject=subject, Message=text)

    return alert


def test_alerts_show_as_a_person_receives_them_and_stay_in_the_inbox(inbox, capsys):
    # Given two alerts published to the alerts topic
    inbox("[high] Twilio error 30003 on message SM1", "Twilio error 30003 on message SM1\n\nUnreachable.\n")
    inbox("[high] Twilio error 30005 on message SM2", "Twilio error 30005 on message SM2\n")
    # When the inbox is read twice
    code, out, _ = run(capsys, "alerts")
    code_again, out_json, _ = run(capsys, "alerts", "--json")
    # Then each alert reads subject line, blank line, text
    assert code == code_again == 0
    assert "alerts since" in out and ": 2, left in the inbox" in out
    subject = "[high] Twilio error 30003 on message SM1"
    assert f"{subject}\n\nTwilio error 30003 on message SM1\n\nUnreachable." in out
    # And reading took nothing out of the inbox
    report = json.loads(out_json)
    assert [alert["subject"] for alert in report["alerts"]] == [
        "[high] Twilio error 30003 on message SM1",
        "[high] Twilio error 30005 on message SM2",
    ]
    assert report["alerts"][1]["text"] == "Twilio error 30005 on message SM2\n"


def test_alerts_clear_deletes_what_was_shown(inbox, capsys):
    inbox("[high] one", "one\n")

    code, out, _ = run(capsys, "alerts", "--clear")
    _, after, _ = run(capsys, "alerts")

    assert code == 0
    assert "1 deleted from the inbox" in out
    assert after.strip().endswith(": none")


def test_alerts_before_since_are_neither_shown_nor_cleared(inbox, capsys):
    inbox("[high] one", "one\n")
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    _, out, _ = run(capsys, "alerts", "--since", later, "--clear")
    _, after, _ = run(capsys, "alerts", "--json")

    assert out.strip().endswith(": none")
    assert len(json.loads(after)["alerts"]) == 1


def test_alerts_without_an_inbox_exit_4_and_say_how_to_enable_it(pipeline, capsys):
    replace_outputs(pipeline, "errors", AlertsInboxQueueUrl=None)

    code, out, err = run(capsys, "alerts")

    assert code == 4
    assert out == ""
    assert "AlertsInbox=Enabled" in err
