import io
import json

import pytest

from fashion_pipeline.labels import LabelCatalogue
from fashion_pipeline.manifest import MAX_LINE_CHARS, ManifestAssembler, manifest_line
from fashion_pipeline.records import Box, Record

CREATED = "2024-05-01T12:00:00"


def record(name, boxes, pair="1", size=(640, 480)):
    return Record(f"{name}.json", f"s3://bucket/images/{name}.jpg", size[0], size[1], 3, pair, tuple(boxes), CREATED)


def box(category="skirt", left=10, top=20, width=30, height=40):
    return Box(category, left, top, width, height)


def test_line_has_the_exact_ground_truth_shape():
    catalogue = LabelCatalogue()
    r = record("000001", [box("skirt"), box("sling", 1, 2, 3, 4), box("skirt", 5, 6, 7, 8)])
    labelled = [(catalogue.label_for(b.category), b) for b in r.boxes]
    line = json.loads(manifest_line(r, labelled, catalogue))
    assert list(line) == ["source-ref", "bounding-box", "bounding-box-metadata"]
    assert line["source-ref"] == "s3://bucket/images/000001.jpg"
    assert line["bounding-box"]["image_size"] == [{"width": 640, "height": 480, "depth": 3}]
    skirt, vest = catalogue.class_id("skirt"), catalogue.class_id("vest")
    assert line["bounding-box"]["annotations"] == [
        {"class_id": skirt, "top": 20, "left": 10, "width": 30, "height": 40},
        {"class_id": vest, "top": 2, "left": 1, "width": 3, "height": 4},
        {"class_id": skirt, "top": 6, "left": 5, "width": 7, "height": 8},
    ]
    meta = line["bounding-box-metadata"]
    assert meta["objects"] == [{"confidence": 1}] * 3
    assert meta["class-map"] == {str(skirt): "skirt", str(vest): "vest"}
    assert all(isinstance(k, str) for k in meta["class-map"])
    assert meta["type"] == "groundtruth/object-detection"
    assert meta["human-annotated"] == "yes"
    assert meta["creation-date"] == CREATED
    assert meta["job-name"]


def assemble(records, **options):
    catalogue = options.pop("catalogue", LabelCatalogue())
    with ManifestAssembler(catalogue, **options) as assembler:
        for r in records:
            assembler.add(r)
        train, test = io.BytesIO(), io.BytesIO()
        summary = assembler.finish(train, test)
        rejected = list(assembler.iter_rejections())
    lines = lambda buf: [json.loads(x) for x in buf.getvalue().splitlines()]
    return lines(train), lines(test), summary, rejected


def test_same_name_same_class_id_on_every_line():
    records = [record(f"{i:06d}", [box("skirt"), box(["vest", "shorts", "sling"][i % 3])], pair=str(i)) for i in range(30)]
    train, test, _, _ = assemble(records)
    seen = {}
    for line in train + test:
        for cid, name in line["bounding-box-metadata"]["class-map"].items():
            assert seen.setdefault(name, cid) == cid


def test_more_than_fifty_boxes_leaves_the_image_out():
    train, test, summary, rejected = assemble([record("a", [box()] * 51), record("b", [box()] * 50, pair="2")], test_fraction=0.0)
    assert [line["source-ref"] for line in train] == ["s3://bucket/images/b.jpg"]
    assert [(r["image"], r["reason"]) for r in rejected] == [("a.jpg", "too_many_boxes")]


def test_excluded_labels_are_reported_and_an_empty_image_is_left_out():
    catalogue = LabelCatalogue(mapping={"sling": None})
    train, _, summary, rejected = assemble(
        [record("a", [box("sling")]), record("b", [box("sling"), box("skirt")], pair="2")], catalogue=catalogue, test_fraction=0.0
    )
    assert len(train) == 1 and len(train[0]["bounding-box"]["annotations"]) == 1
    reasons = sorted((r["image"], r["reason"], r["level"]) for r in rejected)
    assert reasons == [("a.jpg", "label_excluded", "box"), ("a.jpg", "no_valid_boxes", "image"), ("b.jpg", "label_excluded", "box")]


def test_duplicate_image_is_reported():
    _, _, summary, rejected = assemble([record("a", [box()]), record("a", [box()])], test_fraction=0.0)
    assert summary["lines_out"] == 1
    assert [r["reason"] for r in rejected] == ["duplicate_image"]


def test_overlong_line_is_reported(monkeypatch):
    monkeypatch.setattr("fashion_pipeline.manifest.lines.MAX_LINE_CHARS", 600)
    _, _, summary, rejected = assemble([record("a", [box()] * 10), record("b", [box()], pair="2")], test_fraction=0.0)
    assert summary["lines_out"] == 1
    assert rejected[0]["reason"] == "line_too_long"
    assert MAX_LINE_CHARS == 100_000


