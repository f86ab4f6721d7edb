"""Where a status sits in its resource's lifecycle, so current status only moves forward.

Messages, recordings and transcriptions order by status rank (a late ``sent``
never replaces ``delivered``); calls and conferences order by Twilio's
``SequenceNumber`` when present, else by status rank.
Terminal outcomes share a rank: whichever arrives first stays current.
"""

from __future__ import annotations

from collections.abc import Mapping

MESSAGE_RANKS: Mapping[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "receiving": 3,
    "sent": 4,
    "received": 5,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "canceled": 5,
    "partially_delivered": 5,
    "read": 6,
}
CALL_RANKS: Mapping[str, int] = {
    "queued": 1,
    "initiated": 2,
    "ringing": 3,
    "in-progress": 4,
    "answered": 4,
    "completed": 5,
    "busy": 5,
    "no-answer": 5,
    "canceled": 5,
    "failed": 5,
}
RECORDING_RANKS: Mapping[str, int] = {"in-progress": 1, "completed": 2, "absent": 2, "failed": 2}
TRANSCRIPTION_RANKS: Mapping[str, int] = {"in-progress": 1, "completed": 2, "failed": 2}
RANKS_BY_PRODUCT: Mapping[str, Mapping[str, int]] = {
    "message": MESSAGE_RANKS,
    "call": CALL_RANKS,
    "recording": RECORDING_RANKS,
    "transcription": TRANSCRIPTION_RANKS,
}
# Products whose callbacks carry Twilio's SequenceNumber, which orders them exactly.
SEQUENCED_PRODUCTS = frozenset({"call", "conference"})
UNKNOWN_RANK = 0


def status_rank(product: str, status: str | None) -> int:
    """Rank of a status within its product's lifecycle; unknown statuses rank lowest."""
    if not status:
        return UNKNOWN_RANK
    return RANKS_BY_PRODUCT.get(product, {}).get(status.lower(), UNKNOWN_RANK)


def lifecycle_position(product: str, status: str | None, twilio: Mapping[str, str]) -> int:
    """A number that only grows as a resource moves through its lifecycle."""
    if product in SEQUENCED_PRODUCTS:
        sequence = twilio.get("SequenceNumber", "")
        if sequence.isdigit():
            return int(sequence)
    return status_rank(product, status)
