"""Hypothesis strategies for hostile and genuine Twilio callbacks.

Text never holds lone surrogates: nothing on the wire can (HTTP bodies are
bytes decoded by API Gateway, SQS refuses them), so they would only test
Python's codecs.
"""

from __future__ import annotations

import base64

from hypothesis import strategies as st

# Characters every part of a URL query treats specially, plus the ones JSON and HTTP headers do.
RESERVED = ":/?#[]@!$&'()*+,;=% \"\\<>{}|^`~"
# Anything but lone surrogates (Cs); control characters included.
ANY_TEXT = st.characters(exclude_categories=["Cs"])

text = st.text(ANY_TEXT, max_size=40)
reserved_heavy_text = st.text(st.one_of(st.sampled_from(RESERVED), ANY_TEXT), max_size=30)
param_names = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="&=+%"), min_size=1, max_size=16
)
form_params = st.dictionaries(param_names, text, min_size=1, max_size=8)

SIGNATURE_SPECIALS = "\"\\\r\n\t\x00'{}:,é☃"
signatures = st.one_of(
    st.text(ANY_TEXT, max_size=40),
    st.text(st.sampled_from(SIGNATURE_SPECIALS + "abcXYZ0189+/="), min_size=1, max_size=40),
    st.binary(min_size=20, max_size=20).map(lambda raw: base64.b64encode(raw).decode("ascii")),
)

# What API Gateway can report as $context.domainName: DNS names, optionally with a port.
hostnames = st.from_regex(
    r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,3}\Z"
)
domains = st.one_of(
    hostnames,
    st.tuples(hostnames, st.integers(min_value=1, max_value=65535)).map(lambda pair: f"{pair[0]}:{pair[1]}"),
)
paths = st.sampled_from(["/twilio", "/twilio-params", "/prod/twilio", "/twilio/"])

# Custom query values a StatusCallback URL may carry: anything, reserved characters often.
custom_values = st.one_of(st.just(""), reserved_heavy_text, text)
