"""Image header probing and Rekognition Custom Labels image rules.

Sizes come from the file header, never from decoding: a JPEG's frame header (SOF) is found
by hopping from segment to segment, so a 5 MB photo with large EXIF/XMP blocks costs a few
small reads, whether they hit a local disk or are ranged GETs against S3.
"""

from __future__ import annotations

import os
import struct
from typing import Callable, NamedTuple

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
_JPEG_WITH_LENGTH = frozenset(range(256)) - _JPEG_STANDALONE - {0xFF, 0xD9, 0xDA}  # markers a length follows
_JPEG_SEGMENT = struct.Struct(">BBH")  # 0xFF, the marker, the segment's length
_JPEG_FRAME = struct.Struct(">xHHB")  # after a frame marker and its length: precision, height, width, components
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SIZE = struct.Struct(">II")
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


class ImageInfo(NamedTuple):
    format: str  # "jpeg" or "png"
    width: int
    height: int
    depth: int  # colour channels


class HeaderReader:
    """Reads a file's header through a window: a new window is fetched only on a miss.

    ``window`` holds the bytes from ``start``; ``at_eof`` says the last fetch came back short,
    so nothing lies beyond the window.
    """

    __slots__ = ("_read_at", "start", "window", "at_eof", "requests", "bytes_read")

    def __init__(self, read_at: ReadAt) -> None:
        """Reads the first window (FIRST_READ bytes from the start)."""
        self._read_at = read_at
        self.start = 0
        self.window = window = read_at(0, FIRST_READ)
        self.at_eof = len(window) < FIRST_READ
        self.requests: list[tuple[int, int]] = [(0, FIRST_READ)]
        self.bytes_read = len(window)

    def fetch(self, offset: int, length: int) -> bytes:
        """Move the window to ``offset``, at least ``length`` bytes long (fewer at EOF)."""
        size = max(length, NEXT_READ)
        self.window = window = self._read_at(offset, size)
        self.start = offset
        self.at_eof = len(window) < size
        self.requests.append((offset, size))
        self.bytes_read += len(window)
        return window


def probe(read_at: ReadAt) -> tuple[ImageInfo, HeaderReader]:
    """Identify a JPEG or PNG and read its size from the header.

    Returns the info and the reader (whose ``requests`` and ``bytes_read`` say what it cost).
    Raises ImageError for other formats and for damaged headers.
    """
    reader = HeaderReader(read_at)
    head = reader.window
    if head[:2] == b"\xff\xd8":
        return _probe_jpeg(reader), reader
    if head[:8] == _PNG_SIGNATURE:
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
    width, height = _PNG_SIZE.unpack_from(head, 16)
    colour_type = head[25]
    if colour_type not in _PNG_CHANNELS:
        raise ImageError("image_corrupt", f"PNG with invalid colour type {colour_type}")
    return ImageInfo("png", width, height, _PNG_CHANNELS[colour_type])


def _probe_jpeg(reader: HeaderReader) -> ImageInfo:
    # Segments are walked in the window's bytes directly (this runs for every image); a new
    # window is fetched when a marker and the frame header that may follow it (10 bytes) are
    # not all in the current one.
    window, start, pos = reader.window, 0, 2
    for _ in range(MAX_SEGMENTS):
        i = pos - start
        if i + 10 > len(window) and not (reader.at_eof and i <= len(window)):
            window, start, i = reader.fetch(pos, 10), pos, 0
        if len(window) - i >= 10:  # the usual case: a marker with a length, all in the window
            ff, kind, length = _JPEG_SEGMENT.unpack_from(window, i)
            if ff == 0xFF and kind in _JPEG_WITH_LENGTH and length >= 2:
                if kind in _JPEG_SOF:
                    height, width, depth = _JPEG_FRAME.unpack_from(window, i + 4)
                    if width == 0 or height == 0:
                        raise ImageError("image_corrupt", "JPEG frame header without dimensions")
                    return ImageInfo("jpeg", width, height, depth)
                pos += 2 + length
                continue
        pos = _other_jpeg_segment(window, i, pos)
    raise ImageError("image_corrupt", f"JPEG has more than {MAX_SEGMENTS} segments before its frame header")


def _other_jpeg_segment(window: bytes, i: int, pos: int) -> int:
    """Where the segment at ``pos`` (``window[i]``) that is not a plain one with a length
    ends: a fill byte or a marker without a length. Raises ImageError for anything else."""
    available = len(window) - i
    if available < 2:
        raise ImageError("image_corrupt", f"JPEG truncated at byte {pos} before its frame header")
    if window[i] != 0xFF:
        raise ImageError("image_corrupt", f"JPEG segment marker expected at byte {pos}")
    kind = window[i + 1]
    if kind == 0xFF:  # fill byte before a marker
        return pos + 1
    if kind in _JPEG_STANDALONE:
        return pos + 2
    if kind == 0xD9 or kind == 0xDA:
        raise ImageError("image_corrupt", "JPEG has no frame header before its image data")
    if available < 4:
        raise ImageError("image_corrupt", f"JPEG truncated at byte {pos}")
    if window[i + 2] << 8 | window[i + 3] < 2:
        raise ImageError("image_corrupt", f"JPEG segment with invalid length at byte {pos}")
    raise ImageError("image_corrupt", "JPEG truncated inside its frame header")  # a frame header, cut short


def check_rules(info: ImageInfo, file_bytes: int) -> None:
    """Raise ImageError when Rekognition Custom Labels would refuse this image."""
    if file_bytes > MAX_FILE_BYTES:
        raise ImageError(
            "image_file_too_large", f"{file_bytes} bytes; the limit is {MAX_FILE_BYTES} bytes (15 MB)"
        )
    small, large = (info.width, info.height) if info.width <= info.height else (info.height, info.width)
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
