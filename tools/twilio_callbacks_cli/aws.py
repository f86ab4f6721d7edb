"""Which AWS the command talks to: a real account, or the local runner's emulator.

boto3's own resolution applies (``AWS_PROFILE``, ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` and the shared config files), then ``AWS_REGION``, which
boto3 ignores but the local runner and Lambda set; ``--profile``, ``--region``
and ``--endpoint-url`` override them. Against an emulator endpoint any
credentials do, so placeholders are supplied when none are configured and the
region defaults to us-east-1, as the local runner uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, NoCredentialsError, ProfileNotFound

from twilio_callbacks_cli.errors import PipelineUnavailableError

ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"
REGION_VARIABLE = "AWS_REGION"
EMULATOR_REGION = "us-east-1"
# Emulators accept any credentials; these only let boto3 sign requests.
_EMULATOR_KEY = "local"
# Fail fast when the emulator is not running instead of retrying for a minute.
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})


@dataclass(frozen=True)
class AwsTarget:
    """The account/emulator, region and credentials every client of one run uses."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    @cached_property
    def configured_endpoint_url(self) -> str | None:
        """The emulator endpoint in use, or None when talking to AWS itself."""
        if self.endpoint_url:
            return self.endpoint_url
        if self.environ.get(ENDPOINT_VARIABLE):
            return self.environ[ENDPOINT_VARIABLE]
        try:
            config = botocore.session.Session(profile=self.profile).get_scoped_config()
        except ProfileNotFound as error:
            raise PipelineUnavailableError(str(error)) from error
        endpoint = config.get("endpoint_url")
        return str(endpoint) if endpoint else None

    @cached_property
    def session(self) -> boto3.Session:
        """One boto3 session, with placeholder credentials and region for an emulator."""
        try:
            session = boto3.Session(profile_name=self.profile, region_name=self.region)
            if session.region_name is None and self.environ.get(REGION_VARIABLE):
                session = boto3.Session(profile_name=self.profile, region_name=self.environ[REGION_VARIABLE])
        except ProfileNotFound as error:
            raise PipelineUnavailableError(str(error)) from error
        if self.configured_endpoint_url is None:
            return session
        credentials = session.get_credentials()
        region = session.region_name or EMULATOR_REGION
        if credentials is None:
            return boto3.Session(
                aws_access_key_id=_EMULATOR_KEY, aws_secret_access_key=_EMULATOR_KEY, region_name=region
            )
        return boto3.Session(profile_name=self.profile, region_name=region)

    @property
    def region_name(self) -> str | None:
        return self.session.region_name

    def client(self, service: str) -> Any:
        """A client for one service; boto3 clients are thread-safe, sessions are not."""
        if self.region_name is None:
            raise PipelineUnavailableError(
                "no AWS region configured: pass --region, or set AWS_DEFAULT_REGION or a profile's region"
            )
        session: Any = self.session  # the stubs type clients per service name literal
        try:
            return session.client(service, endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG)
        except NoCredentialsError as error:
            raise PipelineUnavailableError(
                "no AWS credentials found: pass --profile or configure credentials"
            ) from error
        except BotoCoreError as error:
            raise PipelineUnavailableError(f"cannot create the {service} client: {error}") from error
