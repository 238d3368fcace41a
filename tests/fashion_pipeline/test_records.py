import pytest

from fashion_pipeline.images import ImageInfo
from fashion_pipeline.records import AnnotationError, ImageAnnotation, SourceBox, build_record, clip_box


def test_xyxy_becomes_left_top_width_height():
    assert clip_box([10, 20, 110, 70], 640, 480) == (10, 20, 100, 50)


def test_partly_outside_box_is_clipped():
    assert clip_box([-15, 400, 200, 600], 640, 480) == (0, 400, 200, 80)


@pytest.mark.parametrize(
    "box,reason",
    [
        ([10, 10, 11, 200], "box_too_small"),  # 1 px wide
        ([10, 10, 200, 10], "box_too_small"),  # 0 px high
        ([639, 10, 700, 200], "box_too_small"),  # 1 px wide once clipped
        ([700, 10, 800, 200], "box_outside_image"),
        ([-50, -50, -1, -1], "box_outside_image"),
        ([50, 10, 20, 200], "box_invalid"),
        ([1, 2, 3], "box_invalid"),
        (["1", 2, 3, 4], "box_invalid"),
        (None, "box_invalid"),
        ([0, 0, float("nan"), 4], "box_invalid"),
    ],
)
def test_unusable_boxes(box, reason):
    with pytest.raises(AnnotationError) as caught:
        clip_box(box, 640, 480)
    assert caught.value.reason == reason


def test_two_px_box_is_kept():
    assert clip_box([10, 10, 12, 12], 640, 480) == (10, 10, 2, 2)


def test_build_record_reports_each_dropped_box_and_keeps_the_rest():
    annotation = ImageAnnotation(
        "a.json",
        ("a.jpg",),
        "7",
        [
            SourceBox("item1", "skirt", 9, [0, 0, 100, 100]),
            SourceBox("item2", None, 42, [0, 0, 100, 100]),
            SourceBox("item3", "vest", 5, [5, 5, 6, 90]),
        ],
    )
    record, rejections = build_record(annotation, "s3://b/p/a.jpg", ImageInfo("jpeg", 200, 200, 3), 1000, "2024-01-01T00:00:00")
    assert [b.category for b in record.boxes] == ["skirt"]
    assert [(r.item, r.reason) for r in rejections] == [("item2", "unknown_category"), ("item3", "box_too_small")]
    assert all(r.source == "a.json" and r.image == "a.jpg" for r in rejections)


def test_record_round_trips_through_a_fragment():
    annotation = ImageAnnotation("a.json", ("a.jpg",), "7", [SourceBox("item1", "skirt", 9, [0, 0, 100, 100])])
    record, _ = build_record(annotation, "s3://b/p/a.jpg", ImageInfo("jpeg", 200, 200, 3), 1000, "2024-01-01T00:00:00")
    from fashion_pipeline.records import Record

    assert Record.from_dict(record.to_dict()) == record
