"""Sample SQS events for the validator (events/StatusCallbackHandler/*.json), built reproducibly.

Each event is what the validator receives after API Gateway forwarded signed
(or deliberately bad) Twilio requests per api.yaml. They are signed with
``TEST_AUTH_TOKEN`` for the API domain ``API_DOMAIN``. Regenerate after
changing api.yaml or the callback shapes, from the repository root:

    .venv/bin/python -m tests.support.ingest_events
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.support.api_gateway import (
    API_BASE_URL,
    REPO_ROOT,
    ForwardedMessage,
    forward,
    lambda_event,
    lambda_sqs_record,
)
from tests.support.signing import (
    TwilioRequest,
    call_status_params,
    form_body,
    message_status_params,
    sign,
    signed_callback,
    unsigned_callback,
    with_signature,
)

EVENTS_DIR = REPO_ROOT / "events" / "StatusCallbackHandler"
# 2026-01-01T00:00:00Z: fixed so the files never change unless their content does.
SENT_TIMESTAMP = 1_767_225_600_000
CALLBACK_URL = f"{API_BASE_URL}/twilio"
# id = "order 42 & co=1+1", category = "O'Brien café", written with %20 for spaces.
PARAMS_URL = f"{API_BASE_URL}/twilio-params?id=order%2042%20%26%20co%3D1%2B1&category=O%27Brien%20caf%C3%A9"


def _requests() -> dict[str, TwilioRequest]:
    delivered = message_status_params("delivered")
    return {
        "messaging-delivered": signed_callback(CALLBACK_URL, delivered),
        "voice-completed": signed_callback(
            CALLBACK_URL, call_status_params("completed", sequence_number="4")
        ),
        "params-custom-values": signed_callback(PARAMS_URL, message_status_params("sent")),
        "forged-signature": with_signature(
            signed_callback(CALLBACK_URL, message_status_params("failed", ErrorCode="30008")),
            sign(
                CALLBACK_URL,
                message_status_params("failed", ErrorCode="30008"),
                token="not-the-account-token",
            ),
        ),
        "missing-signature": unsigned_callback(CALLBACK_URL, form_body(delivered)),
        "malformed-body": TwilioRequest(
            CALLBACK_URL,
            "this is not a form body",
            {"X-Twilio-Signature": sign(CALLBACK_URL, {})},
        ),
    }


def _record(name: str, message: ForwardedMessage, offset: int = 0) -> dict[str, Any]:
    message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"twilio-status-callbacks/events/{name}/{offset}"))
    return lambda_sqs_record(message, message_id=message_id, sent_timestamp=SENT_TIMESTAMP + offset)


def build_events() -> dict[str, dict[str, Any]]:
    """Every sample event by file stem: one per case, and one batch mixing them with a Twilio retry."""
    forwarded = {name: forward(request) for name, request in _requests().items()}
    events = {name: lambda_event([_record(name, message)]) for name, message in forwarded.items()}
    mixed = [*forwarded.items(), ("messaging-delivered", forwarded["messaging-delivered"])]
    events["mixed-batch"] = lambda_event(
        _record(f"mixed-batch/{name}", message, offset) for offset, (name, message) in enumerate(mixed)
    )
    return events


def render(event: dict[str, Any]) -> str:
    """The committed file text of an event."""
    return json.dumps(event, indent=2, ensure_ascii=False) + "\n"


def main(directory: Path = EVENTS_DIR) -> int:
    """Write every event to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, event in build_events().items():
        (directory / f"{name}.json").write_text(render(event), encoding="utf-8")
        print(f"wrote {directory / name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
