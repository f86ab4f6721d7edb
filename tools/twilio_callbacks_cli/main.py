"""``twilio-callbacks``: the front door to the status callback pipeline.

``local`` runs the whole pipeline on this machine; ``send``, ``status``,
``query`` and ``redrive`` work the same against the local runner and a real
deployment, finding everything through the four stacks' outputs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from status_callbacks import __version__
from twilio_callbacks_cli import query, redrive, rejected, send, status, verify
from twilio_callbacks_cli.aws import AwsTarget
from twilio_callbacks_cli.discovery import DEFAULT_STACK_NAMES, StackNames
from twilio_callbacks_cli.errors import EXIT_FAILED, EXIT_UNAVAILABLE, CliError

PROGRAM = "twilio-callbacks"
LOCAL = "local"
LOCAL_RUNNER = "aws_emulator.runner"
BENCH = "bench"
BENCH_CLI = "pipeline_bench.cli"
PREFIX_VARIABLE = "TWILIO_CALLBACKS_STACK_PREFIX"
SUFFIX_VARIABLE = "TWILIO_CALLBACKS_STACK_SUFFIX"
_EXIT_INTERRUPTED = 130

_DESCRIPTION = """\
Receive, inspect and replay Twilio status callbacks on AWS.

The same send/status/query/redrive commands work against the local runner
(export the AWS_ENDPOINT_URL it prints) and against a real deployment
(your usual AWS profile and region). Everything is found through the four
stacks' CloudFormation outputs."""

_EPILOG = """\
examples:
  twilio-callbacks local                          run the whole pipeline here
  twilio-callbacks bench                          benchmark it and price it per million callbacks
  twilio-callbacks send --count 20 --error-rate 0.2
  twilio-callbacks status
  twilio-callbacks query message SM0123456789abcdef0123456789abcdef
  twilio-callbacks query errors --code 30007 --since 1h
  twilio-callbacks query number +15550100123
  twilio-callbacks redrive --all --dry-run
  twilio-callbacks rejected list --since 2d
  twilio-callbacks rejected replay --dry-run
  twilio-callbacks query alerts --since 1h
  twilio-callbacks verify                         check a deployment end to end with probe callbacks

exit codes: 0 ok, 1 something failed, 2 bad usage, 3 stacks not deployed or
endpoint unreachable, 4 nothing found."""


def _connection_options(defaults: bool) -> argparse.ArgumentParser:
    """AWS and stack options, accepted before or after the subcommand."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)

    def default(value: Any) -> Any:
        # Sub-commands must not overwrite a value given before the subcommand.
        return value if defaults else argparse.SUPPRESS

    aws = parser.add_argument_group("AWS (default: boto3's usual resolution)")
    aws.add_argument("--region", default=default(None), help="AWS region")
    aws.add_argument("--profile", default=default(None), help="named profile from ~/.aws/config")
    aws.add_argument(
        "--endpoint-url",
        default=default(None),
        help="AWS endpoint, e.g. the local runner's http://127.0.0.1:4566 (same as AWS_ENDPOINT_URL)",
    )
    stacks = parser.add_argument_group(
        "stacks (default names: " + ", ".join(DEFAULT_STACK_NAMES.values()) + ")"
    )
    stacks.add_argument(
        "--stack-prefix", default=default(None), help=f"prefix for every stack name (or ${PREFIX_VARIABLE})"
    )
    stacks.add_argument(
        "--stack-suffix",
        default=default(None),
        help=f"suffix for every stack name, e.g. --stack-suffix=-dev (or ${SUFFIX_VARIABLE})",
    )
    for role, name in DEFAULT_STACK_NAMES.items():
        stacks.add_argument(
            f"--{role}-stack", default=default(None), metavar="NAME", help=f"name of the {name} stack"
        )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The full command line: global options and one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_connection_options(defaults=True)],
        # Exact option names only: `redrive --stack` must not read as an abbreviated --stack-prefix.
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command_name")
    # Products of their own, imported only when asked for (both pull in moto): they parse their
    # own options, so every argument after the command name is handed over as it is.
    for name, module, summary in (
        (
            LOCAL,
            LOCAL_RUNNER,
            "run the whole pipeline on this machine (moto + HTTP gateway); see `local --help`",
        ),
        (
            BENCH,
            BENCH_CLI,
            "benchmark the local pipeline and price it per million callbacks; see `bench --help`",
        ),
    ):
        product = subparsers.add_parser(name, help=summary, add_help=False)
        product.set_defaults(command=_hand_over(module), passthrough=[])
    parents = [_connection_options(defaults=False)]
    send.register(subparsers, parents)
    status.register(subparsers, parents)
    query.register(subparsers, parents)
    redrive.register(subparsers, parents)
    rejected.register(subparsers, parents)
    verify.register(subparsers, parents)
    return parser


def stack_names(args: argparse.Namespace) -> StackNames:
    """Stack names from the options, then the environment, then the defaults."""
    return StackNames.build(
        prefix=args.stack_prefix or os.environ.get(PREFIX_VARIABLE, ""),
        suffix=args.stack_suffix or os.environ.get(SUFFIX_VARIABLE, ""),
        overrides={role: getattr(args, f"{role}_stack") for role in DEFAULT_STACK_NAMES},
    )


def _hand_over(module_name: str) -> Callable[[argparse.Namespace, AwsTarget], int]:
    """A command handled by another product's ``main(argv)``, imported when it runs."""

    def run(args: argparse.Namespace, target: AwsTarget) -> int:
        return int(importlib.import_module(module_name).main(args.passthrough) or 0)

    return run


def _fail(message: str, code: int) -> int:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extras = parser.parse_known_args(arguments)
    if args.command_name is None:
        parser.print_help(sys.stderr)
        return 2
    if hasattr(args, "passthrough"):
        args.passthrough = extras
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    handler: Callable[[argparse.Namespace, AwsTarget], int] = args.command
    try:
        args.stack_names = stack_names(args)
        target = AwsTarget(region=args.region, profile=args.profile, endpoint_url=args.endpoint_url)
        return handler(args, target)
    except CliError as error:
        return _fail(str(error), error.exit_code)
    except EndpointConnectionError as error:
        return _fail(f"cannot reach the AWS endpoint: {error}", EXIT_UNAVAILABLE)
    except NoCredentialsError:
        return _fail("no AWS credentials found: pass --profile or configure credentials", EXIT_UNAVAILABLE)
    except ClientError as error:
        details = error.response.get("Error", {})
        return _fail(f"{details.get('Code', 'AWS error')}: {details.get('Message', error)}", EXIT_FAILED)
    except BotoCoreError as error:
        return _fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", _EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; nothing left to say to it.
        sys.stderr.close()
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
