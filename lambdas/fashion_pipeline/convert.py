"""From annotations to records: locate and probe each image, then apply the rules.

The image store is the only thing that differs between a local folder (the CLI) and an
S3 bucket (the converter Lambda); both hand the same rules the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

from .images import ImageError, ReadAt, probe
from .records import AnnotationError, ImageAnnotation, Record, Rejection, build_record


def _nothing() -> None:
    pass


class OpenedImage(NamedTuple):
    name: str  # the file name that was found among the candidates
    uri: str  # what the manifest's source-ref will say
    size: int  # bytes
    read_at: ReadAt
    close: Callable[[], None] = _nothing  # a local file is held open while it is probed


class ImageStore(Protocol):
    def open(self, candidates: tuple[str, ...]) -> OpenedImage | None:
        """The first candidate that exists, or None."""
        ...

    def describe(self) -> str:
        """Where images are looked for, for error messages."""
        ...


@dataclass
class Converted:
    record: Record | None
    rejections: list[Rejection]
    bytes_read: int = 0
    requests: int = 0


def convert_annotation(annotation: ImageAnnotation, images: ImageStore, *, created: str) -> Converted:
    """Probe the annotation's image and turn it into a record (or an image rejection)."""
    try:
        opened = images.open(annotation.image_candidates)
    except ImageError as exc:
        return Converted(None, [Rejection(annotation.source, annotation.image, exc.reason, exc.detail)])
    if opened is None:
        names = " or ".join(annotation.image_candidates)
        return Converted(None, [Rejection(annotation.source, annotation.image, "image_missing", f"{names} not found in {images.describe()}")])
    try:
        info, reader = probe(opened.read_at)
    except ImageError as exc:
        return Converted(None, [Rejection(annotation.source, opened.name, exc.reason, exc.detail)])
    finally:
        opened.close()
    record, rejections = build_record(annotation, opened.uri, info, opened.size, created)
    return Converted(record, rejections, reader.bytes_read, len(reader.requests))


def error_rejection(error: AnnotationError, source: str) -> Rejection:
    """An unreadable annotation (file or line) as a report entry."""
    return Rejection(error.source or source, None, error.reason, error.detail)
