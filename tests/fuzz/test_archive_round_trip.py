"""Every record the validator can publish reads back from the archive unchanged.

Records carry any text Twilio or the StatusCallback URL put in them; the
archive's NDJSON keeps non-ASCII characters unescaped (``ensure_ascii=False``),
so a record may hold U+2028, U+2029 or U+0085 raw — characters Python's
``str.splitlines`` treats as line breaks, while NDJSON ends a line at "\\n" only.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from status_callbacks.domain.archive import decode_records, encode_records
from status_callbacks.domain.record import build_record
from tests.fuzz.strategies import form_params, text

pytestmark = pytest.mark.fuzz

LINE_BREAKS_BUT_NOT_NEWLINE = "\u2028\u2029\x85"


@settings(max_examples=100, deadline=None)
@given(form_params, st.dictionaries(st.sampled_from(["id", "category"]), text, max_size=2))
@example({"MessageSid": "SM1", "MessageStatus": "sent"}, {"category": "before\u2028after"})
def test_every_record_reads_back_from_the_archive_unchanged(
    twilio: dict[str, str], custom: dict[str, str]
) -> None:
    records = [build_record(twilio, custom, "/twilio-params", 1_767_225_600_000)]

    assert decode_records(encode_records(records)) == [record.to_dict() for record in records]


@settings(max_examples=100, deadline=None)
@given(
    form_params,
    st.dictionaries(
        st.sampled_from(["id", "category"]),
        st.text(
            st.characters(exclude_categories=["Cs"], exclude_characters=LINE_BREAKS_BUT_NOT_NEWLINE),
            max_size=20,
        ),
        max_size=2,
    ),
)
def test_records_without_those_characters_read_back_unchanged(
    twilio: dict[str, str], custom: dict[str, str]
) -> None:
    records = [build_record(twilio, custom, "/twilio", 1_767_225_600_000)]

    assert decode_records(encode_records(records)) == [record.to_dict() for record in records]
