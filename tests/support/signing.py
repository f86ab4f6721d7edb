"""Acting as Twilio: signed, form-encoded status callbacks for a URL as a user writes it.

The signature is computed by the official library (`RequestValidator.compute_signature`)
over the StatusCallback URL exactly as configured in Twilio — percent-encoding
and all — plus the form parameters, which is what Twilio does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

# Documented in events/StatusCallbackHandler/README.md; signs test callbacks and sample events only.
TEST_AUTH_TOKEN = "test-auth-token-not-a-secret"
SIGNATURE_HEADER = "X-Twilio-Signature"
# A Twilio webhook egress address, as API Gateway would report the caller.
TWILIO_SOURCE_IP = "54.172.60.1"


def form_body(params: Mapping[str, str]) -> str:
    """The ``application/x-www-form-urlencoded`` body Twilio posts."""
    return urlencode(list(params.items()))


def sign(url: str, params: Mapping[str, str], token: str = TEST_AUTH_TOKEN) -> str:
    """``X-Twilio-Signature`` for this URL (as written) and these form parameters."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


@dataclass(frozen=True)
class TwilioRequest:
    """One HTTP POST as it leaves Twilio."""

    url: str
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str = TWILIO_SOURCE_IP


def signed_callback(
    url: str,
    params: Mapping[str, str],
    token: str = TEST_AUTH_TOKEN,
    source_ip: str = TWILIO_SOURCE_IP,
) -> TwilioRequest:
    """A status callback to ``url`` signed with ``token``."""
    return TwilioRequest(
        url=url,
        body=form_body(params),
        headers={
            SIGNATURE_HEADER: sign(url, params, token),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        source_ip=source_ip,
    )


def unsigned_callback(url: str, body: str, source_ip: str = TWILIO_SOURCE_IP) -> TwilioRequest:
    """A POST without any signature header (someone who is not Twilio)."""
    return TwilioRequest(
        url=url, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}, source_ip=source_ip
    )


def with_signature(request: TwilioRequest, signature: str) -> TwilioRequest:
    """The same request carrying another signature (a forgery or a replay with edits)."""
    headers = {name: value for name, value in request.headers.items() if name.lower() != "x-twilio-signature"}
    headers[SIGNATURE_HEADER] = signature
    return TwilioRequest(url=request.url, body=request.body, headers=headers, source_ip=request.source_ip)


# Realistic callbacks. Phone numbers are from the fictional 555-01xx range.
MESSAGE_SID = "SM0123456789abcdef0123456789abcdef"
CALL_SID = "CA0123456789abcdef0123456789abcdef"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
SUBACCOUNT_SID = "ACfedcba9876543210fedcba9876543210"
TO_NUMBER = "+15555550123"
FROM_NUMBER = "+15555550199"


def message_status_params(status: str = "delivered", **extra: str) -> dict[str, str]:
    """Form parameters of a Programmable Messaging status callback."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": FROM_NUMBER,
        "MessageSid": MESSAGE_SID,
        "MessageStatus": status,
        "SmsSid": MESSAGE_SID,
        "SmsStatus": status,
        "To": TO_NUMBER,
    }
    params.update(extra)
    return params


def call_status_params(status: str = "completed", sequence_number: str = "3", **extra: str) -> dict[str, str]:
    """Form parameters of a Programmable Voice status callback."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallDuration": "42",
        "CallSid": CALL_SID,
        "CallStatus": status,
        "Called": TO_NUMBER,
        "Caller": FROM_NUMBER,
        "Direction": "outbound-api",
        "From": FROM_NUMBER,
        "SequenceNumber": sequence_number,
        "Timestamp": "Mon, 16 Aug 2010 03:45:01 +0000",
        "To": TO_NUMBER,
    }
    params.update(extra)
    return params
