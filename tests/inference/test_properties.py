"""Property: whatever JPEG or PNG comes in, the answer is 200 or a documented error, never 500."""

from __future__ import annotations

import base64
import io
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from .conftest import Clock, Fakes, FakeDynamoDB, FakeRekognition, FakeSSM, api_event, call, install

DOCUMENTED = {
    200: {None},
    400: {"image_corrupt", "image_dimensions", "image_aspect_ratio", "invalid_request"},
    413: {"image_too_large"},
    415: {"unsupported_media_type"},
}
LABELS = ["trousers", "skirt", "vest_dress", "short_sleeved_shirt", "a label nobody trained"]

ratio = st.floats(min_value=-0.2, max_value=1.2, allow_nan=False)
detections = st.lists(
    st.tuples(st.sampled_from(LABELS), st.floats(min_value=0, max_value=100, allow_nan=False), st.one_of(st.none(), st.tuples(ratio, ratio, ratio, ratio))),
    max_size=6,
)


@st.composite
def images(draw):
    """A valid JPEG or PNG, 64-512 px a side (aspect ratio at most 8:1, inside the 20:1 limit)."""
    fmt = draw(st.sampled_from(["PNG", "JPEG"]))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA"] if fmt == "PNG" else ["RGB", "L"]))
    width, height = draw(st.integers(64, 512)), draw(st.integers(64, 512))
    seed = draw(st.integers(0, 2**16))
    if seed % 2:  # noise (deterministic: hypothesis replays examples)
        image = Image.frombytes(mode, (width, height), random.Random(seed).randbytes(width * height * len(mode)))
    else:
        image = Image.new(mode, (width, height), seed % 256 if mode == "L" else (seed % 256, 90, 200, 128)[: len(mode)])
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue(), fmt


def response(items):
    labels = []
    for name, confidence, box in items:
        label = {"Name": name, "Confidence": confidence}
        if box is not None:
            label["Geometry"] = {"BoundingBox": dict(zip(("Left", "Top", "Width", "Height"), box))}
        labels.append(label)
    return {"CustomLabels": labels}


def fresh(items) -> Fakes:
    fakes = Fakes(FakeRekognition(response=response(items)), FakeSSM(), FakeDynamoDB(), Clock(), Clock(1_795_867_200.0))
    return install(fakes)


def assert_documented(answer):
    assert answer.status != 500, answer.raw
    if answer.status == 200:
        return
    assert answer.status in DOCUMENTED, answer.raw
    assert answer.error["code"] in DOCUMENTED[answer.status], answer.raw


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(), detections, st.sampled_from([None, "image/png", "image/jpeg", "application/json", "*/*"]), st.booleans())
def test_any_valid_image_gets_an_answer(image, items, accept, raw_body):
    data, fmt = image
    fakes = fresh(items)
    content_type = f"image/{fmt.lower()}"
    body = data if raw_body else {"image": base64.b64encode(data).decode()}
    answer = call(api_event("POST", "/detections", body=body, content_type=content_type if raw_body else None, accept=accept))
    assert answer.status == 200, answer.raw
    if answer.content_type == "application/json":
        garments = answer.json["garments"]
        assert len(garments) == len(fakes.rekognition.response["CustomLabels"])
        size = answer.json["image"]
        for g in garments:
            if g["pixels"]:
                p = g["pixels"]
                assert 0 <= p["left"] <= p["left"] + p["width"] <= size["width"]
                assert 0 <= p["top"] <= p["top"] + p["height"] <= size["height"]
    else:
        assert Image.open(io.BytesIO(answer.bytes)).size == Image.open(io.BytesIO(data)).size


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(), st.data(), st.sampled_from([None, "image/png"]))
def test_damaged_images_get_a_documented_error(image, data, accept):
    original, _ = image
    damaged = bytearray(original)
    cut = data.draw(st.integers(0, len(damaged)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(len(damaged) - 1, 0)), st.integers(0, 255)), max_size=8), label="flips")
    for position, value in flips:
        if position < len(damaged):
            damaged[position] = value
    body = bytes(damaged[: max(cut, 1)])
    fresh([("trousers", 90.0, (0.1, 0.1, 0.5, 0.5))])
    assert_documented(call(api_event("POST", "/detections", body=body, content_type="image/jpeg", accept=accept)))
