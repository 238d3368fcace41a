"""Nothing given to ``convert`` is lost: subfolders are walked, every file that is not an annotation
is reported, and odd values in annotations are reported with a reason, never a traceback."""

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashion_pipeline_tools.cli import main
from fashion_pipeline.deepfashion2 import iter_jsonl, parse_document
from fashion_pipeline.images import ImageInfo
from fashion_pipeline.records import AnnotationError, build_record

URI = "s3://dataset-bucket/images/demo/"


def convert(annotations, images, out, *extra):
    return main(["convert", str(annotations), "--images", str(images), "--image-uri", URI, "--out", str(out), "--jobs", "1", *extra])


def report(out):
    return json.loads((Path(out) / "report.json").read_text(encoding="utf-8"))


def lines(out):
    return sorted(line for side in ("train", "test") for line in (Path(out) / f"{side}.manifest").read_text().splitlines())


def test_a_folder_of_part_folders_converts_every_file(sample_set, tmp_path):
    parts, placed = tmp_path / "parts", {}
    for number, name in enumerate(sample_set.files):
        placed[name] = f"part{number % 3}/" + ("deeper/" if number % 5 == 0 else "") + name
        (parts / placed[name]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(sample_set.annotations / name, parts / placed[name])  # copy2: the same dates, so the same lines
    (parts / "part1" / "notes.md").write_text("not an annotation")
    assert convert(sample_set.annotations, sample_set.images, tmp_path / "flat") == 0
    assert convert(parts, sample_set.images, tmp_path / "parts-out") == 0
    assert lines(tmp_path / "parts-out") == lines(tmp_path / "flat")  # images found by base name, as the converter does
    got = report(tmp_path / "parts-out")
    assert {r["source"] for r in got["rejected"] if r["reason"] == "unsupported_file"} == {placed["README.txt"], "part1/notes.md"}
    for name, reason in sample_set.defects.items():  # each named by its path in the folder
        assert any(r["source"] == placed[name] and r["reason"] == reason for r in got["rejected"]), (name, reason)
    assert got["summary"]["annotations_in"] == len(sample_set.files) + 1


def test_links_to_folders_end_and_what_is_no_file_is_reported(sample_set, tmp_path):
    folder = tmp_path / "annos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy2(sample_set.annotations / "000001.json", folder / "sub" / "000001.json")
    os.symlink("..", folder / "sub" / "up")  # a cycle: listed once, then reported
    os.symlink("nowhere.json", folder / "broken.json")
    os.mkfifo(folder / "pipe.json")  # opening it would wait for a writer forever
    assert convert(folder, sample_set.images, tmp_path / "out", "--test-fraction", "0") == 0
    reasons = {r["source"]: (r["reason"], r["detail"]) for r in report(tmp_path / "out")["rejected"]}
    assert reasons["sub/up"] == ("unsupported_file", "a link to a folder that is listed already (not followed again)")
    assert reasons["pipe.json"][0] == reasons["broken.json"][0] == "unsupported_file"
    assert len(lines(tmp_path / "out")) == 1


def test_a_file_name_that_is_not_utf8_is_reported_and_the_report_written(sample_set, tmp_path):
    folder = tmp_path / "annos"
    folder.mkdir()
    shutil.copy2(sample_set.annotations / "000001.json", folder / "000001.json")
    with open(os.path.join(os.fsencode(folder), b"\xff\xfe.json"), "wb") as handle:
        handle.write((sample_set.annotations / "000002.json").read_bytes())
    assert convert(folder, sample_set.images, tmp_path / "out", "--test-fraction", "0") == 0
    (rejection,) = report(tmp_path / "out")["rejected"]
    assert (rejection["source"], rejection["reason"]) == ("\\udcff\\udcfe.json", "invalid_file_name")


@pytest.mark.parametrize("layout", ["empty", "no-json", "zip"])
def test_a_folder_or_archive_without_annotations_is_an_error(layout, sample_set, tmp_path, capsys):
    source = tmp_path / "annos"
    source.mkdir()
    if layout == "no-json":
        (source / "sub").mkdir()
        (source / "sub" / "README.txt").write_text("hello")
    if layout == "zip":
        source = tmp_path / "annos.zip"
        with zipfile.ZipFile(source, "w") as archive:
            archive.writestr("README.txt", "hello")
    assert convert(source, sample_set.images, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert f"fashion-pipeline: error: {source}: no .json annotation file in this" in error and "Traceback" not in error
    assert not (tmp_path / "out" / "report.json").exists()


def test_coco_names_are_normalised_end_to_end(sample_set, tmp_path):
    (sample_set.images.parent / "outside.jpg").write_bytes((sample_set.images / "000001.jpg").read_bytes())
    (tmp_path / "images").mkdir()
    for name in ("000001.jpg", "000002.jpg"):
        shutil.copy2(sample_set.images / name, tmp_path / "images" / name)
    (tmp_path / "images" / "folder.jpg").mkdir()
    document = {
        "images": [
            {"id": 1, "file_name": "./000001.jpg"}, {"id": 2, "file_name": "000001.jpg"}, {"id": 3, "file_name": "sub/../000002.jpg"},
            {"id": 4, "file_name": "../outside.jpg"}, {"id": 5, "file_name": str(sample_set.images / "000001.jpg")}, {"id": 6, "file_name": "folder.jpg"},
        ],
        "annotations": [{"id": n, "image_id": n, "category_id": 1, "bbox": [10, 10, 100, 100]} for n in range(1, 7)],
        "categories": [{"id": 1, "name": "garment"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(document))
    assert convert(tmp_path / "c.json", tmp_path / "images", tmp_path / "out", "--test-fraction", "0") == 0
    assert [json.loads(line)["source-ref"] for line in lines(tmp_path / "out")] == [URI + "000001.jpg", URI + "000002.jpg"]
    reasons = {r["source"].rsplit("#image", 1)[1]: r["reason"] for r in report(tmp_path / "out")["rejected"]}
    assert reasons == {"2": "duplicate_image", "4": "image_outside_images", "5": "image_outside_images", "6": "image_missing"}


def test_jsonl_image_names_follow_the_same_rule():
    records = [b'{"image": "./000001", "pair_id": 1}', b'{"image": "../000001.jpg", "pair_id": 1}', b'{"image": "a\\ud800", "pair_id": 1}']
    first, outside, surrogate = list(iter_jsonl(iter(records), source="b.jsonl"))
    assert first.image_candidates[0] == "000001.jpg"
    assert (outside.reason, outside.source) == ("image_outside_images", "b.jsonl#line2")
    assert surrogate.reason == "invalid_file_name"


# Odd JSON values where DeepFashion2's ids, names and numbers belong.
odd = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**64, max_value=2**70), st.floats(), st.text(max_size=3),
    st.sampled_from(["\ud800", "x\udcff", "\uffff"]), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
items = st.fixed_dictionaries({}, optional={"category_id": st.one_of(st.integers(1, 13), odd), "bounding_box": st.one_of(st.lists(st.one_of(st.integers(0, 500), odd), min_size=4, max_size=4), odd)})
deepfashion2 = st.one_of(
    st.dictionaries(st.sampled_from(["source", "pair_id", "item1", "item2", "item10", "item" + "9" * 30, "itemX", "image"]), st.one_of(items, odd), max_size=6),
    odd,
)


@settings(max_examples=200, deadline=None)
@given(document=deepfashion2)
def test_odd_deepfashion2_values_are_reported_never_raised(document):
    try:
        annotation = parse_document(document, source="a.json", image_candidates=("a.jpg",))
    except AnnotationError as exc:
        assert exc.reason in ("not_an_annotation", "invalid_pair_id")
        return
    record, rejections = build_record(annotation, URI + "a.jpg", ImageInfo("jpeg", 640, 480, 3), 1000, "2024-01-01T00:00:00")
    for rejection in rejections:
        json.dumps(rejection.to_dict(), ensure_ascii=False).encode()
    if record is not None:
        json.dumps(record.to_dict(), ensure_ascii=False).encode()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(documents=st.lists(deepfashion2, min_size=1, max_size=4), coco_file=st.booleans())
def test_convert_reports_odd_values_end_to_end(documents, coco_file, sample_set, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("odd")
    annotations = tmp / "annos"
    annotations.mkdir()
    for number, document in enumerate(documents, start=1):
        (annotations / f"{number:06d}.json").write_text(json.dumps(document))  # lone surrogates as "\ud800" escapes
    source = annotations
    if coco_file:  # the same odd values in a COCO file's places
        source = tmp / "c.json"
        values = [d if not isinstance(d, dict) else d.get("pair_id", d.get("item1")) for d in documents]
        coco = {
            "images": [{"id": v if n % 2 else n, "file_name": v if n % 3 == 0 else f"{n:06d}.jpg"} for n, v in enumerate(values, start=1)],
            "annotations": [{"id": v, "image_id": n, "category_id": v, "bbox": v if n % 2 else [1, 2, 30, 40], "pair_id": v} for n, v in enumerate(values, start=1)],
            "categories": [{"id": n, "name": v if isinstance(v, str) else "hat"} for n, v in enumerate(values, start=1)],
        }
        source.write_text(json.dumps(coco))
    code = convert(source, sample_set.images, tmp / "out", "--test-fraction", "0")
    assert code in (0, 3)  # 3: written, but Rekognition would refuse them (no labels at all, say)
    summary = report(tmp / "out")["summary"]  # valid UTF-8 JSON, every input counted in it
    assert summary["lines_out"] + summary["rejections"]["images"] >= 0
