"""Rekognition Custom Labels quotas and manifest validation rules, enforced at conversion."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from fashion_pipeline_tools.cli import EXIT_REFUSED, main
from fashion_pipeline.images import ImageInfo
from fashion_pipeline.labels import MAX_LABEL_CHARS, LabelCatalogue, LabelMappingError
from fashion_pipeline.manifest import MAX_LABELS_PER_MANIFEST, manifest_problems
from fashion_pipeline.records import ImageAnnotation, SourceBox, build_record

URI = "s3://dataset-bucket/images/demo/"


def convert(annotations, images, out, *extra):
    return main(["convert", str(annotations), "--images", str(images), "--image-uri", URI, "--out", str(out), *extra])


def coco_file(path, images, boxes_per_image, names):
    """A COCO file with ``boxes_per_image`` boxes on each image, one category per box, in turn."""
    categories = [{"id": i, "name": name} for i, name in enumerate(names)]
    annotations = [
        {"id": n, "image_id": image, "category_id": (image * boxes_per_image + k) % len(names), "bbox": [10 + k, 10, 50, 50]}
        for image in range(len(images))
        for k, n in enumerate(range(image * boxes_per_image, (image + 1) * boxes_per_image))
    ]
    path.write_text(json.dumps({"images": [{"id": i, "file_name": name} for i, name in enumerate(images)], "annotations": annotations, "categories": categories}))
    return path


def summary(train_images=100, test_images=25, train_labels=("skirt", "vest"), test_labels=("skirt",), requested=0.2):
    side = lambda images, labels: {"images": images, "boxes": {label: 1 for label in labels}, "bytes": 1000 * images}
    return {"train": side(train_images, train_labels), "test": side(test_images, test_labels), "test_fraction": {"requested": requested}}


def test_more_than_250_labels_in_a_manifest_is_a_problem_and_exit_3(sample_set, tmp_path, capsys):
    names = [f"category {i:03d}" for i in range(300)]
    images = [f"{i:06d}.jpg" for i in range(1, 37) if i % 4][:12]  # 12 JPEGs of the sample, 25 boxes each
    annotations = coco_file(tmp_path / "coco.json", images, 25, names)
    assert convert(annotations, sample_set.images, tmp_path / "out", "--test-fraction", "0") == EXIT_REFUSED
    terminal = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    problems = report["summary"]["problems"]
    assert problems == [f"the train manifest has 300 labels; Rekognition accepts at most {MAX_LABELS_PER_MANIFEST} per manifest (merge or exclude some with a label mapping)"]
    assert len((tmp_path / "out" / "train.manifest").read_text().splitlines()) == 12  # written all the same
    # The table ends with the warning block, each problem on its line.
    assert terminal.rstrip().endswith("WARNING: Rekognition Custom Labels would refuse these manifests:\n  ! " + problems[0])
    assert convert(annotations, sample_set.images, tmp_path / "json", "--test-fraction", "0", "--json") == EXIT_REFUSED
    assert json.loads(capsys.readouterr().out)["problems"] == problems


def test_250_labels_are_accepted(sample_set, tmp_path):
    names = [f"category {i:03d}" for i in range(MAX_LABELS_PER_MANIFEST)]
    images = [f"{i:06d}.jpg" for i in range(1, 37) if i % 4][:10]
    assert convert(coco_file(tmp_path / "coco.json", images, 25, names), sample_set.images, tmp_path / "out", "--test-fraction", "0") == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["summary"]["problems"] == []


def test_a_label_name_over_256_characters_is_refused_by_name(sample_set, tmp_path, capsys):
    long = "x" * (MAX_LABEL_CHARS + 1)
    with pytest.raises(LabelMappingError, match=f"label '{long}' is 257 characters long; Rekognition accepts label names of at most 256"):
        LabelCatalogue(mapping={"skirt": long})
    assert LabelCatalogue(mapping={"skirt": "x" * MAX_LABEL_CHARS}).class_id("x" * MAX_LABEL_CHARS) >= 0
    # A COCO category name is a label too: convert stops before writing anything, naming it.
    annotations = coco_file(tmp_path / "coco.json", ["000001.jpg"], 1, [long])
    assert convert(annotations, sample_set.images, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert f"{annotations}: label '{long}' is 257 characters long" in error
    assert not (tmp_path / "out" / "train.manifest").exists()


def test_manifest_problems_name_overlong_labels():
    long = "y" * 300
    assert manifest_problems(summary(train_labels=("skirt", long), test_labels=(long,))) == [f"label names longer than 256 characters: ['{long}']"]


def annotated(*xyxys):
    return ImageAnnotation("a.json", ("a.png",), "7", [SourceBox(f"item{n + 1}", "skirt", 9, list(xyxy)) for n, xyxy in enumerate(xyxys)])


@pytest.mark.parametrize(
    "size,kept,dropped",
    [
        ((3840, 400), [0, 0, 4, 100], [0, 0, 3, 100]),  # scaled by 1/3: 3 px become exactly 1 px, which is not enough
        ((3839, 400), [0, 0, 3, 100], [0, 0, 2, 100]),  # just under 1/3: 3 px stay just above 1 px (1.0003)
        ((400, 4096), [0, 0, 100, 4], [0, 0, 100, 3]),  # the height too, on the longer side's scale
        ((2560, 2560), [0, 0, 3, 3], [0, 0, 2, 100]),
    ],
)
def test_boxes_too_small_once_training_resizes_the_image_are_dropped(size, kept, dropped):
    record, rejections = build_record(annotated(kept, dropped), "s3://b/p/a.png", ImageInfo("png", *size, 3), 1000, "2024-01-01T00:00:00")
    assert [(b.left, b.top, b.left + b.width, b.top + b.height) for b in record.boxes] == [tuple(kept)]
    assert [(r.item, r.reason) for r in rejections] == [("item2", "box_too_small_after_resize")]
    assert "once training scales the" in rejections[0].detail and "to 1280 px on its longer side" in rejections[0].detail


def test_images_up_to_2559_px_keep_two_pixel_boxes():
    """Below 2 x 1280 px a 2 px side stays above 1 px: the resize drops nothing clip_box keeps."""
    for size in ((1280, 1280), (2559, 200)):
        record, rejections = build_record(annotated([0, 0, 2, 2]), "s3://b/p/a.png", ImageInfo("png", *size, 3), 1000, "2024-01-01T00:00:00")
        assert len(record.boxes) == 1 and not rejections


def test_the_resize_rule_is_in_the_report(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (3840, 400), (200, 200, 200)).save(images / "wide.png")
    coco = {
        "images": [{"id": 1, "file_name": "wide.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 3, 300]}, {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 10, 4, 300]}],
        "categories": [{"id": 1, "name": "garment"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    # One label is enough for an object-detection dataset (MIN_LABELS), and no test set was asked for.
    assert convert(tmp_path / "coco.json", images, tmp_path / "out", "--test-fraction", "0") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [(r["item"], r["reason"]) for r in report["rejected"]] == [("annotation 1", "box_too_small_after_resize")]
    assert report["summary"]["rejections"]["by_reason"] == {"box_too_small_after_resize": 1}
    line = json.loads((tmp_path / "out" / "train.manifest").read_text())
    assert line["bounding-box"]["annotations"] == [{"class_id": 0, "top": 10, "left": 20, "width": 4, "height": 300}]


@pytest.mark.parametrize("region", ["eu-west-2", "ap-south-1"])
def test_london_and_mumbai_take_28000_training_and_7000_test_images(region):
    assert manifest_problems(summary(train_images=28_000, test_images=7_000), region=region) == []
    assert manifest_problems(summary(train_images=28_001), region=region) == [f"the train manifest has 28001 images; Rekognition accepts at most 28000 in {region}"]
    assert manifest_problems(summary(test_images=7_001), region=region) == [f"the test manifest has 7001 images; Rekognition accepts at most 7000 in {region}"]


@pytest.mark.parametrize("region", [None, "us-east-1", "eu-west-1"])
def test_other_regions_take_250000_images(region):
    assert manifest_problems(summary(train_images=28_001, test_images=7_001), region=region) == []
    assert manifest_problems(summary(train_images=250_001), region=region) == ["the train manifest has 250001 lines; the limit is 250000"]


def test_one_label_is_enough_for_object_detection():
    """The quotas say 1 for detection (2 for classification); the validation rules' >= 2 counts
    the background label training adds (see MIN_LABELS)."""
    assert manifest_problems(summary(train_labels=("garment",), test_labels=("garment",))) == []
    assert manifest_problems(summary(train_images=0, train_labels=(), test_labels=())) == [
        "the training manifest is empty: no image passed the rules (see the report)"
    ]


def test_an_empty_test_manifest_is_a_problem_only_when_a_test_set_was_asked_for():
    assert manifest_problems(summary(test_images=0, test_labels=()), region="eu-west-2") == [
        "the test manifest is empty: add images (more pair ids) or raise the test fraction"
    ]
    assert manifest_problems(summary(test_images=0, test_labels=(), requested=0.0)) == []


def test_assembly_puts_the_problems_in_summary_json_and_report_json(monkeypatch):
    import boto3
    from moto import mock_aws

    from fashion_pipeline.records import Box, Record
    from workflow.assembly import assemble_in_process

    monkeypatch.setattr("fashion_pipeline.manifest.checks.MAX_IMAGES_BY_REGION", {None: (250_000, 250_000), "eu-west-2": (1, 1)})
    records = [Record("a.json", f"s3://data/images/demo/{i}.jpg", 640, 480, 3, str(i), (Box("skirt", 1, 2, 30, 40),), "2024-01-01") for i in range(10)]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("data", "artifacts"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="artifacts", Key="fragments/demo/a.jsonl", Body="\n".join(json.dumps(r.to_dict()) for r in records).encode())
        options = dict(dataset="demo", dataset_bucket="data", artifacts_bucket="artifacts", prefix="runs/demo/1/", catalogue=LabelCatalogue(), test_fraction=0.2, seed=0, job_name="job")
        result = assemble_in_process(s3, **options, region="eu-west-2")
        read = lambda name: json.loads(s3.get_object(Bucket="artifacts", Key=f"runs/demo/1/{name}")["Body"].read())
        assert result["problems"] == [
            "the train manifest has 8 images; Rekognition accepts at most 1 in eu-west-2",
            "the test manifest has 2 images; Rekognition accepts at most 1 in eu-west-2",
        ]
        assert read("summary.json")["problems"] == read("report.json")["summary"]["problems"] == result["problems"]
        assert assemble_in_process(s3, **options)["problems"] == read("summary.json")["problems"] == []
