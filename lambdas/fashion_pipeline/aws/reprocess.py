"""Re-run conversion for a dataset: re-enqueue every annotation object's upload event.

Annotation uploads may race image uploads; an annotation converted before its image
arrived is reported as ``image_missing``. After the images are in, this puts the same
notifications S3 would send back on the converter's queue, so the normal path reconverts
them (fragments and reports are overwritten in place).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .events import s3_notification


def reprocess_dataset(
    s3: Any,
    sqs: Any,
    *,
    bucket: str,
    queue_url: str,
    dataset: str,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Enqueue one notification per object under ``annotations/<dataset>/``; returns the count."""
    prefix = f"annotations/{dataset}/"
    sent = 0
    batch: list[dict[str, str]] = []

    def flush() -> None:
        nonlocal sent
        if not batch:
            return
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
        if response.get("Failed"):
            raise RuntimeError(f"SQS refused {len(response['Failed'])} messages: {response['Failed'][0].get('Message')}")
        sent += len(batch)
        batch.clear()
        if on_progress:
            on_progress(sent)

    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):
                continue
            body = s3_notification(bucket, obj["Key"], size=obj["Size"], etag=obj.get("ETag", "").strip('"'), event_name="ObjectCreated:Reprocess")
            batch.append({"Id": str(len(batch)), "MessageBody": json.dumps(body)})
            if len(batch) == 10:  # the SendMessageBatch maximum
                flush()
    flush()
    return sent
