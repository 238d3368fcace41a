"""Annotation and record types, and the per-image conversion rules.

An ``ImageAnnotation`` is what a reader (DeepFashion2, COCO) found for one image; a
``Record`` is that image once its header has been probed and its boxes clipped: the unit
that fragments store and that manifests are assembled from. Boxes keep canonical category
names, so the label mapping is applied at assembly and can change without re-conversion.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .images import ImageError, ImageInfo, check_rules

MIN_BOX_SIDE = 1  # a box this thin (or thinner) after clipping teaches nothing
# Training shrinks an image with a side over TRAINING_SIDE px, and a box must still be more than
# MIN_BOX_SIDE px wide and high afterwards: "During training, Amazon Rekognition Custom Labels
# resizes an image if any of its dimensions are greater than 1280 pixels [...]. The resulting
# bounding box heights and widths must be greater than 1 x 1 pixels." (ERROR_BOUNDING_BOX_TOO_SMALL,
# https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/tm-debugging-json-line-errors.html).
# The page does not say to what size; we assume the gentlest resize it allows, the longer side to
# 1280 px with the aspect ratio kept, so every box dropped for it here would fail there too.
TRAINING_SIDE = 1280


# What the COCO reader puts in place of an unpaired surrogate escape such as "\ud800" (coco.py):
# a noncharacter, which Unicode reserves for a program's internal use ("Noncharacters", The
# Unicode Standard, section 23.7), so that such a string is still seen as not text here.
NOT_TEXT = "\uffff"


def is_text(value: str) -> bool:
    """True if ``value`` can be written as UTF-8: no lone surrogate (json.loads makes one of
    the escape \\ud800, and os.fsdecode of a file name that is not UTF-8 one such as U+DCFF),
    and no NOT_TEXT."""
    if value.isascii():
        return True
    if NOT_TEXT in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(value: str) -> str:
    """``value`` as a report can write it: a lone surrogate becomes its escape (backslash, u, hex)."""
    return value if is_text(value) else value.replace(NOT_TEXT, "\\uffff").encode("utf-8", "backslashreplace").decode("utf-8")


NOT_TEXT_DETAIL = "not valid Unicode text (a lone surrogate escape such as \\ud800, or U+FFFF)"


def normalise_image_name(name: str) -> str:
    """An image file name from an annotation, as a path relative to the images root.

    The one rule for both image stores (a local ``--images`` folder, ``LocalImages``; a dataset's
    S3 prefix, ``S3ImageStore``) and the readers that name images (COCO ``file_name``, the
    ``image`` of JSON Lines): ``./a.jpg``, ``a//b.jpg`` and ``a/x/../b.jpg`` name the files
    ``a.jpg`` and ``a/b.jpg``, as ``aws s3 sync`` uploads them (POSIX rules, ``posixpath.normpath``:
    https://docs.python.org/3/library/os.path.html#os.path.normpath; a backslash is an ordinary
    character). A name that leaves the root (``../x.jpg``, ``/etc/x.jpg``) is refused, so no
    annotation reads outside the images folder or the dataset's prefix.

    Raises AnnotationError (``image_outside_images``, ``invalid_file_name``).
    """
    if name.isascii() and "/" not in name and "\0" not in name and name not in ("", ".", ".."):
        return name  # a bare file name, the usual case (this runs per image)
    normal = posixpath.normpath(name) if "/" in name else name
    if normal == ".." or normal.startswith(("/", "../")):
        raise AnnotationError(
            "image_outside_images", f"image file name {name!r} leaves the images folder; names are relative to it, without '..' past its root"
        )
    if normal in ("", "."):
        raise AnnotationError("invalid_file_name", f"image file name {name!r} names no file (empty, or the images folder itself)")
    if "\0" in normal:
        raise AnnotationError("invalid_file_name", f"image file name {name!r} holds a NUL character, which no file name can")
    if not is_text(normal):
        raise AnnotationError("invalid_file_name", f"image file name {name!r} is {NOT_TEXT_DETAIL}")
    return normal


def checked_image_names(candidates: tuple[str, ...]) -> tuple[str, ...]:
    """``candidates`` normalised for an image store to look up; raises ImageError for a name
    the store must not read (normalise_image_name), which the conversion reports."""
    try:
        return tuple([normalise_image_name(name) for name in candidates])
    except AnnotationError as exc:
        raise ImageError(exc.reason, exc.detail) from None


def pair_id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a ``pair_id`` (which groups images for the split), or None when it
    can: an integer, a finite number or text. ``true`` is no number here, nor a list an id."""
    kind = type(value)
    if kind is int:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"pair_id {value!r} is not a finite number"
    if kind is str:
        return None if is_text(value) else f"pair_id {value!r} is {NOT_TEXT_DETAIL}"
    return f"pair_id {value!r} is not a number or a string"


