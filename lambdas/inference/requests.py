"""The JSON request body of POST /detections (validated on every JSON request)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fashion_pipeline.detections import MAX_CONFIDENCE, MAX_RESULTS, MIN_CONFIDENCE, MIN_RESULTS
from fashion_pipeline.layout import IMAGES_PREFIX


class DetectionRequest(BaseModel):
    """JSON body of POST /detections: exactly one of ``image`` and ``s3_key``."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(None, description="The JPEG or PNG image, base64-encoded (a data: URL prefix is accepted). At most 4 MB decoded.")
    s3_key: str | None = Field(
        None, min_length=len(IMAGES_PREFIX) + 1, max_length=1024, pattern=r"^images/",
        description="Key of a JPEG or PNG in the dataset bucket, under images/ (at most 15 MB).",
    )  # fmt: skip
    min_confidence: float | None = Field(None, ge=MIN_CONFIDENCE, le=MAX_CONFIDENCE, description="Lowest confidence (percent) of a garment in the answer.")
    max_results: int | None = Field(None, ge=MIN_RESULTS, le=MAX_RESULTS, description="At most this many garments, most confident first.")

    @model_validator(mode="after")
    def _one_source(self) -> DetectionRequest:
        if (self.image is None) == (self.s3_key is None):
            raise ValueError("give exactly one of image and s3_key")
        return self
