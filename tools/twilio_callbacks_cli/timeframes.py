"""Moments on the command line: ``--since 1h``, ``7d``, ``2026-11-22`` or an ISO 8601 time."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from twilio_callbacks_cli.errors import UsageError

_DURATION = re.compile(r"^(?P<amount>\d+)(?P<unit>[smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time(text: str, now: datetime) -> datetime:
    """``1h``/``30m``/``7d`` ago, a ``YYYY-MM-DD`` day (UTC midnight) or an ISO 8601 time."""
    value = text.strip()
    duration = _DURATION.match(value)
    if duration:
        return now - timedelta(seconds=int(duration["amount"]) * _UNIT_SECONDS[duration["unit"]])
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise UsageError(f"cannot read time {text!r}: use 1h, 30m, 7d, 2026-11-22 or an ISO time") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds, as records and keys count time."""
    return int(moment.timestamp() * 1000)
