"""Printing results: aligned text tables for people, JSON for scripts."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO


def print_json(document: Any, stream: TextIO | None = None) -> None:
    """Indented JSON, non-ASCII kept readable."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


def cell(value: Any) -> str:
    """How one value reads in a table: empty for none, lists joined, numbers as they are."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items()) or "-"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    text_rows = [[cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    lines = [
        "  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * width for width in widths),
    ]
    lines.extend(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in text_rows
    )
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name   value`` lines, names padded to one column."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {cell(value)}".rstrip() for name, value in pairs)


def iso_ms(epoch_ms: int | None) -> str | None:
    """Epoch milliseconds as an ISO 8601 UTC time, to the millisecond."""
    if epoch_ms is None:
        return None
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- phone numbers ------------------------------------------------------------------

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def mask_number(value: str) -> str:
    """``+15550100123`` → ``+1*******23``: enough to tell numbers apart, not to dial them."""
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def masked(params: Mapping[str, Any], show_numbers: bool) -> dict[str, Any]:
    """Callback parameters with every E.164 value masked (unless asked not to)."""
    if show_numbers:
        return dict(params)
    return {
        name: mask_number(value) if isinstance(value, str) and E164.match(value) else value
        for name, value in params.items()
    }
