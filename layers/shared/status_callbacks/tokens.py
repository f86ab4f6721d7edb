"""Twilio auth tokens, read at run time from Secrets Manager and cached.

The secret (default name ``TwilioStatusCallbackHandler``) is a JSON object:

- ``AUTH_TOKEN``: the account's auth token (required);
- ``AUTH_TOKEN_SECONDARY``: optional, accepted too while a token is rotated;
- ``AC…`` keys: optional subaccount tokens keyed by their AccountSid.

Tokens are never logged, never put in an environment variable and never shown
by ``repr``.

`AuthTokenSource` caches the secret for five minutes, and picks a corrected or
rotated token up sooner: after a signature failure it reads the secret again
when its copy is older than ``REFRESH_AFTER_FAILURE_SECONDS`` (60 s). While
signatures keep failing (a wrong token, or a flood of forged requests) that is
at most one extra GetSecretValue per container per minute: 1,440 a day, $0.0072
a day per container at $0.05 per 10,000 calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from status_callbacks.signature import TokenRole

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


def load_auth_tokens(
    secret_name: str,
    provider: SecretsProvider,
    max_age: int = DEFAULT_CACHE_SECONDS,
) -> AuthTokens:
    """Fetch (or reuse the cached) auth token secret; failures propagate so callbacks retry."""
    secret = provider.get(secret_name, transform="json", max_age=max_age)
    if not isinstance(secret, Mapping):
        raise AuthTokenSecretError("secret is not a JSON object")
    return AuthTokens.from_secret(secret)


class AuthTokenSource:
    """The auth tokens of one secret, cached, re-read early after a signature failure."""

    def __init__(
        self,
        secret_name: str,
        provider: SecretsProvider,
        max_age: int = DEFAULT_CACHE_SECONDS,
        refresh_after_failure: float = REFRESH_AFTER_FAILURE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_name = secret_name
        self._provider = provider
        self._max_age = max_age
        self._refresh_after_failure = refresh_after_failure
        self._clock = clock
        self._tokens: AuthTokens | None = None
        self._read_at = 0.0

    def current(self) -> AuthTokens:
        """The tokens, read at most every ``max_age`` seconds; failures propagate so callbacks retry."""
        if self._tokens is None or self._clock() - self._read_at >= self._max_age:
            self._read(force=False)
        assert self._tokens is not None
        return self._tokens

    def refreshed_after_failure(self) -> AuthTokens | None:
        """Tokens read again now, if the cached copy is old enough and the secret changed; else None."""
        if self._tokens is None or self._clock() - self._read_at < self._refresh_after_failure:
            return None
        before = self._tokens
        self._read(force=True)
        return self._tokens if self._tokens != before else None

    def _read(self, *, force: bool) -> None:
        secret = self._provider.get(
            self.secret_name, transform="json", max_age=self._max_age, force_fetch=force
        )
        if not isinstance(secret, Mapping):
            raise AuthTokenSecretError("secret is not a JSON object")
        self._tokens = AuthTokens.from_secret(secret)
        self._read_at = self._clock()
