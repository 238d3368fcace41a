"""The image with each detected garment outlined and captioned (the inference API's rendered
answers and the batch job's rendered images draw alike).

Pillow is imported when an image is rendered, never when this module is imported: the JSON
answer of the API must not pay for it at cold start, and the core stays importable without it.

Drawing rules, chosen to stay readable on any photo:

* each label has its own colour, derived from the label's name (a fixed palette for the
  DeepFashion2 categories, a hash of the name otherwise; never the order of the answer), so
  one label looks the same on every image;
* the outline is a band of the label colour between two thin dark lines, so it stands out
  on light and on dark backgrounds;
* the caption (label and confidence, floored) sits in a box filled with the label colour
  and edged in dark, just above the garment's box (inside its top edge when there is no room
  above), in black or white text, whichever contrasts more with the fill.

Boxes are drawn on the pixels as stored: like Rekognition's boxes, the drawing ignores the
EXIF orientation, and the output carries no EXIF, so the two agree.
"""

from __future__ import annotations

import colorsys
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .detections import Garment, caption, drawable

# Lambda returns at most 6 MB (6,291,556 bytes) to API Gateway, and a binary body travels in
# base64 (4/3 of its size) inside the JSON envelope: keep the encoded image below this.
MAX_RENDER_BYTES = 4_500_000
MAX_ATTEMPTS = 4
DARK = (16, 16, 16)
LIGHT = (250, 250, 250)
FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}
PNG_COMPRESS_LEVEL = 3  # zlib level: 1 is fastest and largest, 6 Pillow's default
JPEG_QUALITY = 85