class AnnotationError(Exception):
    """An annotation file or record that cannot be read; ``reason`` is a report code."""

    def __init__(self, reason: str, detail: str, source: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.source = source  # where it was found, when more precise than the file


@dataclass(frozen=True, slots=True)
class Rejection:
    """One line of the report: something from the input that is not in a manifest."""

    source: str  # the annotation file (or object) it came from
    image: str | None
    reason: str
    detail: str
    item: str | None = None  # set for a dropped box whose image may still be in a manifest

    def to_dict(self) -> dict[str, Any]:
        # printable: a report line is UTF-8, and a name from the input may hold a lone surrogate
        # (a folder's file name that is not UTF-8), which must not stop the report being written.
        image = self.image
        out = {"source": printable(self.source), "image": image if image is None else printable(image), "reason": self.reason, "detail": printable(self.detail)}
        if self.item is not None:
            out["item"] = printable(self.item)
        out["level"] = "box" if self.item is not None else "image"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Rejection":
        return cls(data["source"], data.get("image"), data["reason"], data.get("detail", ""), data.get("item"))


@dataclass(slots=True)
class SourceBox:
    item: str  # "item2" in DeepFashion2, "annotation 17" in COCO
    category: str | None  # canonical name, None when the id is unknown
    category_id: Any
    xyxy: Any  # [x1, y1, x2, y2] as read; validated by build_record
    problem: tuple[str, str] | None = None  # (reason, detail): why the reader already knows the box is unusable


@dataclass(slots=True)
class ImageAnnotation:
    source: str
    image_candidates: tuple[str, ...]  # file names to look for, first found wins
    pair_id: str | None
    boxes: list[SourceBox] = field(default_factory=list)

    @property
    def image(self) -> str:
        return self.image_candidates[0]


# Box and Record are named tuples rather than frozen dataclasses: just as immutable, and
# several times cheaper to create, which counts at one record and a few boxes per image.
class Box(NamedTuple):
    category: str
    left: int
    top: int
    width: int
    height: int


class Record(NamedTuple):
    source: str
    image_uri: str
    width: int
    height: int
    depth: int
    pair_id: str | None
    boxes: tuple[Box, ...]
    created: str  # ISO date the annotation was made (its file's timestamp)

    @property
    def image_name(self) -> str:
        return self.image_uri.rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "image_uri": self.image_uri,
            "width": self.width,
            "height": self.height,
            "depth": self.depth,
            "pair_id": self.pair_id,
            "created": self.created,
            "boxes": [[b.category, b.left, b.top, b.width, b.height] for b in self.boxes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        return cls(
            source=data["source"],
            image_uri=data["image_uri"],
            width=int(data["width"]),
            height=int(data["height"]),
            depth=int(data["depth"]),
            pair_id=data.get("pair_id"),
            created=data["created"],
            boxes=tuple(Box(c, int(l), int(t), int(w), int(h)) for c, l, t, w, h in data["boxes"]),
        )


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return int(value)  # kept exact: a huge int compares correctly, where float() overflows
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError


def clip_box(xyxy: Any, width: int, height: int) -> tuple[int, int, int, int]:
    """[x1, y1, x2, y2] in pixels -> (left, top, width, height) clipped to the image.

    Raises AnnotationError with the reason for a box that cannot be used.
    """
    try:
        if not isinstance(xyxy, (list, tuple)) or len(xyxy) != 4:
            raise ValueError
        x1, y1, x2, y2 = xyxy
        if not (type(x1) is int and type(y1) is int and type(x2) is int and type(y2) is int):  # ints: the usual case
            x1, y1, x2, y2 = map(_number, xyxy)
    except ValueError:
        raise AnnotationError("box_invalid", f"bounding box {xyxy!r} is not four numbers") from None
    if x2 < x1 or y2 < y1:
        raise AnnotationError("box_invalid", f"bounding box {xyxy!r} has x2 < x1 or y2 < y1")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise AnnotationError("box_outside_image", f"bounding box {xyxy!r} lies outside the {width}x{height} image")
    # Each corner is now inside the image on one side, so it is clipped on the other only.
    left, top = (round(x1) if x1 > 0 else 0), (round(y1) if y1 > 0 else 0)
    right, bottom = (round(x2) if x2 < width else width), (round(y2) if y2 < height else height)
    if right - left <= MIN_BOX_SIDE or bottom - top <= MIN_BOX_SIDE:
        raise AnnotationError(
            "box_too_small",
            f"bounding box {xyxy!r} is {right - left}x{bottom - top} px inside the image; more than {MIN_BOX_SIDE} px needed",
        )
    return left, top, right - left, bottom - top


def _thin_after_resize(width: int, height: int) -> int:
    """The widest box side (px) that training's resize of a width x height image leaves at
    MIN_BOX_SIDE or less; 0 when that is no more than clip_box already drops."""
    longer = width if width >= height else height
    # A side of n px becomes n * TRAINING_SIDE / longer: too thin while n * TRAINING_SIDE <= MIN_BOX_SIDE * longer.
    thin = MIN_BOX_SIDE * longer // TRAINING_SIDE
    return thin if thin > MIN_BOX_SIDE else 0


def _too_small_after_resize(xyxy: Any, clipped: tuple[int, int, int, int], width: int, height: int) -> AnnotationError:
    scale = TRAINING_SIDE / max(width, height)
    return AnnotationError(
        "box_too_small_after_resize",
        f"bounding box {xyxy!r} is {clipped[2]}x{clipped[3]} px, {clipped[2] * scale:.2f}x{clipped[3] * scale:.2f} px once training"
        f" scales the {width}x{height} image to {TRAINING_SIDE} px on its longer side; more than {MIN_BOX_SIDE} px needed",
    )


def build_record(
    annotation: ImageAnnotation,
    image_uri: str,
    info: ImageInfo,
    file_bytes: int,
    created: str,
) -> tuple[Record | None, list[Rejection]]:
    """Apply the image rules and clip the boxes of one annotated image.

    Returns the record (None when the image itself is rejected) and every rejection.
    """
    try:
        check_rules(info, file_bytes)
    except ImageError as exc:
        return None, [Rejection(annotation.source, image_uri.rsplit("/", 1)[-1], exc.reason, exc.detail)]
    source, pair_id = annotation.source, annotation.pair_id
    # The readers refuse such text already; this keeps a record that could not be written as
    # UTF-8 (fragment, manifest) out, whatever reader made it.
    if not is_text(source):
        return None, [Rejection(source, image_uri.rsplit("/", 1)[-1], "invalid_file_name", f"the annotation's name is {NOT_TEXT_DETAIL}")]
    if pair_id is not None and not is_text(pair_id):
        return None, [Rejection(source, image_uri.rsplit("/", 1)[-1], "invalid_pair_id", f"pair_id {pair_id!r} is {NOT_TEXT_DETAIL}")]
    rejections: list[Rejection] = []
    boxes: list[Box] = []
    width, height = info.width, info.height
    thin = _thin_after_resize(width, height)
    for box in annotation.boxes:
        try:
            if box.problem is not None:
                raise AnnotationError(*box.problem)
            if box.category is None:
                raise AnnotationError("unknown_category", f"category_id {box.category_id!r} is not in the catalogue")
            clipped = clip_box(box.xyxy, width, height)
            if thin and (clipped[2] <= thin or clipped[3] <= thin):
                raise _too_small_after_resize(box.xyxy, clipped, width, height)
            boxes.append(Box(box.category, *clipped))
        except AnnotationError as exc:
            rejections.append(Rejection(annotation.source, image_uri.rsplit("/", 1)[-1], exc.reason, exc.detail, box.item))
    record = Record(source, image_uri, width, height, info.depth, pair_id, tuple(boxes), created)
    return record, rejections
