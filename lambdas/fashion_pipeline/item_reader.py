"""What a Distributed Map's S3 ItemReader hands its children: one item per listed object.

Both machines that list objects (training: the fragments; batch detection: the images) read
their batches' ``Items`` with this model.
"""

from __future__ import annotations

from pydantic import BaseModel, JsonValue


class ListedObject(BaseModel):
    """An item of a Distributed Map's S3 ItemReader (``s3:listObjectsV2``): ``Etag``, ``Key``,
    ``LastModified``, ``Size``, ``StorageClass`` ("ItemReader (Map)",
    https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html). Only
    ``Key`` and ``Size`` are used; the rest is declared as optional, unread."""

    Key: str
    Size: int = 0
    Etag: str = ""
    LastModified: JsonValue = None
    StorageClass: str | None = None
