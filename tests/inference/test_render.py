"""The rendered answer: outlines where the boxes are, nothing elsewhere, Pillow only there."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fashion_pipeline.detections import garments_from_response
from inference import render
from inference.render import PALETTE, label_colour, text_colour

from .conftest import api_event, call, image_bytes, labels

GREY = (128, 128, 128)
LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"


def pixels_of(image: Image.Image, colour, region, tolerance: int = 0) -> int:
    """How many pixels in ``region`` (left, top, right, bottom; exclusive) have ``colour``."""
    left, top, right, bottom = region
    crop = image.convert("RGB").crop((left, top, right, bottom))
    return sum(1 for p in crop.getdata() if all(abs(a - b) <= tolerance for a, b in zip(p, colour)))


def test_colours_are_stable_distinct_and_from_the_name():
    assert label_colour("trousers") == label_colour("trousers") == PALETTE["trousers"]
    assert len(set(PALETTE.values())) == len(PALETTE) == 13
    custom = label_colour("hat")
    assert custom == label_colour("hat") and custom != label_colour("hats")
    assert all(0 <= c <= 255 for c in custom)


def test_caption_text_contrasts_with_its_fill():
    assert text_colour((255, 225, 25)) == render.DARK  # yellow: dark text
    assert text_colour((145, 30, 180)) == render.LIGHT  # purple: light text
    assert text_colour((0, 0, 0)) == render.LIGHT and text_colour((255, 255, 255)) == render.DARK


def draw(size=(400, 300), response=None, fmt="png", source_fmt="PNG", colour=GREY, mode="RGB"):
    data = image_bytes(*size, source_fmt, colour=colour, mode=mode)
    response = response or labels(("trousers", 91.5, (0.25, 0.4, 0.5, 0.5)))
    garments = garments_from_response(response, *size)
    rendered = render.render(data, garments, fmt)
    return rendered, Image.open(io.BytesIO(rendered.body)), garments


def test_outline_is_on_the_box_edges_and_nowhere_else():
    rendered, image, [garment] = draw()
    assert (rendered.content_type, image.format, image.size, rendered.scale) == ("image/png", "PNG", (400, 300), 1.0)
    box = garment.pixels
    assert (box.left, box.top, box.width, box.height) == (100, 120, 200, 150)
    colour = PALETTE["trousers"]
    right, bottom = box.right - 1, box.bottom - 1  # last column and row of the box
    middle_x, middle_y = box.left + box.width // 2, box.top + box.height // 2
    # On every edge, the outline band has the label's colour.
    for x, y in ((box.left, middle_y), (right, middle_y), (middle_x, box.top), (middle_x, bottom), (box.left + 1, middle_y)):
        assert image.getpixel((x, y))[:3] == colour, (x, y)
    # Dark lines on both sides of the band, so it shows on light and dark backgrounds.
    assert image.getpixel((box.left - 1, middle_y))[:3] == render.DARK
    assert image.getpixel((box.left + render.stroke_width(400, 300), middle_y))[:3] == render.DARK
    # Full edges: every row of the left edge, every column of the bottom edge.
    assert pixels_of(image, colour, (box.left, box.top, box.left + 1, box.bottom)) == box.height
    assert pixels_of(image, colour, (box.left, bottom, box.right, bottom + 1)) == box.width
    # None far inside the box, none far from it; the caption (label colour) sits just above.
    assert pixels_of(image, colour, (box.left + 20, box.top + 20, right - 20, bottom - 20)) == 0
    assert image.getpixel((middle_x, middle_y))[:3] == GREY
    assert pixels_of(image, colour, (0, 0, box.left - 10, 300)) == 0
    assert pixels_of(image, colour, (0, bottom + 10, 400, 300)) == 0
    assert pixels_of(image, colour, (right + 10, 0, 400, 300)) == 0
    assert pixels_of(image, colour, (box.left, box.top - 30, box.left + 60, box.top)) > 100


def test_each_label_has_its_colour_at_its_own_box():
    response = labels(("skirt", 80.0, (0.05, 0.05, 0.3, 0.3)), ("vest", 70.0, (0.6, 0.6, 0.35, 0.35)))
    _, image, garments = draw((500, 500), response)
    for garment in garments:
        box, colour = garment.pixels, label_colour(garment.label)
        other = label_colour(next(g.label for g in garments if g is not garment))
        edge = (box.left, box.top + box.height // 2)
        assert image.getpixel(edge)[:3] == colour
        assert pixels_of(image, other, (box.left - 2, box.top + 20, box.right + 2, box.bottom + 2)) == 0


def test_jpeg_output():
    rendered, image, [garment] = draw(fmt="jpeg", source_fmt="JPEG")
    assert (rendered.content_type, image.format, image.size) == ("image/jpeg", "JPEG", (400, 300))
    box = garment.pixels
    assert pixels_of(image, PALETTE["trousers"], (box.left, box.top + 20, box.left + 2, box.bottom - 20), tolerance=40) > 50


@pytest.mark.parametrize("mode, colour", [("L", 100), ("RGBA", (10, 200, 30, 0)), ("P", 3), ("LA", (90, 255)), ("I;16", 40000)])
def test_image_modes_are_flattened_to_rgb(mode, colour):
    rendered, image, _ = draw(mode=mode, colour=colour)
    assert image.mode == "RGB"
    if mode == "RGBA":  # transparent pixels become white, not the colour they hide
        assert image.getpixel((5, 5)) == (255, 255, 255)
    if mode == "I;16":  # 16-bit grey keeps its level: 40000/65536 of white
        assert image.getpixel((5, 5)) == (156, 156, 156)


def test_boxes_at_the_edges_and_slivers_are_drawn_inside_the_image():
    response = labels(("shorts", 90.0, (-0.1, -0.1, 0.5, 0.5)), ("skirt", 80.0, (0.9, 0.9, 0.5, 0.5)), ("vest", 70.0, (0.5, 0.5, 0.0001, 0.0001)))
    rendered, image, garments = draw(response=response)
    assert image.getpixel((0, 50))[:3] == PALETTE["shorts"]
    assert image.getpixel((399, 285))[:3] == PALETTE["skirt"]
    assert garments[2].pixels.width == 1


def test_undecodable_data_is_a_render_error():
    data = image_bytes(400, 300, "JPEG")
    with pytest.raises(render.RenderError):
        render.render(data[: len(data) // 3] + b"\0" * 10, [], "png")


def test_too_large_renders_are_scaled_down():
    size = (800, 600)
    data = image_bytes(*size, "PNG", colour=GREY)
    noisy = Image.effect_noise(size, 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "PNG")
    garments = garments_from_response(labels(("trousers", 90.0, (0.25, 0.25, 0.5, 0.5))), *size)
    full = render.render(out.getvalue(), garments, "png")
    small = render.render(out.getvalue(), garments, "png", max_bytes=len(full.body) // 3)
    assert small.scale < 0.6 and len(small.body) <= len(full.body) // 3
    image = Image.open(io.BytesIO(small.body))
    assert image.size == (small.width, small.height) == (round(800 * small.scale), round(600 * small.scale))
    left = int(200 * small.scale)
    assert image.getpixel((left, image.height // 2))[:3] == PALETTE["trousers"]
    assert render.render(data, garments, "png").scale == 1.0


# -- through the API -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "accept, query, expected",
    [
        ("image/png", None, "image/png"),
        ("image/jpeg", None, "image/jpeg"),
        (None, {"render": "true"}, "image/png"),
        ("image/jpeg", {"render": "true"}, "image/jpeg"),
        ("application/json, image/png", None, "application/json"),
        ("image/png;q=0.9, application/json", None, "application/json"),
        ("application/json;q=0.5, image/png", None, "image/png"),
        ("image/jpeg;q=0.5, image/png;q=0.8", None, "image/png"),
        ("*/*", None, "application/json"),
        ("image/*", None, "application/json"),
        ("image/png;q=0", None, "application/json"),
    ],
)
def test_accept_negotiation(fakes, accept, query, expected):
    answer = call(api_event("POST", "/detections", body=image_bytes(400, 300), accept=accept, query=query))
    assert answer.status == 200
    assert answer.content_type == expected
    assert answer.raw["isBase64Encoded"] is (expected != "application/json")


def test_rendered_answer_outlines_the_boxes_of_the_json_answer(fakes):
    fakes.rekognition.response = labels(("trousers", 91.5, (0.25, 0.4, 0.5, 0.5)), ("skirt", 60.0, (0.05, 0.05, 0.2, 0.2)))
    body = image_bytes(400, 300, "PNG", colour=GREY)
    boxes = call(api_event("POST", "/detections", body=body, content_type="image/png")).json["garments"]
    answer = call(api_event("POST", "/detections", body=body, content_type="image/png", accept="image/png"))
    assert answer.status == 200 and answer.headers["X-Garment-Count"] == "2"
    assert answer.headers["X-Render-Scale"] == "1.000"
    image = Image.open(io.BytesIO(answer.bytes))
    assert image.size == (400, 300)
    for garment in boxes:
        p = garment["pixels"]
        colour = label_colour(garment["label"])
        assert image.getpixel((p["left"], p["top"] + p["height"] // 2))[:3] == colour
        assert image.getpixel((p["left"] + p["width"] - 1, p["top"] + p["height"] // 2))[:3] == colour
        assert pixels_of(image, colour, (p["left"] + 15, p["top"] + 15, p["left"] + p["width"] - 15, p["top"] + p["height"] - 15)) == 0


def test_truncated_image_render_is_400(fakes):
    data = image_bytes(400, 300, "JPEG")
    answer = call(api_event("POST", "/detections", body=data[: len(data) // 2], accept="image/png"))
    assert (answer.status, answer.error["code"]) == (400, "image_corrupt")


def test_json_path_never_imports_pillow():
    # A fresh interpreter: import the handler, answer one JSON detection, look for PIL.
    script = """
