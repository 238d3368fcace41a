"""POST /detections' request: the image (raw body, JSON ``image`` or ``s3_key``), its options
and the answer's format, parsed and checked before any AWS call."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fashion_pipeline.detections import MAX_CONFIDENCE, MAX_RESULTS, MIN_CONFIDENCE, MIN_RESULTS
from fashion_pipeline.images import ImageError, ImageInfo, check_rules, probe_bytes
from fashion_pipeline.layout import IMAGES_PREFIX
from inference.errors import ImageTooLarge, RequestInvalid, UnsupportedMediaType, image_refusal
from inference.observability import logger

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # DetectCustomLabels' limit for Image.Bytes
MAX_BASE64_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
JSON_OVERHEAD = 64 * 1024  # room for the rest of a JSON body around its base64 image
JSON_TYPES = ("", "application/json")
RAW_TYPES = ("application/octet-stream",)
NO_IMAGE = 'no image: send it as the body (image/jpeg, image/png) or as JSON {"image": base64} or {"s3_key": key}'


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


@dataclass(frozen=True)
class Detection:
    """What to detect in: ``data`` (bytes, with ``info`` from its header) or ``s3_key``."""

    data: bytes | None
    info: ImageInfo | None
    s3_key: str | None
    min_confidence: float | None
    max_results: int | None
    render: str | None  # "png" or "jpeg" for the drawn image, None for JSON


def parse(event: Any, *, min_confidence: float | None, max_results: int | None, render: bool) -> Detection:
    """The detection ``event`` asks for; the query options given, the body's merged in."""
    data, request = _read_body(event)
    if request is not None:
        min_confidence = _option("min_confidence", min_confidence, request.min_confidence)
        max_results = _option("max_results", max_results, request.max_results)
    fmt = wanted_format(event.headers.get("accept"), render)
    info = probe(data) if data is not None else None
    return Detection(data, info, request.s3_key if request else None, min_confidence, max_results, fmt)


def probe(data: bytes) -> ImageInfo:
    """Type and size of image bytes from their header, checked against Rekognition's rules."""
    try:
        info = probe_bytes(data)
        check_rules(info, len(data))
    except ImageError as exc:
        raise image_refusal(exc) from None
    return info


def _read_body(event: Any) -> tuple[bytes | None, DetectionRequest | None]:
    """The image bytes (raw body or JSON ``image``) and the JSON request, when there is one."""
    body = event.body
    if not body:
        raise RequestInvalid(NO_IMAGE)
    media_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type.startswith("image/") or media_type in RAW_TYPES:
        if event.is_base64_encoded:
            return _image_bytes(body, "the body"), None
        # Binary bodies arrive base64-encoded only for the API's binary media types.
        logger.warning("image body not base64-encoded: check the API's binary media types", extra={"content_type": media_type})
        data = body.encode("utf-8", "surrogateescape")
        if len(data) > MAX_IMAGE_BYTES:
            raise _too_large(len(data))
        return data, None
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        if len(body) > (MAX_BASE64_CHARS + JSON_OVERHEAD) * (4 / 3 if event.is_base64_encoded else 1):
            raise _too_large(len(body) * 3 // 4)
        text = _b64decode(body, "the body") if event.is_base64_encoded else body
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise RequestInvalid("the body is not valid JSON") from None
        if not isinstance(document, dict):
            raise RequestInvalid("the JSON body must be an object")
        request = DetectionRequest.model_validate(document)  # ValidationError -> 400
        data = _image_bytes(request.image, "image") if request.image is not None else None
        return data, request
    raise UnsupportedMediaType(f"Content-Type {media_type} is not accepted: send image/jpeg, image/png or application/json")


def _b64decode(text: str | bytes, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestInvalid(f"{what} is not valid base64") from None


def _too_large(size: int) -> ImageTooLarge:
    return ImageTooLarge(f"the image is {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes (4 MB)")


def _image_bytes(text: str, what: str) -> bytes:
    if text.startswith("data:"):  # data:image/png;base64,....
        text = text.partition(",")[2]
    if len(text) > MAX_BASE64_CHARS + 4:
        raise _too_large(len(text) * 3 // 4)
    data = _b64decode(text, what)
    if len(data) > MAX_IMAGE_BYTES:
        raise _too_large(len(data))
    return data


def _option(name: str, query: Any, body: Any) -> Any:
    if query is not None and body is not None and query != body:
        raise RequestInvalid(f"{name} is given both in the query string and in the body")
    return query if query is not None else body


def wanted_format(accept: str | None, render: bool) -> str | None:
    """``"png"``/``"jpeg"`` for a rendered image, None for JSON.

    Only an explicit image/png or image/jpeg in Accept asks for the drawing (``*/*`` and
    ``image/*`` do not); it wins over application/json when its quality is higher or, at
    equal quality, when it comes first. ``render=true`` draws a PNG unless Accept prefers
    image/jpeg.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept or "").split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        media = media.lower()
        if media not in ("image/png", "image/jpeg", "application/json"):
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media))
    ranked.sort()
    images = [media for _, _, media in ranked if media.startswith("image/")]
    if render:
        return "jpeg" if images and images[0] == "image/jpeg" else "png"
    if ranked and ranked[0][2].startswith("image/"):
        return ranked[0][2].split("/")[1]
    return None
