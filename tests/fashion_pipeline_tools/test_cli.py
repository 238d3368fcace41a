import json
import zipfile
from pathlib import Path

import pytest

from fashion_pipeline_tools.cli import main
from fashion_pipeline_tools.sample import to_coco

URI = "s3://dataset-bucket/images/demo/"


def convert(annotations, images, out, *extra):
    code = main(["convert", str(annotations), "--images", str(images), "--image-uri", URI, "--out", str(out), *extra])
    assert code == 0
    report = json.loads((Path(out) / "report.json").read_text())
    lines = {
        side: [json.loads(x) for x in (Path(out) / f"{side}.manifest").read_text().splitlines()]
        for side in ("train", "test")
    }
    return lines, report


def image_names(lines):
    return {line["source-ref"].rsplit("/", 1)[1] for side in lines.values() for line in side}


def test_nothing_is_lost(sample_set, tmp_path):
    lines, report = convert(sample_set.annotations, sample_set.images, tmp_path)
    image_level = [r for r in report["rejected"] if r["level"] == "image"]
    written = image_names(lines)
    # Every input file is in exactly one place: a manifest line or an image-level rejection.
    stems_out = {name.rsplit(".", 1)[0] for name in written}
    sources_rejected = [r["source"] for r in image_level]
    assert len(sources_rejected) == len(set(sources_rejected))
    assert {s.rsplit(".", 1)[0] for s in sources_rejected}.isdisjoint(stems_out)
    assert len(written) + len(image_level) == len(sample_set.files) == report["summary"]["annotations_in"]
    # Each planted defect is reported with its reason, naming its file.
    for name, reason in sample_set.defects.items():
        assert any(r["source"] == name and r["reason"] == reason for r in report["rejected"]), (name, reason)
    # The box dropped from a surviving image is reported too.
    assert any(r["level"] == "box" and r["reason"] == "box_too_small" for r in report["rejected"])
    assert "000047.jpg" in written


def test_clipping_and_consolidation_on_real_files(sample_set, tmp_path):
    lines, _ = convert(sample_set.annotations, sample_set.images, tmp_path)
    by_image = {line["source-ref"].rsplit("/", 1)[1]: line for side in lines.values() for line in side}
    clipped = by_image["000047.jpg"]["bounding-box"]
    assert clipped["annotations"][0] | {"class_id": 0} == {"class_id": 0, "left": 300, "top": 300, "width": 100, "height": 100}
    labels = {name for line in by_image.values() for name in line["bounding-box-metadata"]["class-map"].values()}
    assert len(labels) == 11 and "sling" not in labels and "sling_dress" not in labels
    for name, line in by_image.items():
        ann = json.loads((sample_set.annotations / (name.rsplit(".", 1)[0] + ".json")).read_text())
        size = line["bounding-box"]["image_size"][0]
        boxes = [ann[k]["bounding_box"] for k in sorted(ann, key=lambda k: int(k[4:]) if k.startswith("item") else 0) if k.startswith("item")]
        if name != "000047.jpg":
            got = [[a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]] for a in line["bounding-box"]["annotations"]]
            assert got == boxes
        assert line["source-ref"] == URI + name
        assert 64 <= size["width"] <= 4096


def test_pairs_never_straddle_the_split(sample_set, tmp_path):
    lines, report = convert(sample_set.annotations, sample_set.images, tmp_path)
    pair = lambda line: json.loads((sample_set.annotations / (line["source-ref"].rsplit("/", 1)[1].rsplit(".", 1)[0] + ".json")).read_text())["pair_id"]
    assert {pair(l) for l in lines["train"]}.isdisjoint({pair(l) for l in lines["test"]})
    assert lines["test"], "the sample is big enough for a test set"
    assert set(report["summary"]["test"]["boxes"]) <= set(report["summary"]["train"]["boxes"])


