"""The converter's SQS records, as parser models: the record's ``body`` is one of three shapes.

* an S3 event notification (``S3Notification``): Powertools' ``S3Model``, with the fields moto
  (local mode, tests) leaves out made optional, and nothing else relaxed;
* S3's test event (``S3TestEvent``), sent once when a notification configuration is saved;
* a range message (``RangeMessage``), which the converter sends itself (``ingest.range_message``).

Which shape a body is, is decided by the keys it has (``body_kind``), so a body that fails its
shape's model is told so in that model's terms (``body.notification.Records.0.s3``) rather than
with every shape's complaints; a body of no shape at all fails with ``unknown_body``.

Evidence for what is optional: AWS's "Event message structure"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html)
shows ``userIdentity``, ``requestParameters``, ``responseElements`` and ``s3.bucket.ownerIdentity``
in every record, and documents only ``versionId`` ("null or not present if the bucket isn't
versioning-enabled") and ``sequencer`` ("only used with PUT and DELETE requests") as sometimes
absent; Powertools' models already make those, ``size`` and ``eTag`` optional. moto 5.2.5
(``moto/s3/notifications.py``, ``_get_s3_event``) sends none of the four record fields above,
and its test event (``_get_test_event``) has no ``RequestId`` or ``HostId``. Our own events
(``fashion_pipeline.s3_events.s3_notification``: reprocess, and a range superseded by a new
upload) carry AWS's full field set and pass Powertools' ``S3Model`` unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import S3Model, S3RecordModel, SqsRecordModel
from aws_lambda_powertools.utilities.parser.models.s3 import (
    S3Bucket as PowertoolsS3Bucket,
    S3Identity,
    S3Message as PowertoolsS3Message,
    S3OwnerIdentify,
    S3RequestParameters,
    S3ResponseElements,
)
from pydantic import BaseModel, Discriminator, Field, Json, Tag, model_validator

from converter.ingest import RANGE_MESSAGE
from fashion_pipeline.layout import MAX_PARTS

TEST_EVENT = "s3:TestEvent"


class S3Bucket(PowertoolsS3Bucket):
    ownerIdentity: S3OwnerIdentify | None = None  # type: ignore[assignment]  # moto omits it


class S3Message(PowertoolsS3Message):
    bucket: S3Bucket  # type: ignore[assignment]


class S3Record(S3RecordModel):
    # AWS sends all three in every record; moto sends none of them.
    userIdentity: S3Identity | None = None  # type: ignore[assignment]
    requestParameters: S3RequestParameters | None = None  # type: ignore[assignment]
    responseElements: S3ResponseElements | None = None  # type: ignore[assignment]
    s3: S3Message  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def validate_s3_object(cls, values: Any) -> Any:
        """Powertools' rule (``size`` and ``eTag`` in every event but removals), applied only to a
        record that has an ``s3.object``: the parent's own check raises AttributeError on a record
        without one, which would escape validation and crash the batch instead of failing a record.
        A record missing ``s3`` or its ``object`` fails field validation, naming the field."""
        if not isinstance(values, dict):
            return values
        s3 = values.get("s3")
        s3_object = (s3.get("object") or s3.get("get_object")) if isinstance(s3, dict) else None
        if isinstance(s3_object, dict) and ":Delete" not in str(values.get("eventName", "")):
            if s3_object.get("size") is None or s3_object.get("eTag") is None:
                raise ValueError("Size and eTag fields are required for all events except ObjectRemoved:* and LifecycleExpiration:*.")
        return values

    @model_validator(mode="after")
    def _names_an_object(self) -> "S3Record":
        # Powertools allows records without ``object`` (IntelligentTiering's ``get_object``); the
        # events the queue is subscribed to (ObjectCreated, ObjectRemoved) always name one.
        if self.s3.object is None:
            raise ValueError("s3.object: missing (an ObjectCreated or ObjectRemoved record names its object)")
        return self


class S3Notification(S3Model):
    Records: list[S3Record]  # type: ignore[assignment]


class S3TestEvent(BaseModel):
    """What S3 sends once when a notification configuration is saved; nothing to convert
    ("Event message structure", the test message)."""

    Service: Literal["Amazon S3"]
    Event: Literal["s3:TestEvent"]
    Time: str
    Bucket: str
    # AWS sends both; moto omits them.
    RequestId: str | None = None
    HostId: str | None = None


class RangeMessage(BaseModel):
    """A range of a COCO file's images for this invocation to convert (``ingest.range_message``)."""

    kind: Literal["fashion-pipeline/coco-range/1"]
    bucket: str
    key: str  # as is, not URL-encoded
    versionId: str | None = None  # none when the bucket is unversioned
    eTag: str
    lastModified: str
    start: int = Field(ge=0)
    stop: int = Field(gt=0)
    part: int = Field(ge=1)
    parts: int = Field(ge=2, le=MAX_PARTS)

    @model_validator(mode="after")
    def _consistent(self) -> "RangeMessage":
        # Only the converter writes these; one that fails here is a bug, kept in the DLQ to see.
        if self.start >= self.stop or self.part > self.parts:
            raise ValueError(f"images {self.start}..{self.stop}, part {self.part} of {self.parts}: not a range")
        return self


def body_kind(body: Any) -> str | None:
    """Which shape a parsed body is (None: none of them)."""
    if isinstance(body, BaseModel):
        return {S3Notification: "notification", S3TestEvent: "test", RangeMessage: "range"}.get(type(body))
    if not isinstance(body, dict):
        return None
    if "Records" in body:
        return "notification"
    if body.get("Event") == TEST_EVENT:
        return "test"
    if body.get("kind") == RANGE_MESSAGE:
        return "range"
    return None


MessageBody = Annotated[
    Annotated[S3Notification, Tag("notification")] | Annotated[S3TestEvent, Tag("test")] | Annotated[RangeMessage, Tag("range")],
    Discriminator(
        body_kind,
        custom_error_type="unknown_body",
        custom_error_message=f"not an S3 notification (Records), an {TEST_EVENT} or a range message (kind {RANGE_MESSAGE})",
    ),
]


class ConverterRecord(SqsRecordModel):
    """One SQS record of the converter's queue, its body parsed (Powertools' ``SqsRecordModel``)."""

    body: Json[MessageBody]  # type: ignore[assignment]
