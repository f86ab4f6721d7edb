"""The domain: what a callback is and what the pipeline decides about it. No AWS calls, no boto3.

Ingest: what API Gateway forwards (`forwarded`), the URL Twilio signed and its
signature (`signature`), auth tokens (`tokens`), the accept/reject decision
(`validation`), what is kept when rejected (`rejected`) and how records are
grouped for SNS (`publishing`). The record contract (`record`), reading it off
a queue (`delivery`), lifecycle ordering (`lifecycle`), and each sink's layout:
the S3 archive (`archive`), the status table's items (`status_items`), error
routes and alert text (`routes`, `alerts`) and number flags (`flags`).
`tests/layer/test_layer_domain_imports.py` keeps boto3 out.
"""
