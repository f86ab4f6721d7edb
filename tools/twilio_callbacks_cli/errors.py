"""Errors the command reports to people, each with the exit code it ends with.

Exit codes are part of the command's interface (scripts and CI check them):
0 success, 1 the operation ran but something failed (a non-2xx response, a
message left unmoved), 2 bad usage, 3 the pipeline cannot be found or reached,
4 the thing asked about does not exist.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4


class CliError(Exception):
    """A failure with a message meant for the person at the terminal."""

    exit_code = EXIT_FAILED


class UsageError(CliError):
    """The options given cannot work together or lack something required."""

    exit_code = EXIT_USAGE


class PipelineUnavailableError(CliError):
    """The stacks are not deployed, or the AWS endpoint cannot be reached."""

    exit_code = EXIT_UNAVAILABLE


class NotFoundError(CliError):
    """The SID, number or object asked about is not there."""

    exit_code = EXIT_NOT_FOUND
