"""What DynamoDB bills a write of an item: its size by DynamoDB's documented rules, in write units.

The benchmark's arithmetic on the status store's items; no Lambda needs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from status_callbacks.domain.status_items import (
    ERROR_INDEX_PARTITION_KEY,
    ERROR_INDEX_SORT_KEY,
    PARTITION_KEY,
    SORT_KEY,
)

# An item up to this size costs one write unit; every further KB costs another.
WRITE_UNIT_BYTES = 1024


def _number_size(value: int | float | Decimal) -> int:
    digits = str(abs(Decimal(value)).normalize()).replace(".", "").lstrip("0")
    if "E" in digits:
        digits = digits.split("E", 1)[0]
    return math.ceil(len(digits.rstrip("0") or "0") / 2) + 1


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, Decimal)):
        return _number_size(value)
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, Mapping):
        # Each map element costs its name, its value and one byte.
        return 3 + sum(
            len(str(name).encode("utf-8")) + _value_size(inner) + 1 for name, inner in value.items()
        )
    if isinstance(value, (list, tuple)):
        return 3 + sum(_value_size(inner) + 1 for inner in value)
    raise TypeError(f"no DynamoDB size rule for {type(value).__name__}")


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes DynamoDB bills an item as, by its documented rules (names + values + map overhead)."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def write_units(item: Mapping[str, Any]) -> int:
    """Write request units one write of this item costs (1 per started KB)."""
    return max(1, math.ceil(item_size(item) / WRITE_UNIT_BYTES))


def error_index_entry(item: Mapping[str, Any], projected: Iterable[str]) -> dict[str, Any] | None:
    """What the sparse error index stores for a base item, or None when it stores nothing."""
    if ERROR_INDEX_PARTITION_KEY not in item or ERROR_INDEX_SORT_KEY not in item:
        return None
    names = {PARTITION_KEY, SORT_KEY, ERROR_INDEX_PARTITION_KEY, ERROR_INDEX_SORT_KEY, *projected}
    return {name: value for name, value in item.items() if name in names}
