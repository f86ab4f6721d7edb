"""Reading callback records back off a consumer's queue or subscription.

Downstream queues subscribe with raw message delivery, so an SQS body is the
record JSON itself; an SNS envelope (non-raw delivery, or a direct SNS→Lambda
subscription) is unwrapped too. A body that is neither is a bug upstream, so
it raises: the message retries and ends in the consumer's dead-letter queue
rather than being dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from status_callbacks.domain.record import CallbackRecord


class UndeliverableRecordError(ValueError):
    """A message on a consumer queue that does not hold a callback record."""


def record_from_body(body: str) -> CallbackRecord:
    """Parse a raw-delivered record, or the record inside an SNS notification envelope."""
    try:
        document: Any = json.loads(body)
        if isinstance(document, Mapping) and document.get("Type") == "Notification":
            document = json.loads(document["Message"])
        if not isinstance(document, Mapping):
            raise UndeliverableRecordError("message body is not a JSON object")
        return CallbackRecord.from_dict(document)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, UndeliverableRecordError):
            raise
        raise UndeliverableRecordError("message body is not a callback record") from error