def test_two_runs_are_byte_identical(sample_set, tmp_path):
    convert(sample_set.annotations, sample_set.images, tmp_path / "a")
    convert(sample_set.annotations, sample_set.images, tmp_path / "b")
    for name in ("train.manifest", "test.manifest"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_zip_input_gives_the_same_lines(sample_set, tmp_path):
    folder_lines, _ = convert(sample_set.annotations, sample_set.images, tmp_path / "folder")
    archive = tmp_path / "annos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in reversed(sample_set.files):  # archive order must not matter
            zf.write(sample_set.annotations / name, f"annos/{name}")
    zip_lines, report = convert(archive, sample_set.images, tmp_path / "zip")
    strip = lambda lines: [{k: v for k, v in l.items() if k != "bounding-box-metadata"} for l in lines]
    assert strip(zip_lines["train"]) == strip(folder_lines["train"])
    assert strip(zip_lines["test"]) == strip(folder_lines["test"])
    assert any(r["source"] == "annos.zip/annos/000041.json" and r["reason"] == "invalid_json" for r in report["rejected"])


def test_coco_input_gives_the_same_boxes(sample_set, tmp_path):
    folder_lines, _ = convert(sample_set.annotations, sample_set.images, tmp_path / "folder")
    coco = to_coco(sample_set)
    assert coco["images"][0]["date_captured"] == "" and len(coco["annotations"][0]["keypoints"]) == 294 * 3
    coco["images"].reverse()  # file order must not matter
    path = tmp_path / "deepfashion2_coco.json"
    path.write_text(json.dumps(coco))
    coco_lines, report = convert(path, sample_set.images, tmp_path / "coco")
    boxes = lambda lines: sorted((l["source-ref"], json.dumps(l["bounding-box"])) for side in lines.values() for l in side)
    assert boxes(coco_lines) == boxes(folder_lines)
    assert report["summary"]["input"]["kind"] == "coco"


def test_generic_coco_dataset_uses_its_own_categories(tmp_path, sample_set):
    coco = {
        "images": [{"id": 1, "file_name": "000001.jpg"}, {"id": 2, "file_name": "000002.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 50, 50]},
            {"id": 2, "image_id": 2, "category_id": 4, "bbox": [10, 10, 50, 50]},
            {"id": 3, "image_id": 99, "category_id": 4, "bbox": [10, 10, 50, 50]},
        ],
        "categories": [{"id": 3, "name": "hat"}, {"id": 4, "name": "shoe"}],
    }
    path = tmp_path / "generic.json"
    path.write_text(json.dumps(coco))
    lines, report = convert(path, sample_set.images, tmp_path / "out", "--test-fraction", "0")
    assert report["summary"]["class_map"] == {"0": "hat", "1": "shoe"}
    assert len(lines["train"]) == 2
    assert [r["reason"] for r in report["rejected"]] == ["orphan_annotation"]


def test_jsonl_input(tmp_path, sample_set):
    path = tmp_path / "batch.jsonl"
    records = []
    for name in sample_set.files[:5]:
        record = json.loads((sample_set.annotations / name).read_text())
        record["image"] = name[:-5]
        records.append(json.dumps(record))
    path.write_text("\n".join(records + ["{broken", '{"pair_id": 1}']) + "\n")
    lines, report = convert(path, sample_set.images, tmp_path / "out", "--test-fraction", "0")
    assert len(lines["train"]) == 5
    assert sorted(r["reason"] for r in report["rejected"]) == ["invalid_json", "not_an_annotation"]
    assert report["rejected"][0]["source"].startswith("batch.jsonl#line")


def test_label_mapping_file(sample_set, tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text("{}")  # identity: keep all thirteen
    _, report = convert(sample_set.annotations, sample_set.images, tmp_path / "out", "--labels", str(labels))
    assert len(report["summary"]["class_map"]) == 13


@pytest.mark.parametrize(
    "args,message",
    [
        (["convert", "/no/such/dir", "--images", ".", "--image-uri", URI, "--out", "x"], "no such file or folder"),
        (["convert", "{annos}", "--images", "/no/such", "--image-uri", URI, "--out", "{out}"], "images folder not found"),
        (["convert", "{annos}", "--images", "{images}", "--image-uri", "https://x/", "--out", "{out}"], "expected s3://"),
        (["convert", "{annos}", "--images", "{images}", "--image-uri", URI, "--out", "{out}", "--labels", "{bad}"], "unknown categories"),
    ],
)
def test_bad_arguments_name_the_problem(args, message, sample_set, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"sandals": "shoes"}')
    filled = [a.format(annos=sample_set.annotations, images=sample_set.images, out=tmp_path / "o", bad=bad) for a in args]
    assert main(filled) == 2
    assert message in capsys.readouterr().err


def test_bad_test_fraction_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "a", "--images", "b", "--image-uri", URI, "--out", "c", "--test-fraction", "1.5"])
    assert "must be a number from 0.01 to 0.5 (or 0 for no test manifest), got 1.5" in capsys.readouterr().err


def test_train_refuses_a_dataset_name_with_the_workflows_rule(capsys):
    # Before any AWS call: no stack, region or credentials are needed to be told so.
    assert main(["train", "--dataset", "My Data"]) == 2
    error = capsys.readouterr().err
    assert "fashion-pipeline: error: --dataset: dataset name 'My Data' must be 1-64 letters, digits" in error
    assert "Traceback" not in error


# -- --test-fraction: one rule for convert and train (fashion_pipeline.training) -------------
@pytest.mark.parametrize("fraction", ["0.005", "0.51", "1", "-0.1", "nan", "a fifth"])
def test_convert_refuses_a_test_fraction_train_would_refuse(fraction, sample_set, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["convert", str(sample_set.annotations), "--images", str(sample_set.images), "--image-uri", URI,
              "--out", str(tmp_path / "out"), "--test-fraction", fraction])
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("fashion-pipeline convert: error: argument --test-fraction:")
    assert ("from 0.01 to 0.5 (or 0 for no test manifest)" in error) or "is not a number" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fraction", ["0.005", "0.51", "0"])
def test_train_refuses_the_same_fractions_and_zero(fraction, capsys):
    code = main(["train", "--dataset", "demo", "--test-fraction", fraction])
    assert code == 2
    assert "option test_fraction must be a number from 0.01 to 0.5" in capsys.readouterr().err


@pytest.mark.parametrize("fraction", ["0.01", "0.5"])
def test_the_bounds_are_accepted_by_convert(fraction, sample_set, tmp_path, capsys):
    code = main(["convert", str(sample_set.annotations), "--images", str(sample_set.images), "--image-uri", URI,
                 "--out", str(tmp_path / "out"), "--test-fraction", fraction])
    # 1% of the small sample is no image: exit 3, a test manifest Rekognition would refuse, not a usage error.
    assert code == (3 if fraction == "0.01" else 0)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["test_fraction"]["requested"] == float(fraction)
    assert "warning: --test-fraction" not in capsys.readouterr().err


def test_convert_with_no_test_set_says_what_custom_labels_then_needs(sample_set, tmp_path, capsys):
    lines, report = convert(sample_set.annotations, sample_set.images, tmp_path / "out", "--test-fraction", "0")
    assert lines["test"] == [] and lines["train"]
    err = capsys.readouterr().err
    assert "warning: --test-fraction 0: the test manifest will be empty" in err
    assert "DistributeDatasetEntries" in err
    assert report["summary"]["problems"] == []  # asked for: not a refusal (see manifest_problems)


def test_train_and_convert_share_the_rule():
    from fashion_pipeline.training import OptionsError, TEST_FRACTION_MAX, TEST_FRACTION_MIN, TrainingOptions, test_fraction_problem

    assert TrainingOptions.parse({"test_fraction": TEST_FRACTION_MIN}).test_fraction == TEST_FRACTION_MIN
    assert TrainingOptions.parse({"test_fraction": TEST_FRACTION_MAX}).test_fraction == TEST_FRACTION_MAX
    for value in (0.0, TEST_FRACTION_MAX + 0.01):
        with pytest.raises(OptionsError):
            TrainingOptions.parse({"test_fraction": value})
    assert test_fraction_problem(0.0) is not None and test_fraction_problem(0.0, none_held_out=True) is None
    assert test_fraction_problem(0.6, none_held_out=True) is not None
