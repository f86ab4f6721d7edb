"""The code every Lambda of the Twilio status callback pipeline shares (built into a layer by SAM).

- `domain`: what a callback is and what the pipeline decides about it (the
  record contract, signature checks, validation, lifecycle ordering, each
  sink's layout, error routes and alert text). Pure Python: no boto3, no I/O.
- `adapters`: the AWS calls (SNS, S3, DynamoDB, EventBridge, Secrets Manager),
  each a small function that takes its client.
- `observability`: the one Powertools Logger, Metrics and Tracer.

Handlers (under ``aws_stacks/``) wire an adapter to the domain per record.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
