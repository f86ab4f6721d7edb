"""Lifecycle ordering and auth token selection."""

from __future__ import annotations

import pytest

from status_callbacks.domain.lifecycle import lifecycle_position, status_rank
from status_callbacks.domain.tokens import AuthTokens, AuthTokenSecretError


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("queued", "sent"),
        ("sent", "delivered"),
        ("sent", "undelivered"),
        ("delivered", "read"),
        ("accepted", "queued"),
    ],
)
def test_message_lifecycle_moves_forward(earlier, later):
    assert lifecycle_position("message", earlier, {}) < lifecycle_position("message", later, {})


def test_terminal_message_statuses_tie_so_first_stays_current():
    assert status_rank("message", "delivered") == status_rank("message", "undelivered")


def test_calls_order_by_sequence_number_over_status():
    ringing_late = lifecycle_position("call", "ringing", {"SequenceNumber": "7"})
    completed_early = lifecycle_position("call", "completed", {"SequenceNumber": "3"})
    assert ringing_late > completed_early
    assert lifecycle_position("call", "completed", {}) > lifecycle_position("call", "ringing", {})


def test_unknown_statuses_rank_lowest():
    assert lifecycle_position("message", "brand-new-status", {}) < lifecycle_position("message", "queued", {})
    assert lifecycle_position("unknown", None, {}) == 0


def test_tokens_for_subaccount_then_main_then_secondary():
    tokens = AuthTokens.from_secret(
        {"AUTH_TOKEN": "main", "AUTH_TOKEN_SECONDARY": "next", "AC" + "1" * 32: "sub", "OTHER": "ignored"}
    )
    assert tokens.for_account("AC" + "1" * 32) == ["sub", "main", "next"]
    assert tokens.for_account("AC" + "2" * 32) == ["main", "next"]


def test_tokens_never_appear_in_repr():
    tokens = AuthTokens.from_secret({"AUTH_TOKEN": "s3cr3t-token", "AUTH_TOKEN_SECONDARY": "n3xt-token"})
    assert "s3cr3t" not in repr(tokens) and "n3xt" not in repr(tokens)


@pytest.mark.parametrize("secret", [{}, {"AUTH_TOKEN": ""}, {"AUTH_TOKEN": 5}])
def test_secret_without_token_is_an_error(secret):
    with pytest.raises(AuthTokenSecretError):
        AuthTokens.from_secret(secret)


def test_conference_events_order_by_sequence_number():
    join = lifecycle_position("conference", "participant-join", {"SequenceNumber": "2"})
    end = lifecycle_position("conference", "conference-end", {"SequenceNumber": "9"})
    assert join < end


def test_transcription_completes_after_in_progress():
    assert lifecycle_position("transcription", "in-progress", {}) < lifecycle_position(
        "transcription", "completed", {}
    )
