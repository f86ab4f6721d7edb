"""The domain package does no I/O: importing all of it brings in no AWS SDK."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import status_callbacks.domain

AWS_PACKAGES = ("boto3", "botocore", "aws_lambda_powertools", "s3transfer")


def test_the_domain_imports_no_aws_sdk() -> None:
    # Given every module of the domain package, imported in a fresh interpreter
    modules = [
        f"status_callbacks.domain.{info.name}"
        for info in pkgutil.iter_modules(status_callbacks.domain.__path__)
    ]
    assert len(modules) >= 10
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {AWS_PACKAGES!r})))\n"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )

    # Then none of the AWS SDK's packages was imported along the way
    assert loaded == []
