"""S3 event notifications in the shape S3 sends them, for re-runs and local mode."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote_plus


def s3_notification(bucket: str, key: str, *, size: int = 0, etag: str = "", event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One-record S3 notification; the key is URL-encoded as S3 encodes it."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "",
                "eventTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "eventName": event_name,
                "userIdentity": {"principalId": "fashion-pipeline"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "", "x-amz-id-2": ""},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "fashion-pipeline",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": ""}, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": ""},
                },
            }
        ]
    }
