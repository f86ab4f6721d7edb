"""The auth tokens, read at run time from Secrets Manager and cached.

`AuthTokenSource` caches the secret for five minutes, and picks a corrected or
rotated token up sooner: after a signature failure it reads the secret again
when its copy is older than ``REFRESH_AFTER_FAILURE_SECONDS`` (60 s). While
signatures keep failing (a wrong token, or a flood of forged requests) that is
at most one extra GetSecretValue per container per minute: 1,440 a day, $0.0072
a day per container at $0.05 per 10,000 calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from status_callbacks.domain.tokens import (
    DEFAULT_CACHE_SECONDS,
    REFRESH_AFTER_FAILURE_SECONDS,
    AuthTokens,
    AuthTokenSecretError,
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
