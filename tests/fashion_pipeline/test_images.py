import io
import struct

import pytest
from PIL import Image

from fashion_pipeline.images import (
    FIRST_READ,
    ImageError,
    ImageInfo,
    check_rules,
    probe,
    probe_bytes,
)
from fashion_pipeline_tools.sample import add_app_segments


def encode(fmt: str, size=(300, 200), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "white").save(out, fmt)
    return out.getvalue()


class Recorder:
    def __init__(self, data: bytes):
        self.data = data
        self.ranges = []

    def __call__(self, offset, length):
        self.ranges.append((offset, length))
        return self.data[offset : offset + length]


@pytest.mark.parametrize("mode,depth", [("RGB", 3), ("L", 1), ("CMYK", 4)])
def test_jpeg_size_and_depth(mode, depth):
    assert probe_bytes(encode("JPEG", (321, 123), mode)) == ImageInfo("jpeg", 321, 123, depth)


@pytest.mark.parametrize("mode,depth", [("RGB", 3), ("RGBA", 4), ("L", 1), ("LA", 2), ("P", 3)])
def test_png_size_and_depth(mode, depth):
    assert probe_bytes(encode("PNG", (77, 4000), mode)) == ImageInfo("png", 77, 4000, depth)


def test_progressive_jpeg():
    out = io.BytesIO()
    Image.new("RGB", (640, 480)).save(out, "JPEG", progressive=True)
    assert probe_bytes(out.getvalue()).width == 640


def test_far_frame_header_is_reached_with_few_small_reads():
    plain = encode("JPEG", (800, 600))
    far = add_app_segments(plain, 600_000)  # ten 64 KB XMP segments before the frame header
    assert len(far) > 600_000
    reader = Recorder(far)
    info, header = probe(reader)
    assert (info.width, info.height) == (800, 600)
    # One first window, then one small read per segment hop; never the whole file.
    assert reader.ranges[0] == (0, FIRST_READ)
    assert all(length <= FIRST_READ for _, length in reader.ranges)
    assert len(reader.ranges) <= 12
    assert header.bytes_read < 64 * 1024


def test_png_needs_one_read():
    reader = Recorder(encode("PNG", (1000, 1000)))
    probe(reader)
    assert reader.ranges == [(0, FIRST_READ)]


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"GIF89a" + bytes(40), "image_unsupported_format"),
        (b"BM" + bytes(40), "image_unsupported_format"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image_unsupported_format"),
        (b"hello world, not an image", "image_unsupported_format"),
        (b"", "image_corrupt"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image_corrupt"),  # truncated before SOF
        (b"\xff\xd8\xff\xda\x00\x08", "image_corrupt"),  # scan before frame header
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "image_corrupt"),
    ],
)
def test_bad_images(data, reason):
    with pytest.raises(ImageError) as caught:
        probe_bytes(data)
    assert caught.value.reason == reason


def test_jpeg_with_fill_bytes_and_restart_markers():
    plain = encode("JPEG", (100, 90))
    tweaked = plain[:2] + b"\xff\xff\xff" + plain[2:]  # fill bytes are legal before a marker
    assert probe_bytes(tweaked).width == 100


@pytest.mark.parametrize(
    "size,file_bytes,reason",
    [
        ((63, 100), 1000, "image_dimensions"),
        ((100, 4097), 1000, "image_dimensions"),
        ((64, 1281), 1000, "image_aspect_ratio"),
        ((100, 100), 15 * 1024 * 1024 + 1, "image_file_too_large"),
    ],
)
def test_rekognition_image_rules(size, file_bytes, reason):
    with pytest.raises(ImageError) as caught:
        check_rules(ImageInfo("jpeg", *size, 3), file_bytes)
    assert caught.value.reason == reason


@pytest.mark.parametrize("size", [(64, 64), (4096, 4096), (64, 1280), (4096, 205)])
def test_limits_are_inclusive(size):
    check_rules(ImageInfo("png", *size, 3), 15 * 1024 * 1024)


def test_sof_length_field_is_respected():
    # A hand-made JPEG: SOI, a COM segment, then SOF0 with 17x19 and 3 components.
    com = b"\xff\xfe" + struct.pack(">H", 6) + b"abcd"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 19, 17, 3) + bytes(9)
    assert probe_bytes(b"\xff\xd8" + com + sof) == ImageInfo("jpeg", 17, 19, 3)
