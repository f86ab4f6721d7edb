"""The I/O: each AWS service the Lambdas talk to, behind small functions that take a client.

`sns` publishes records, `s3` writes objects create-only, `dynamodb` is the one
marshaller with the status table's and number flags' reads and writes,
`events` puts error events on the bus, `secrets` reads the auth tokens.
"""
