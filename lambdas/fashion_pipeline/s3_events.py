"""S3 event notifications in the shape S3 sends them, for re-runs and local mode."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any
from urllib.parse import quote_plus


def s3_notification(bucket: str, key: str, *, size: int = 0, etag: str = "", event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One-record S3 notification with every field S3 itself sends ("Event message structure",
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html), so
    it passes Powertools' ``S3Model`` as it is; the key is URL-encoded as S3 encodes it.

    What only S3 knows is left as S3 documents its absence: no ``versionId`` (the caller does not
    know the version; "not present if the bucket isn't versioning-enabled") and no ``sequencer``
    (nothing to order it against: the converter reads the object as it is now).
    """
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                # Lambda sets AWS_REGION ("Defined runtime environment variables"); the CLI's
                # session may only have AWS_DEFAULT_REGION.
                "awsRegion": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", ""),
                "eventTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "eventName": event_name,
                "userIdentity": {"principalId": "fashion-pipeline"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "", "x-amz-id-2": ""},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "fashion-pipeline",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": ""}, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag},
                },
            }
        ]
    }
