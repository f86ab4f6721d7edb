"""Create-only S3 writes, shared by the archiver and the validator's rejected store.

Both name an object after exactly what it holds, so an object that already
exists holds the same content: ``If-None-Match: *`` makes the write
create-only and a redelivered batch neither duplicates nor rewrites anything.
S3 answers 412 ``PreconditionFailed`` when the key exists, and 409
``ConditionalRequestConflict`` when a concurrent write to the key is still in
flight; the second is an error, so the batch retries and then finds the object."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def put_new_object(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> bool:
    """Create the object unless it exists; False when it already did."""
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "PreconditionFailed":
            return False
        raise
    return True