import json, sys
from inference import handler
from inference.settings import Settings
class Rek:
    def detect_custom_labels(self, **p):
        return {"CustomLabels": [{"Name": "vest", "Confidence": 90.0, "Geometry": {"BoundingBox": {"Left": 0.1, "Top": 0.1, "Width": 0.5, "Height": 0.5}}}]}
class Ssm:
    def get_parameters_by_path(self, Path, **params):
        return {"Parameters": [{"Name": Path + "/demo", "Value": json.dumps({"project_version_arn": "arn:v", "project_arn": "arn:p", "version_name": "v"})}]}
class Ddb:
    def update_item(self, **p):
        return {}
import inference.runtime
inference.runtime.reset(settings=Settings("/m", "b", "t"), clients={"rekognition": Rek(), "ssm": Ssm(), "dynamodb": Ddb()})
import base64
png = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000800000008008020000004c5cf69c")
event = {"resource": "/detections", "path": "/detections", "httpMethod": "POST", "headers": {"Content-Type": "image/png"},
         "multiValueHeaders": {}, "queryStringParameters": None, "requestContext": {"requestId": "r", "stage": "prod"},
         "body": base64.b64encode(png).decode(), "isBase64Encoded": True}
class Context:
    function_name = "f"; memory_limit_in_mb = 1024; invoked_function_arn = "arn:f"; aws_request_id = "x"
answer = handler.handler(event, Context())
assert answer["statusCode"] == 200, answer
assert "PIL" not in sys.modules, "PIL imported on the JSON path"
import inference.render
assert "PIL" not in sys.modules, "PIL imported by importing inference.render"
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(LAMBDAS), "POWERTOOLS_TRACE_DISABLED": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
