"""Detections of a Custom Labels model, shaped for the inference API.

Rekognition gives each box as ratios of the image size (``Left``, ``Top``, ``Width``,
``Height`` in 0..1, occasionally a hair outside). The API answers with those ratios unchanged
and with the box in whole pixels of the image as sent, rounded and clamped to the image, so
that a client can draw it without knowing the convention. Pure functions, no AWS.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .images import ImageInfo

MIN_CONFIDENCE, MAX_CONFIDENCE = 0.0, 100.0
MIN_RESULTS, MAX_RESULTS = 1, 100


@dataclass(frozen=True, slots=True)
class RatioBox:
    """A box as Rekognition returns it: ratios of the image width and height."""

    left: float
    top: float
    width: float
    height: float

    @classmethod
    def from_rekognition(cls, box: Mapping[str, Any]) -> RatioBox:
        return cls(*(_finite(box.get(key)) for key in ("Left", "Top", "Width", "Height")))

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def to_dict(self) -> dict[str, float]:
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height}


@dataclass(frozen=True, slots=True)
class PixelBox:
    """A box in whole pixels: ``left``/``top`` of its first pixel, ``width``/``height`` in pixels."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """One past the last column (``left + width``)."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def to_dict(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height}


@dataclass(frozen=True, slots=True)
class Garment:
    label: str
    confidence: float  # percent, 0..100, as Rekognition returns it
    box: RatioBox | None  # None for an image-level label (a classification model's answer)
    pixels: PixelBox | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 3),
            "box": self.box.to_dict() if self.box else None,
            "pixels": self.pixels.to_dict() if self.pixels else None,
        }


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _round(value: float) -> int:
    """Half away from zero for the non-negative values used here (Python's round() is banker's)."""
    return math.floor(value + 0.5)


def _span(start: float, length: float, size: int) -> tuple[int, int]:
    """One axis: ratio start and length -> pixel start and length, inside ``0..size``."""
    first = min(max(_round(start * size), 0), size)
    end = min(max(_round((start + length) * size), 0), size)
    if length > 0 and end - first < 1:
        # A non-empty box is at least one pixel, even a sliver or one past the edge.
        first = min(first, size - 1)
        end = first + 1
    return first, max(end - first, 0)


def pixel_box(box: RatioBox, width: int, height: int) -> PixelBox:
    """The ratio box in pixels of a ``width`` x ``height`` image.

    Edges are rounded to the nearest pixel boundary and clamped to the image; a non-empty
    ratio box (positive width and height) is at least 1x1 pixels, an empty one is 0 wide or
    0 high. ``left + width <= image width`` and ``top + height <= image height`` always hold.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    left, pixel_width = _span(box.left, box.width, width)
    top, pixel_height = _span(box.top, box.height, height)
    return PixelBox(left, top, pixel_width, pixel_height)


def garments_from_response(response: Mapping[str, Any], width: int, height: int) -> list[Garment]:
    """The ``CustomLabels`` of a DetectCustomLabels response, with pixel boxes, in its order."""
    garments = []
    for label in response.get("CustomLabels") or ():
        geometry = label.get("Geometry") or {}
        raw_box = geometry.get("BoundingBox")
        box = RatioBox.from_rekognition(raw_box) if raw_box else None
        garments.append(
            Garment(
                label=str(label.get("Name", "")),
                confidence=_finite(label.get("Confidence")),
                box=box,
                pixels=pixel_box(box, width, height) if box else None,
            )
        )
    return garments


def select(garments: Iterable[Garment], min_confidence: float | None = None, max_results: int | None = None) -> list[Garment]:
    """Garments at or above ``min_confidence`` (percent), most confident first (ties by label,
    then in the model's order), at most ``max_results``. ``None`` means no limit."""
    chosen = sorted(garments, key=lambda g: (-g.confidence, g.label))
    if min_confidence is not None:
        chosen = [g for g in chosen if g.confidence >= min_confidence]
    if max_results is not None:
        chosen = chosen[: max(max_results, 0)]
    return chosen


def check_options(min_confidence: float | None, max_results: int | None) -> None:
    """Raise ValueError for options outside DetectCustomLabels' ranges."""
    if min_confidence is not None and not (MIN_CONFIDENCE <= min_confidence <= MAX_CONFIDENCE):
        raise ValueError(f"min_confidence must be {MIN_CONFIDENCE:g} to {MAX_CONFIDENCE:g}, got {min_confidence:g}")
    if max_results is not None and not (MIN_RESULTS <= max_results <= MAX_RESULTS):
        raise ValueError(f"max_results must be {MIN_RESULTS} to {MAX_RESULTS}, got {max_results}")


def image_dict(image: ImageInfo) -> dict[str, Any]:
    return {"width": image.width, "height": image.height, "format": image.format}


def shape_answer(
    response: Mapping[str, Any],
    image: ImageInfo,
    *,
    min_confidence: float | None = None,
    max_results: int | None = None,
    model: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[Garment]]:
    """The API answer for one DetectCustomLabels response, and the garments it lists."""
    garments = select(garments_from_response(response, image.width, image.height), min_confidence, max_results)
    answer: dict[str, Any] = {}
    if model is not None:
        answer["model"] = dict(model)
    answer["image"] = image_dict(image)
    answer["garments"] = [g.to_dict() for g in garments]
    return answer, garments


def caption(garment: Garment) -> str:
    """``"trousers 87%"``: the confidence floored, so 99.6 never reads as a certain 100%."""
    return f"{garment.label} {math.floor(garment.confidence):d}%"


def drawable(garments: Sequence[Garment]) -> list[Garment]:
    """The garments with a non-empty pixel box."""
    return [g for g in garments if g.pixels is not None and g.pixels.width > 0 and g.pixels.height > 0]