class RenderError(Exception):
    """The image could not be decoded (the header was fine, the data is not)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    width: int
    height: int
    scale: float  # 1.0 unless the image had to be shrunk to fit the response size limit


# The DeepFashion2 categories get clearly distinct colours (Trubetskoy's "20 distinct
# colours"), by name; any other label gets one derived from a hash of its name.
PALETTE: dict[str, tuple[int, int, int]] = {
    "short_sleeved_shirt": (230, 25, 75),
    "long_sleeved_shirt": (60, 180, 75),
    "short_sleeved_outwear": (255, 225, 25),
    "long_sleeved_outwear": (0, 130, 200),
    "vest": (245, 130, 48),
    "sling": (145, 30, 180),
    "shorts": (70, 240, 240),
    "trousers": (240, 50, 230),
    "skirt": (210, 245, 60),
    "short_sleeved_dress": (250, 190, 212),
    "long_sleeved_dress": (0, 128, 128),
    "vest_dress": (220, 190, 255),
    "sling_dress": (170, 110, 40),
}


def label_colour(label: str) -> tuple[int, int, int]:
    """A stable colour for a label, from its name: the palette's, else a hue from a CRC32 of
    the name (the same in every process, unlike ``hash()``)."""
    if label in PALETTE:
        return PALETTE[label]
    digest = zlib.crc32(label.encode("utf-8"))
    hue = (digest & 0xFFFF) / 0x10000
    saturation = 0.70 + ((digest >> 16) & 0xFF) / 0xFF * 0.25  # 0.70..0.95
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


def text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever has the higher WCAG contrast ratio against ``fill``."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    luminance = 0.2126 * channel(fill[0]) + 0.7152 * channel(fill[1]) + 0.0722 * channel(fill[2])
    return DARK if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else LIGHT


def stroke_width(width: int, height: int) -> int:
    return max(2, round(min(width, height) / 250))


def font_size(width: int, height: int) -> int:
    return min(max(round(min(width, height) / 32), 11), 48)


def render(data: bytes, garments: Sequence[Garment], fmt: str = "png", *, max_bytes: int = MAX_RENDER_BYTES) -> Rendered:
    """Decode ``data``, draw ``garments`` (their pixel boxes are in ``data``'s pixels), encode.

    When the encoded image exceeds ``max_bytes`` it is drawn again at a smaller scale (the
    response's ``scale`` says so). Raises RenderError for image data Pillow cannot decode.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    base = _decode(data)
    scale = 1.0
    for _ in range(MAX_ATTEMPTS):
        # The first drawing goes on the decoded image itself; a retry starts from clean pixels.
        image = base if scale == 1.0 else _resize(_decode(data), scale)
        _draw(image, garments, scale)
        body = _encode(image, fmt)
        if len(body) <= max_bytes:
            return Rendered(body, FORMATS[fmt], image.width, image.height, scale)
        # Encoded size grows about with the pixel count: shrink both sides by the square root.
        scale *= min(0.9 * (max_bytes / len(body)) ** 0.5, 0.9)
    raise RenderError(f"the rendered image does not fit in {max_bytes} bytes")


def _pil() -> Any:
    from PIL import Image, ImageDraw, ImageFont

    return Image, ImageDraw, ImageFont


def _decode(data: bytes) -> Any:
    Image, _, _ = _pil()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # noqa: BLE001 - whatever the decoder trips on, it is the data
        # Pillow says OSError, SyntaxError, ValueError, EOFError, DecompressionBombError...
        # depending on where the data breaks; all mean the same to the caller.
        raise RenderError(f"the image data cannot be decoded ({type(exc).__name__})") from None
    return _to_rgb(image)


def _to_rgb(image: Any) -> Any:
    Image, _, _ = _pil()
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: keep the top 8 bits (a plain convert would clip everything to white).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def _resize(image: Any, scale: float) -> Any:
    Image, _, _ = _pil()
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


@lru_cache(maxsize=16)
def _font(size: int) -> Any:
    _, _, ImageFont = _pil()
    try:
        return ImageFont.load_default(size=size)  # Pillow's embedded FreeType font
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _draw(image: Any, garments: Sequence[Garment], scale: float) -> None:
    _, ImageDraw, _ = _pil()
    draw = ImageDraw.Draw(image)
    width, height = image.size
    stroke = stroke_width(width, height)
    font = _font(font_size(width, height))
    boxes = []
    for garment in drawable(garments):
        box = garment.pixels
        left = min(int(box.left * scale), width - 1)
        top = min(int(box.top * scale), height - 1)
        right = max(min(round(box.right * scale), width) - 1, left)  # last column, inclusive
        bottom = max(min(round(box.bottom * scale), height) - 1, top)
        boxes.append((garment, left, top, right, bottom))
    # Outlines first, then captions over them; the most confident caption is drawn last (on top).
    for garment, left, top, right, bottom in sorted(boxes, key=lambda b: -(b[3] - b[1]) * (b[4] - b[2])):
        colour = label_colour(garment.label)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), outline=DARK, width=1)
        draw.rectangle((left, top, right, bottom), outline=colour, width=stroke)
        if right - left > 2 * stroke and bottom - top > 2 * stroke:
            draw.rectangle((left + stroke, top + stroke, right - stroke, bottom - stroke), outline=DARK, width=1)
    for garment, left, top, right, bottom in sorted(boxes, key=lambda b: b[0].confidence):
        _caption(draw, font, garment, left, top, bottom, stroke, width, height)


def _caption(draw: Any, font: Any, garment: Garment, left: int, top: int, bottom: int, stroke: int, width: int, height: int) -> None:
    text = caption(garment)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    pad = max(2, (y1 - y0) // 4)
    box_width, box_height = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    x = max(min(left, width - box_width), 0)
    if top - box_height >= 0:
        y = top - box_height  # above the box
    elif top + stroke + box_height <= height:
        y = top + stroke  # inside, under the top edge
    else:
        y = max(height - box_height, 0)
    fill = label_colour(garment.label)
    draw.rectangle((x, y, x + box_width - 1, y + box_height - 1), fill=fill, outline=DARK, width=1)
    draw.text((x + pad - x0, y + pad - y0), text, font=font, fill=text_colour(fill))


def _encode(image: Any, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
