"""The fuzz suite's markers."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz: hostile input (hypothesis) against the validator and the HTTP routes"
    )
