"""SNS: publishing callback records in PublishBatch calls; an entry SNS did not confirm is failed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from status_callbacks.domain.publishing import PublishEntry, plan_publish_calls


@dataclass
class PublishOutcome:
    """What SNS did with a set of entries: those it did not confirm, and why (error code → entries)."""

    failed: list[PublishEntry] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    calls: int = 0


def publish_entries(sns: Any, topic_arn: str, entries: Sequence[PublishEntry]) -> PublishOutcome:
    """PublishBatch every entry; an entry SNS did not list as Successful is failed, never assumed sent.

    Used by the validator and by ``rejected replay``, so a replayed callback is
    published exactly as it would have been.
    """
    outcome = PublishOutcome()
    for call in plan_publish_calls(entries):
        outcome.calls += 1
        try:
            response = sns.publish_batch(
                TopicArn=topic_arn, PublishBatchRequestEntries=[entry.request_entry() for entry in call]
            )
        except (BotoCoreError, ClientError) as error:
            outcome.failed.extend(call)
            outcome.errors[_error_code(error)] += len(call)
            continue
        confirmed = {item["Id"] for item in response.get("Successful", [])}
        for item in response.get("Failed", []):
            outcome.errors[str(item.get("Code", "Unknown"))] += 1
        unconfirmed = [entry for entry in call if entry.entry_id not in confirmed]
        outcome.failed.extend(unconfirmed)
        missing = len(unconfirmed) - len(response.get("Failed", []))
        if missing > 0:
            outcome.errors["NotConfirmed"] += missing
    return outcome


def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__
