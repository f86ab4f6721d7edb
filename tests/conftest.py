"""Test-wide environment: no real AWS, no X-Ray, a fixed metrics namespace.

Set before any handler or Powertools import so nothing can reach a real account.
"""

from __future__ import annotations

import os

_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "TwilioStatusCallbacksTest",
    "POWERTOOLS_SERVICE_NAME": "tests",
    "POWERTOOLS_LOG_LEVEL": "DEBUG",
}
for _name, _value in _TEST_ENV.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)

# Hypothesis: random examples on a developer's machine (new inputs on every run); the same examples
# on every CI run, so a CI result depends on the change, not on the draw.
from hypothesis import settings as _hypothesis_settings  # noqa: E402 - after the environment is fixed

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")