def test_pairs_never_straddle_and_test_labels_are_in_train():
    labels = ["skirt", "vest", "shorts", "trousers", "sling_dress"]
    records = []
    for pair in range(200):
        for source in ("shop", "user"):
            records.append(record(f"{pair:04d}{source}", [box(labels[pair % 5])], pair=str(pair)))
    train, test, summary, _ = assemble(records)
    pair_of = lambda line: line["source-ref"].rsplit("/", 1)[1][:4]
    assert not {pair_of(l) for l in train} & {pair_of(l) for l in test}
    assert set(summary["test"]["boxes"]) <= set(summary["train"]["boxes"])
    assert 0.17 <= summary["test_fraction"]["actual"] <= 0.23


def test_line_cap_downsamples_stratified_and_reports_it():
    records = [record(f"{i:05d}", [box("skirt" if i % 10 else "vest")], pair=str(i)) for i in range(1000)]
    train, test, summary, rejected = assemble(records, test_fraction=0.0, max_lines=100)
    assert len(train) == 100
    vest = sum(1 for line in train if line["bounding-box-metadata"]["class-map"].get(str(LabelCatalogue().class_id("vest"))))
    assert vest == 10  # 10% of the input, 10% of the output
    assert summary["downsampled"]["train"]["from"] == 1000 and summary["downsampled"]["train"]["to"] == 100
    assert sum(1 for r in rejected if r["reason"] == "downsampled") == 900
    assert summary["annotations_in"] == 1000


def test_byte_cap_downsamples_further():
    records = [record(f"{i:05d}", [box()], pair=str(i)) for i in range(200)]
    train, _, summary, _ = assemble(records, test_fraction=0.0, max_bytes=20_000)
    assert 0 < summary["train"]["bytes"] <= 20_000
    assert summary["train"]["images"] == len(train) < 200


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError, match="test fraction"):
        ManifestAssembler(LabelCatalogue(), test_fraction=1.0)


def test_partitioned_finish_gives_the_same_output(monkeypatch):
    """Past ONE_PART_RECORDS, duplicates and groups are found range by range on disk; the
    manifests, the summary and the report must not change."""
    labels = ["skirt", "vest", "shorts", "trousers", "sling_dress", "long_sleeved_dress"]
    records = []
    for pair in range(150):
        for source in ("shop", "user", "user2")[: 1 + pair % 3]:
            records.append(record(f"{pair:04d}{source}", [box(labels[pair % 6]), box(labels[(pair * 7) % 6])], pair=str(pair)))
    duplicates = records[::17]  # later copies of earlier records
    records += duplicates
    records += [record(f"lone{i}", [box(labels[i % 6])], pair=None) for i in range(40)]
    whole = assemble(records, max_lines=200)
    monkeypatch.setattr("fashion_pipeline.manifest.assembler.ONE_PART_RECORDS", 16)
    monkeypatch.setattr("fashion_pipeline.manifest.assembler.PARTITION_RECORDS", 16)
    monkeypatch.setattr("fashion_pipeline.manifest.spool.BLOCK_RECORDS", 32)  # and columns read in several blocks
    monkeypatch.setattr("fashion_pipeline.manifest.assembler.PENDING_RECORDS", 8)  # of many small batches
    parted = assemble(records, max_lines=200)
    assert parted == whole
    train, test, summary, rejected = whole
    assert summary["downsampled"] and sum(r["reason"] == "duplicate_image" for r in rejected) == len(duplicates)
    assert len(train) + len(test) == summary["lines_out"]


def test_partitioned_finish_with_more_than_64_labels(monkeypatch):
    """Label masks wider than a machine word (a COCO set with 80 categories) survive both paths."""
    catalogue = LabelCatalogue(mapping={}, categories=frozenset(f"c{i:02d}" for i in range(80)))
    records = [record(f"{i:04d}", [box(f"c{i % 80:02d}"), box(f"c{(i * 3) % 80:02d}")], pair=str(i // 2)) for i in range(400)]
    whole = assemble(records, catalogue=catalogue)
    monkeypatch.setattr("fashion_pipeline.manifest.assembler.ONE_PART_RECORDS", 50)
    monkeypatch.setattr("fashion_pipeline.manifest.assembler.PARTITION_RECORDS", 50)
    assert assemble(records, catalogue=catalogue) == whole
    assert set(whole[2]["test"]["boxes"]) <= set(whole[2]["train"]["boxes"]) and whole[2]["test"]["images"] > 0
