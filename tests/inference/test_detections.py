"""fashion_pipeline.detections: ratio boxes to pixels, filtering, the answer's shape."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fashion_pipeline.detections import (
    Garment,
    PixelBox,
    RatioBox,
    caption,
    check_options,
    drawable,
    garments_from_response,
    pixel_box,
    select,
    shape_answer,
)
from fashion_pipeline.images import ImageInfo

from .conftest import labels


@pytest.mark.parametrize(
    "box, size, expected",
    [
        ((0.25, 0.5, 0.5, 0.45), (640, 480), (160, 240, 320, 216)),
        ((0.0, 0.0, 1.0, 1.0), (640, 480), (0, 0, 640, 480)),
        # rounding: edges to the nearest pixel boundary, halves up (not banker's rounding)
        ((0.5 / 100, 1.5 / 100, 2.5 / 100, 2.5 / 100), (100, 100), (1, 2, 2, 2)),  # edges 0.5->1, 3; 1.5->2, 4
        ((0.1234, 0.5678, 0.2, 0.1), (1155, 866), (143, 492, 231, 86)),
        # clamped to the image
        ((-0.1, -0.2, 0.5, 0.5), (100, 100), (0, 0, 40, 30)),
        ((0.8, 0.9, 0.5, 0.5), (100, 100), (80, 90, 20, 10)),
        ((-0.5, 0.2, 2.0, 0.1), (200, 100), (0, 20, 200, 10)),
        # a non-empty sliver is at least a pixel, even at or past the edge
        ((0.5, 0.5, 0.001, 0.001), (100, 100), (50, 50, 1, 1)),
        ((1.0, 1.0, 0.01, 0.01), (100, 100), (99, 99, 1, 1)),
        ((1.5, -0.5, 0.1, 0.1), (100, 100), (99, 0, 1, 1)),
        # an empty box stays empty
        ((0.5, 0.5, 0.0, 0.2), (100, 100), (50, 50, 0, 20)),
        ((0.5, 0.5, -0.1, -0.1), (100, 100), (50, 50, 0, 0)),
    ],
)
def test_pixel_box(box, size, expected):
    assert pixel_box(RatioBox(*box), *size) == PixelBox(*expected)


def test_pixel_box_needs_a_real_image():
    with pytest.raises(ValueError):
        pixel_box(RatioBox(0, 0, 1, 1), 0, 10)


ratios = st.floats(min_value=-2, max_value=3, allow_nan=False)


@given(st.tuples(ratios, ratios, ratios, ratios), st.integers(1, 5000), st.integers(1, 5000))
def test_pixel_box_is_always_inside_the_image(box, width, height):
    ratio = RatioBox(*box)
    pixels = pixel_box(ratio, width, height)
    assert 0 <= pixels.left <= width and 0 <= pixels.top <= height
    assert pixels.right <= width and pixels.bottom <= height
    assert pixels.width >= 0 and pixels.height >= 0
    if ratio.width > 0:
        assert pixels.width >= 1
    if ratio.height > 0:
        assert pixels.height >= 1
    # Inside the image, an edge is off by at most half a pixel.
    if 0 <= ratio.left and ratio.left + ratio.width <= 1 and ratio.width * width >= 1:
        assert abs(pixels.left - ratio.left * width) <= 0.5
        assert abs(pixels.right - (ratio.left + ratio.width) * width) <= 0.5


def test_garments_from_a_response_in_its_order():
    response = labels(("skirt", 60.0, (0.1, 0.2, 0.3, 0.4)), ("dress", 70.0, None))
    skirt, dress = garments_from_response(response, 200, 100)
    assert skirt == Garment("skirt", 60.0, RatioBox(0.1, 0.2, 0.3, 0.4), PixelBox(20, 20, 60, 40))
    assert dress == Garment("dress", 70.0, None, None)
    assert drawable([skirt, dress]) == [skirt]
    assert garments_from_response({}, 10, 10) == []


def test_garments_tolerate_odd_numbers():
    response = {"CustomLabels": [{"Name": "x", "Confidence": "nan", "Geometry": {"BoundingBox": {"Left": None, "Top": "0.5", "Width": math.inf, "Height": 0.5}}}]}
    [garment] = garments_from_response(response, 100, 100)
    assert garment.confidence == 0.0
    assert garment.box == RatioBox(0.0, 0.5, 0.0, 0.5)
    assert garment.pixels == PixelBox(0, 50, 0, 50)


def g(label, confidence):
    return Garment(label, confidence, None, None)


def test_select_sorts_filters_and_limits():
    garments = [g("b", 50.0), g("a", 50.0), g("c", 90.0), g("d", 10.0)]
    assert [x.label for x in select(garments)] == ["c", "a", "b", "d"]
    assert [x.label for x in select(garments, min_confidence=50)] == ["c", "a", "b"]  # at the threshold is in
    assert [x.label for x in select(garments, min_confidence=50.01)] == ["c"]
    assert [x.label for x in select(garments, max_results=2)] == ["c", "a"]
    assert [x.label for x in select(garments, 20, 10)] == ["c", "a", "b"]
    assert select([], 0, 1) == []


def test_select_keeps_the_models_order_for_full_ties():
    first = Garment("a", 50.0, RatioBox(0, 0, 0.1, 0.1), None)
    second = Garment("a", 50.0, RatioBox(0.5, 0.5, 0.1, 0.1), None)
    assert select([first, second]) == [first, second]


@pytest.mark.parametrize("min_confidence, max_results", [(-0.1, None), (100.1, None), (None, 0), (None, 101)])
def test_check_options_refuses_out_of_range(min_confidence, max_results):
    with pytest.raises(ValueError):
        check_options(min_confidence, max_results)
    check_options(0, 1)
    check_options(100, 100)
    check_options(None, None)


def test_shape_answer():
    response = labels(("trousers", 91.23456, (0.25, 0.5, 0.5, 0.45)), ("skirt", 40.0, (0, 0, 0.1, 0.1)))
    answer, garments = shape_answer(response, ImageInfo("jpeg", 640, 480, 3), min_confidence=50, model={"version": "v1"})
    assert answer == {
        "model": {"version": "v1"},
        "image": {"width": 640, "height": 480, "format": "jpeg"},
        "garments": [{
            "label": "trousers", "confidence": 91.235,
            "box": {"left": 0.25, "top": 0.5, "width": 0.5, "height": 0.45},
            "pixels": {"left": 160, "top": 240, "width": 320, "height": 216},
        }],
    }  # fmt: skip
    assert [x.label for x in garments] == ["trousers"]
    assert "model" not in shape_answer(response, ImageInfo("png", 10, 10, 3))[0]


def test_caption_floors_the_confidence():
    assert caption(g("trousers", 99.96)) == "trousers 99%"
    assert caption(g("vest", 100.0)) == "vest 100%"
    assert caption(g("skirt", 50.5)) == "skirt 50%"
