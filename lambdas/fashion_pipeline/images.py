"""Image header probing and Rekognition Custom Labels image rules.

Sizes come from the file header, never from decoding: a JPEG's frame header (SOF) is found
by hopping from segment to segment, so a 5 MB photo with large EXIF/XMP blocks costs a few
small reads, whether they hit a local disk or are ranged GETs against S3.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Callable

# Rekognition Custom Labels limits for training and test images.
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_ASPECT_RATIO = 20.0
MAX_FILE_BYTES = 15 * 1024 * 1024

FIRST_READ = 8 * 1024  # covers SOF of most JPEGs without EXIF, and every PNG's IHDR
NEXT_READ = 4 * 1024  # a hop past an APPn segment lands here
MAX_SEGMENTS = 1024  # a JPEG with more segments before its frame header is treated as corrupt

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, length)`` returns up to ``length`` bytes from ``offset`` (fewer at EOF)."""

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_OTHER_FORMATS = (
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"RIFF", "WebP/RIFF"),
)


class ImageError(Exception):
    """An image Rekognition will not accept; ``reason`` is a stable report code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # "jpeg" or "png"
    width: int
    height: int
    depth: int  # colour channels


class HeaderReader:
    """Serves small reads from a cached window, fetching a new window only on a miss."""

    def __init__(self, read_at: ReadAt) -> None:
        self._read_at = read_at
        self._start = 0
        self._window = b""
        self.requests: list[tuple[int, int]] = []
        self.bytes_read = 0

    def get(self, offset: int, length: int) -> bytes:
        end = offset + length
        if not (self._start <= offset and end <= self._start + len(self._window)):
            size = max(length, FIRST_READ if not self.requests else NEXT_READ)
            self._window = self._read_at(offset, size)
            self._start = offset
            self.requests.append((offset, size))
            self.bytes_read += len(self._window)
        return self._window[offset - self._start : end - self._start]


def probe(read_at: ReadAt) -> tuple[ImageInfo, HeaderReader]:
    """Identify a JPEG or PNG and read its size from the header.

    Returns the info and the reader (whose ``requests`` and ``bytes_read`` say what it cost).
    Raises ImageError for other formats and for damaged headers.
    """
    reader = HeaderReader(read_at)
    head = reader.get(0, 32)
    if head.startswith(b"\xff\xd8"):
        return _probe_jpeg(reader), reader
    if head.startswith(_PNG_SIGNATURE):
        return _probe_png(head), reader
    if not head:
        raise ImageError("image_corrupt", "the file is empty")
    for signature, name in _OTHER_FORMATS:
        if head.startswith(signature):
            raise ImageError("image_unsupported_format", f"{name} image; only JPEG and PNG are accepted")
    if head[4:8] == b"ftyp":
        raise ImageError("image_unsupported_format", "HEIF/AVIF image; only JPEG and PNG are accepted")
    raise ImageError("image_unsupported_format", "not a JPEG or PNG file")


def probe_bytes(data: bytes) -> ImageInfo:
    return probe(lambda offset, length: data[offset : offset + length])[0]


def probe_file(path: str | os.PathLike[str]) -> tuple[ImageInfo, HeaderReader]:
    with open(path, "rb") as handle:

        def read_at(offset: int, length: int) -> bytes:
            handle.seek(offset)
            return handle.read(length)

        return probe(read_at)


def _probe_png(head: bytes) -> ImageInfo:
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ImageError("image_corrupt", "PNG without a valid IHDR header")
    width, height = struct.unpack(">II", head[16:24])
    colour_type = head[25]
    if colour_type not in _PNG_CHANNELS:
        raise ImageError("image_corrupt", f"PNG with invalid colour type {colour_type}")
    return ImageInfo("png", width, height, _PNG_CHANNELS[colour_type])


def _probe_jpeg(reader: HeaderReader) -> ImageInfo:
    pos = 2
    for _ in range(MAX_SEGMENTS):
        marker = reader.get(pos, 4)
        if len(marker) < 2:
            raise ImageError("image_corrupt", f"JPEG truncated at byte {pos} before its frame header")
        if marker[0] != 0xFF:
            raise ImageError("image_corrupt", f"JPEG segment marker expected at byte {pos}")
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if kind in _JPEG_STANDALONE:
            pos += 2
            continue
        if kind in (0xD9, 0xDA):
            raise ImageError("image_corrupt", "JPEG has no frame header before its image data")
        if len(marker) < 4:
            raise ImageError("image_corrupt", f"JPEG truncated at byte {pos}")
        (length,) = struct.unpack(">H", marker[2:4])
        if length < 2:
            raise ImageError("image_corrupt", f"JPEG segment with invalid length at byte {pos}")
        if kind in _JPEG_SOF:
            frame = reader.get(pos + 4, 6)
            if len(frame) < 6:
                raise ImageError("image_corrupt", "JPEG truncated inside its frame header")
            height, width = struct.unpack(">HH", frame[1:5])
            if width == 0 or height == 0:
                raise ImageError("image_corrupt", "JPEG frame header without dimensions")
            return ImageInfo("jpeg", width, height, frame[5])
        pos += 2 + length
    raise ImageError("image_corrupt", f"JPEG has more than {MAX_SEGMENTS} segments before its frame header")


def check_rules(info: ImageInfo, file_bytes: int) -> None:
    """Raise ImageError when Rekognition Custom Labels would refuse this image."""
    if file_bytes > MAX_FILE_BYTES:
        raise ImageError(
            "image_file_too_large", f"{file_bytes} bytes; the limit is {MAX_FILE_BYTES} bytes (15 MB)"
        )
    small, large = sorted((info.width, info.height))
    if small < MIN_SIDE or large > MAX_SIDE:
        raise ImageError(
            "image_dimensions",
            f"{info.width}x{info.height} px; each side must be {MIN_SIDE} to {MAX_SIDE} px",
        )
    if large / small > MAX_ASPECT_RATIO:
        raise ImageError(
            "image_aspect_ratio",
            f"{info.width}x{info.height} px has an aspect ratio above {MAX_ASPECT_RATIO:g}:1",
        )
