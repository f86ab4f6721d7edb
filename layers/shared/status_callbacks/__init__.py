"""Domain package shared by every Lambda of the Twilio status callback pipeline.

Plain Python, no AWS calls at import. Ingest: what API Gateway forwards
(`forwarded`), URL reconstruction and signature checks (`signature`), auth
tokens (`tokens`), the accept/reject decision (`validation`) and batched
publishing (`publishing`). Shared by every consumer: the record contract
(`record`), reading records off a queue (`delivery`), lifecycle ordering
(`lifecycle`) and observability (`observability`). One module per sink: the S3
archive (`archive`), the DynamoDB status store (`status_store`) and error
routing (`error_routing`).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
