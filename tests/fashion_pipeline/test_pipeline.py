"""The local conversion's fast paths give the same bytes as the plain ways they replace."""

import json
import math
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashion_pipeline_tools.cli import main
from fashion_pipeline import deepfashion2
from fashion_pipeline.deepfashion2 import parse_file
from fashion_pipeline.labels import MAX_LABEL_CHARS, LabelCatalogue
from fashion_pipeline.manifest import ManifestAssembler, ManifestLines
from fashion_pipeline.manifest.lines import check_attribute
from fashion_pipeline.pipeline import convert_into
from fashion_pipeline.records import MIN_BOX_SIDE, AnnotationError, Box, Record, clip_box
from fashion_pipeline.sources import LocalImages, open_source

URI = "s3://dataset-bucket/images/demo/"


def reference_line(record, labelled, catalogue, attribute, job_name):
    """The line as json.dumps writes it: the definition ManifestLines.line must match."""
    class_ids = [catalogue.class_id(label) for label, _ in labelled]
    return json.dumps(
        {
            "source-ref": record.image_uri,
            attribute: {
                "image_size": [{"width": record.width, "height": record.height, "depth": record.depth}],
                "annotations": [
                    {"class_id": cid, "top": box.top, "left": box.left, "width": box.width, "height": box.height}
                    for cid, (_, box) in zip(class_ids, labelled)
                ],
            },
            f"{attribute}-metadata": {
                "objects": [{"confidence": 1} for _ in labelled],
                "class-map": {str(cid): label for cid, label in sorted({c: l for c, (l, _) in zip(class_ids, labelled)}.items())},
                "type": "groundtruth/object-detection",
                "human-annotated": "yes",
                "creation-date": record.created,
                "job-name": job_name,
            },
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


TRICKY = ['s3://b/p/a"b\\c.jpg', "s3://b/ünï/名前 😀.png", "s3://b/\t\n\x00\x1f\x7f.jpg", "s3://b/\u2028\u2029/{x}.jpg", "s3://b/\ud800.jpg"]
text = st.one_of(st.sampled_from(TRICKY), st.text())
number = st.integers(min_value=0, max_value=10**12)
attribute_text = st.from_regex(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}", fullmatch=True).filter(
    lambda a: a != "source-ref" and not a.endswith("-metadata")
)


@settings(max_examples=300, deadline=None)
@given(
    uri=text, created=text, attribute=st.one_of(st.sampled_from(["bounding-box", "a", "x--y"]), attribute_text), job_name=text,
    labels=st.lists(st.text(min_size=1, max_size=MAX_LABEL_CHARS).filter(str.strip), min_size=1, max_size=3, unique=True),
    size=st.tuples(number, number, number),
    boxes=st.lists(st.tuples(st.integers(0, 3), number, number, number, number), max_size=6),
)
def test_line_is_json_dumps_of_the_structure(uri, created, attribute, job_name, labels, size, boxes):
    mapping = {"sling": labels[0], "vest": labels[-1], "skirt": labels[len(labels) // 2]}
    catalogue = LabelCatalogue(mapping=mapping)
    record = Record("a.json", uri, *size, "1", (), created)
    names = [labels[0], labels[-1], labels[len(labels) // 2], "shorts"]
    labelled = [(names[i], Box("x", l, t, w, h)) for i, l, t, w, h in boxes]
    fast = ManifestLines(catalogue, attribute=attribute, job_name=job_name).line(record, labelled)
    assert fast == reference_line(record, labelled, catalogue, attribute, job_name)


@pytest.mark.parametrize("attribute", ["source-ref", "bounding-box-metadata", "", "-box", "box-", "a b", "é", "a" * 128])
def test_an_attribute_that_would_clash_or_that_ground_truth_refuses_is_refused(attribute):
    with pytest.raises(ValueError, match="label attribute"):
        ManifestLines(LabelCatalogue(mapping={"sling": "sling"}), attribute=attribute)


@given(attribute=attribute_text)
def test_every_ground_truth_attribute_that_clashes_with_nothing_is_taken(attribute):
    assert check_attribute(attribute) == attribute


def reference_clip(xyxy, width, height):
    """clip_box before its fast path."""

    def number(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError
        return float(value)

    try:
        if not isinstance(xyxy, (list, tuple)) or len(xyxy) != 4:
            raise ValueError
        x1, y1, x2, y2 = (number(v) for v in xyxy)
    except ValueError:
        return "box_invalid"
    if x2 < x1 or y2 < y1:
        return "box_invalid"
    left, top = round(max(0.0, min(x1, width))), round(max(0.0, min(y1, height)))
    right, bottom = round(max(0.0, min(x2, width))), round(max(0.0, min(y2, height)))
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return "box_outside_image"
    if right - left <= MIN_BOX_SIDE or bottom - top <= MIN_BOX_SIDE:
        return "box_too_small"
    return left, top, right - left, bottom - top


coordinate = st.one_of(
    st.integers(-20, 700), st.floats(-20, 700), st.sampled_from([0, -0.0, 0.5, 1.5, 2.5, 640, 639.5, 640.5, True, None, "1", math.nan, math.inf])
)


@settings(max_examples=2000, deadline=None)
@given(xyxy=st.one_of(st.lists(coordinate, min_size=3, max_size=5), st.tuples(coordinate, coordinate, coordinate, coordinate)), width=st.sampled_from([640, 64, 1, 0]), height=st.sampled_from([480, 64, 2]))
def test_clip_box_matches_the_plain_version(xyxy, width, height):
    try:
        got = clip_box(xyxy, width, height)
        assert all(type(v) is int for v in got)
    except AnnotationError as exc:
        got = exc.reason
    assert got == reference_clip(xyxy, width, height)


def parsed(data):
    try:
        return repr(parse_file(data, source="a.json", stem="a"))
    except AnnotationError as exc:  # the report quotes the message: it must be json's
        return exc.reason, exc.detail


ODD_VALUES = [
    b"01", b"1.", b".5", b"-", b"+1", b"1e", b"0x1", b"tru", b"NaN", b"-Infinity", b"1e400", b"-0.0", b"123456789012345678901234567890",
    b"[1,]", b"[,1]", b'{"a":1,}', b'{"a"}', b'{1:2}', b'"\\x"', b'"\\u12"', b'"\xff"', b'"a\tb"', b'"\\ud800"', b'"\xed\xa0\x80"',
    b"[1 2]", b"[" * 300 + b"]" * 300, b"'a'", b"[1]]", b'{"category_id": 3, "bounding_box": [1, 2, 30, 40]}', b'{"a": {"b": 1}}',
]
ODD_PLACES = [
    b'{"pair_id": 1, "item1": {"category_id": 1, "bounding_box": [1, 2, 30, 40], "landmarks": %s}}',
    b'{"item1": {"segmentation": [[1, %s]], "category_id": 2, "category_id": 3, "bounding_box": [1, 2, 30, 40]}}',
    b'{"item2": %s, "source": "user", "item1": {"bounding_box": %s}}',
    b'{"pair_id": %s, "pair_id": %s, "meta": {"x": 1}}',
]


@pytest.mark.parametrize(
    "data",
    [b'\xef\xbb\xbf{"pair_id": 1}', '{"pair_id": "é"}'.encode("utf-16"), b"", b"[1]", b'{"pair_id": 1} x']
    + [place.replace(b"%s", value) for place in ODD_PLACES for value in ODD_VALUES],
)
def test_fast_parser_reads_what_json_loads_reads(data, monkeypatch):
    fast = parsed(data)
    monkeypatch.setattr(deepfashion2, "_FAST_PARSER", None)  # json.loads only
    assert fast == parsed(data)


def convert(annotations, images, out, jobs):
    catalogue = LabelCatalogue()
    source = open_source(annotations)
    with ManifestAssembler(catalogue, workdir=str(out)) as assembler:
        steps = []
        convert_into(assembler, source, LocalImages(images, URI), jobs=jobs, chunk=4, on_images=steps.append)
        with open(out / "train.manifest", "wb") as train, open(out / "test.manifest", "wb") as test:
            summary = assembler.finish(train, test)
        rejected = list(assembler.iter_rejections())
    return sum(steps), json.dumps(summary), json.dumps(rejected), (out / "train.manifest").read_bytes(), (out / "test.manifest").read_bytes()


def test_workers_give_the_same_bytes(sample_set, tmp_path):
    # A duplicate image (same stem, other case of extension) and a file that is not an annotation.
    annotations = tmp_path / "annos"
    shutil.copytree(sample_set.annotations, annotations)
    shutil.copy(annotations / "000001.json", annotations / "000001.JSON")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = convert(annotations, sample_set.images, tmp_path / "one", jobs=1)
    two = convert(annotations, sample_set.images, tmp_path / "two", jobs=2)
    assert one == two
    steps, summary, rejected, train, test = two
    assert steps == len(list(annotations.iterdir()))
    assert train and test and "duplicate_image" in rejected and "unsupported_file" in rejected


def test_cli_jobs_give_the_same_bytes(sample_set, tmp_path, monkeypatch):
    outputs = []
    for jobs in (1, 2):
        monkeypatch.setattr("fashion_pipeline.pipeline.CHUNK", 4)  # several chunks, so workers start
        out = tmp_path / str(jobs)
        monkeypatch.setattr("fashion_pipeline.pipeline.default_jobs", lambda jobs=jobs: jobs)
        assert main(["convert", str(sample_set.annotations), "--images", str(sample_set.images), "--image-uri", URI, "--out", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        del report["summary"]["seconds"]
        outputs.append(((out / "train.manifest").read_bytes(), (out / "test.manifest").read_bytes(), report))
    assert outputs[0] == outputs[1]


def test_folder_listing_is_sorted_however_large(tmp_path, monkeypatch):
    """Past LISTING_RUN names, the listing is merge-sorted from runs on disk: same order as
    sorted(), for names with newlines and bytes that are not UTF-8 too."""
    import os

    from fashion_pipeline import sources

    names = [f"{i:05d}.json" for i in range(0, 300, 7)] + ["a\nb.json", "Z.json", "é.json", "-x.json"]
    folder = os.fsencode(tmp_path)
    for name in names:
        (tmp_path / name).write_text("{}")
    with open(os.path.join(folder, b"\xff\xfe.json"), "w") as handle:  # not UTF-8
        handle.write("{}")
    (tmp_path / "sub").mkdir()  # folders are not files
    expected = sorted(entry.name for entry in os.scandir(tmp_path) if entry.is_file())
    whole = sources.folder_names(str(tmp_path))
    monkeypatch.setattr(sources, "LISTING_RUN", 5)
    merged = sources.folder_names(str(tmp_path))
    assert list(whole) == list(merged) == expected and len(merged) == len(expected) == len(names) + 1
    monkeypatch.setattr(sources.FolderListing, "BLOCK", 7)  # slices across blocks
    blocks = sources.folder_names(str(tmp_path))
    assert [blocks.slice(start, start + 20) for start in (0, 20, 40)] == [expected[0:20], expected[20:40], expected[40:60]]
    assert blocks.slice(3, 11) == expected[3:11] and blocks.slice(45, 60) == expected[45:]


@pytest.mark.parametrize("failure", ["raises", "dies"])
def test_a_failing_worker_stops_the_conversion_with_its_reason(sample_set, tmp_path, monkeypatch, failure):
    import os

    from fashion_pipeline import pipeline

    read = pipeline.read_folder_file

    def broken(folder, name):  # runs in the forked workers
        if name == "000009.json":
            if failure == "dies":
                os._exit(3)  # as if killed
            raise RuntimeError("disk on fire")
        return read(folder, name)

    monkeypatch.setattr(pipeline, "read_folder_file", broken)
    with pytest.raises(pipeline.WorkerError, match="disk on fire" if failure == "raises" else "ended without its results"):
        convert(sample_set.annotations, sample_set.images, tmp_path, jobs=2)
