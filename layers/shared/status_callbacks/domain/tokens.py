"""Twilio auth tokens, read at run time from Secrets Manager and cached.

The secret (default name ``TwilioStatusCallbackHandler``) is a JSON object:

- ``AUTH_TOKEN``: the account's auth token (required);
- ``AUTH_TOKEN_SECONDARY``: optional, accepted too while a token is rotated;
- ``AC…`` keys: optional subaccount tokens keyed by their AccountSid.

Tokens are never logged, never put in an environment variable and never shown
by ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from status_callbacks.domain.signature import TokenRole

PRIMARY_KEY = "AUTH_TOKEN"
SECONDARY_KEY = "AUTH_TOKEN_SECONDARY"
ACCOUNT_SID_PREFIX = "AC"
DEFAULT_CACHE_SECONDS = 300
REFRESH_AFTER_FAILURE_SECONDS = 60


class AuthTokenSecretError(RuntimeError):
    """The secret exists but does not hold a usable ``AUTH_TOKEN``."""


@dataclass(frozen=True)
class AuthTokens:
    """The tokens a callback may have been signed with."""

    primary: str = field(repr=False)
    secondary: str | None = field(default=None, repr=False)
    by_account: Mapping[str, str] = field(default_factory=dict, repr=False)

    def for_account(self, account_sid: str | None) -> list[str]:
        """Tokens to try for a callback from this account: its own first, then the main ones."""
        return [token for _, token in self.roles_for_account(account_sid)]

    def roles_for_account(self, account_sid: str | None) -> list[tuple[TokenRole, str]]:
        """The same tokens, each with the role it plays; a token configured twice is tried once."""
        tokens: list[tuple[TokenRole, str]] = []
        if account_sid and account_sid in self.by_account:
            tokens.append((TokenRole.ACCOUNT, self.by_account[account_sid]))
        tokens.append((TokenRole.PRIMARY, self.primary))
        if self.secondary:
            tokens.append((TokenRole.SECONDARY, self.secondary))
        seen: set[str] = set()
        unique = []
        for role, token in tokens:
            if token not in seen:
                seen.add(token)
                unique.append((role, token))
        return unique

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> AuthTokens:
        primary = secret.get(PRIMARY_KEY)
        if not isinstance(primary, str) or not primary:
            raise AuthTokenSecretError(f"secret has no {PRIMARY_KEY} string")
        secondary = secret.get(SECONDARY_KEY)
        by_account = {
            key: value
            for key, value in secret.items()
            if key.startswith(ACCOUNT_SID_PREFIX) and isinstance(value, str) and value
        }
        return cls(
            primary=primary,
            secondary=secondary if isinstance(secondary, str) and secondary else None,
            by_account=by_account,
        )
