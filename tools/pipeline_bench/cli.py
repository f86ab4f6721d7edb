"""The ``bench`` command line: run, write ``bench-results.json``, print the tables."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline_bench import report, results
from pipeline_bench.run import BenchOptions, run_benchmark
from pipeline_bench.workload import (
    DEFAULT_CALLBACKS,
    DEFAULT_ERROR_RATE,
    DEFAULT_RATE,
    DEFAULT_SEED,
)
from twilio_callbacks_cli.send import name_value

DEFAULT_OUTPUT = "bench-results.json"
# MaximumBatchingWindowInSeconds can be at most 300: no cap at all.
LAMBDA_MAX_WINDOW_SECONDS = 300.0
EXIT_INCOMPLETE = 1


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(
        prog="twilio-callbacks bench",
        description=(
            "Run a fixed, seeded workload (messages, calls, some failing) through the local pipeline, "
            "count every AWS request, time every handler, and price it per million callbacks against "
            "the original design. Writes the results as JSON and prints them as tables."
        ),
    )
    options.add_argument(
        "--callbacks", type=int, default=DEFAULT_CALLBACKS, help="at least this many callbacks"
    )
    options.add_argument("--rate", type=float, default=DEFAULT_RATE, help="callbacks offered per second")
    options.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload seed")
    options.add_argument(
        "--error-rate", type=float, default=DEFAULT_ERROR_RATE, help="share of resources that fail"
    )
    options.add_argument(
        "--parameter",
        action="append",
        type=name_value,
        default=[],
        metavar="[STACK.]NAME=VALUE",
        help="deploy with a stack parameter (e.g. SaveStatusCallbackToDynamo.BatchSize=500)",
    )
    options.add_argument(
        "--max-window",
        type=float,
        default=LAMBDA_MAX_WINDOW_SECONDS,
        help="cap on local batching windows in seconds (default: none, each event source batches as its "
        "template sets it, as on AWS; `twilio-callbacks local` caps them at 1 s)",
    )
    options.add_argument(
        "--output", type=Path, default=Path(DEFAULT_OUTPUT), help=f"JSON file (default {DEFAULT_OUTPUT})"
    )
    options.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when every callback landed everywhere, 1 otherwise."""
    args = parser().parse_args(list(argv) if argv is not None else None)
    started = time.monotonic()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[bench {time.monotonic() - started:5.1f}s] {message}", file=sys.stderr, flush=True)

    run = run_benchmark(
        BenchOptions(
            callbacks=args.callbacks,
            rate=args.rate,
            seed=args.seed,
            error_rate=args.error_rate,
            parameter_overrides=dict(args.parameter),
            max_batching_window=args.max_window,
        ),
        progress,
    )
    document = report.document(results.compute(run))
    args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(report.render(document))
    print(f"\nwritten to {args.output} in {time.monotonic() - started:.0f} s")
    return 0 if document["run"]["complete"] else EXIT_INCOMPLETE
