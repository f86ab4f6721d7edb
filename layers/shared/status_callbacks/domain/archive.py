"""The S3 archive layout: where callback records live and how a batch is encoded.

Contract (see DESIGN "S3 archive"): objects sit under Hive-style partitions of
the UTC day the callback was received (``callbacks/dt=YYYY-MM-DD/``), so
Athena prunes by date, and hold gzip-compressed newline-delimited JSON, one
record per line exactly as ``CallbackRecord.to_dict``. An object's key is
derived from the event ids it holds and its bytes from the records alone, so a
redelivered batch maps to the same key with the same content instead of a
second copy. Pure functions: the archiver handler does the S3 calls.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from status_callbacks.domain.record import CallbackRecord

# Everything the archiver writes sits under this prefix; the template's Glue
# table location, lifecycle filter and IAM grant name the same prefix.
ARCHIVE_PREFIX = "callbacks/"
# Hive partition column; Athena's partition projection declares it as `dt`.
PARTITION_COLUMN = "dt"
# strftime form of the projection's `yyyy-MM-dd`.
PARTITION_DATE_FORMAT = "%Y-%m-%d"
OBJECT_SUFFIX = ".json.gz"
CONTENT_TYPE = "application/gzip"
# zlib's default level: near-maximal ratio on JSON at a fraction of level 9's time.
_GZIP_LEVEL = 6


class UnarchivableRecordError(ValueError):
    """A record whose ``received_at`` cannot name a UTC day (negative or past year 9999)."""


def partition_of(received_at: int) -> str:
    """The UTC day (``YYYY-MM-DD``) of a record's ``received_at`` epoch milliseconds.

    Integer seconds keep the boundary exact: 23:59:59.999 belongs to its own day.
    """
    if received_at < 0:
        raise UnarchivableRecordError("received_at is before the epoch")
    try:
        day = datetime.fromtimestamp(received_at // 1000, tz=UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise UnarchivableRecordError("received_at is out of range") from error
    return day.strftime(PARTITION_DATE_FORMAT)


def partition_prefix(partition: str, prefix: str = ARCHIVE_PREFIX) -> str:
    """The key prefix of one day's partition, e.g. ``callbacks/dt=2026-02-01/``."""
    return f"{prefix}{PARTITION_COLUMN}={partition}/"


def object_key(partition: str, event_ids: Iterable[str], prefix: str = ARCHIVE_PREFIX) -> str:
    """Key of the object holding these events: the same set of events always gets the same key."""
    digest = hashlib.sha256("\n".join(sorted(set(event_ids))).encode("utf-8")).hexdigest()
    return f"{partition_prefix(partition, prefix)}{digest}{OBJECT_SUFFIX}"


def encode_records(records: Iterable[CallbackRecord]) -> bytes:
    """Gzip-compressed NDJSON, one record per line; byte-identical for identical input."""
    lines = "".join(f"{record.to_json()}\n" for record in records)
    return gzip.compress(lines.encode("utf-8"), compresslevel=_GZIP_LEVEL, mtime=0)


def decode_records(body: bytes) -> list[dict[str, Any]]:
    """Read an archived object back into record dicts (for tests, tools and replays)."""
    text = gzip.decompress(body).decode("utf-8")
    # NDJSON lines end at "\n" only: a record may hold U+2028, U+2029 or U+0085 unescaped, which
    # str.splitlines() would also break at.
    return [json.loads(line) for line in text.split("\n") if line]


@dataclass(frozen=True)
class ArchiveObject:
    """One object to write: a day's records from one batch, and the deliveries it settles.

    ``delivery_ids`` are the opaque ids (SQS message ids) whose fate is this
    object's: if the write fails, exactly these must be retried.
    """

    key: str
    partition: str
    records: tuple[CallbackRecord, ...]
    delivery_ids: tuple[str, ...]

    def body(self) -> bytes:
        return encode_records(self.records)


@dataclass(frozen=True)
class ArchivePlan:
    """What to write for one batch, and what cannot be archived at all."""

    objects: tuple[ArchiveObject, ...]
    unarchivable: tuple[str, ...]
    duplicates: int

    @property
    def record_count(self) -> int:
        return sum(len(archive_object.records) for archive_object in self.objects)


def _first_copy_order(record: CallbackRecord) -> tuple[int, str]:
    # Deterministic choice among copies of one event: the earliest received wins,
    # ties broken by content so the choice never depends on delivery order.
    return (record.received_at, record.to_json())


def plan_archive(
    deliveries: Iterable[tuple[str, CallbackRecord]],
    prefix: str = ARCHIVE_PREFIX,
) -> ArchivePlan:
    """Group a batch's records into one object per UTC day, each event once.

    Copies of one event (an SQS redelivery, or a Twilio retry with a later
    ``received_at``) collapse to the earliest copy; every copy's delivery id
    follows it, so all of them succeed or retry together. Records in an object
    are ordered by ``received_at`` then event id, so the plan (keys and bytes)
    does not depend on the order the batch arrived in.
    """
    first_copies: dict[str, CallbackRecord] = {}
    copies_of: dict[str, list[str]] = {}
    unarchivable: list[str] = []
    seen = 0
    for delivery_id, record in deliveries:
        try:
            partition_of(record.received_at)
        except UnarchivableRecordError:
            unarchivable.append(delivery_id)
            continue
        seen += 1
        copies_of.setdefault(record.event_id, []).append(delivery_id)
        kept = first_copies.get(record.event_id)
        if kept is None or _first_copy_order(record) < _first_copy_order(kept):
            first_copies[record.event_id] = record

    by_partition: dict[str, list[CallbackRecord]] = {}
    for record in first_copies.values():
        by_partition.setdefault(partition_of(record.received_at), []).append(record)

    objects = []
    for partition in sorted(by_partition):
        records = sorted(by_partition[partition], key=lambda record: (record.received_at, record.event_id))
        event_ids = [record.event_id for record in records]
        objects.append(
            ArchiveObject(
                key=object_key(partition, event_ids, prefix),
                partition=partition,
                records=tuple(records),
                delivery_ids=tuple(
                    delivery_id for event_id in event_ids for delivery_id in copies_of[event_id]
                ),
            )
        )
    return ArchivePlan(
        objects=tuple(objects),
        unarchivable=tuple(unarchivable),
        duplicates=seen - len(first_copies),
    )
