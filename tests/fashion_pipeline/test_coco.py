"""The streaming COCO reader: the former whole-document reader's items, in any order of the file,
by ranges, with bounded reads; odd values reported, never raised."""

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashion_pipeline import coco
from fashion_pipeline.coco import CocoStream, NotCoco, _Reader
from fashion_pipeline.images import ImageError, ImageInfo
from fashion_pipeline.records import NOT_TEXT, AnnotationError, ImageAnnotation, Rejection, build_record, checked_image_names
from fashion_pipeline.sources import open_source


def whole_document(document, source):
    """The former reader (json.loads of the whole file, then this), for documents within the
    rules both share: integer or string ids, plain file names, numbers or text as pair_id."""
    categories = {}
    for category in document.get("categories") or []:
        if isinstance(category, dict) and "id" in category and isinstance(category.get("name"), str):
            categories[category["id"]] = category["name"]
    images = document["images"]
    image_ids = {image.get("id") for image in images if isinstance(image, dict)}
    by_image, out = {}, []
    for index, annotation in enumerate(document["annotations"]):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in image_ids:
            label = annotation.get("id", index) if isinstance(annotation, dict) else index
            out.append(Rejection(source, None, "orphan_annotation", f"annotation {label} refers to no image (image_id {image_id!r})", f"annotation {label}"))
            continue
        by_image.setdefault(image_id, []).append(annotation)
    ordered = sorted((i for i in images if isinstance(i, dict)), key=lambda i: (str(i.get("file_name", "")), str(i.get("id"))))
    out += [AnnotationError("not_an_annotation", "an 'images' entry is not an object", source)] * (len(images) - len(ordered))
    for image in ordered:
        file_name, where = image.get("file_name"), f"{source}#image{image.get('id')}"
        if not isinstance(file_name, str) or not file_name:
            out.append(AnnotationError("not_an_annotation", f"image {image.get('id')!r} has no file_name", where))
            continue
        annotations = by_image.get(image.get("id"), [])
        pair_ids = {a.get("pair_id") for a in annotations if a.get("pair_id") is not None}
        boxes = []
        for index, annotation in enumerate(annotations):
            bbox = xyxy = annotation.get("bbox")
            if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
                xyxy = [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]
            boxes.append((f"annotation {annotation.get('id', index)}", categories.get(annotation.get("category_id")), annotation.get("category_id"), xyxy, None))
        out.append(ImageAnnotation(where, (file_name,), str(min(pair_ids, key=str)) if pair_ids else None, boxes))
    return [comparable(item) for item in out]


def comparable(item):
    if isinstance(item, ImageAnnotation):
        boxes = [b if isinstance(b, tuple) else (b.item, b.category, b.category_id, b.xyxy, b.problem) for b in item.boxes]
        return ("image", item.source, item.image_candidates, item.pair_id, boxes)
    if isinstance(item, AnnotationError):
        return ("error", item.reason, item.detail, item.source)
    assert isinstance(item, Rejection)
    return ("rejection", item)


def streamed(path, source="c.json", start=0, stop=None):
    with CocoStream.open(path, source=source) as stream:
        return [comparable(item) for item in stream.items(start, stop)]


ids = st.one_of(st.integers(-2, 6), st.sampled_from(["a", "b", "1", "é"]))
names = st.sampled_from(["000001.jpg", "b.png", "c.jpg", "zz/y.jpg", "Ä.jpg", "", "a b.jpg"])
numbers = st.one_of(st.integers(-50, 2000), st.floats(-50, 2000, allow_nan=False).map(lambda f: round(f, 2)))
junk = st.recursive(st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=5)), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)


@st.composite
def documents(draw):
    images = draw(st.lists(
        st.one_of(
            st.fixed_dictionaries({"id": ids}, optional={"file_name": names, "width": numbers, "extra": junk}),
            junk.filter(lambda v: not isinstance(v, dict)),
        ),
        max_size=8,
    ))  # fmt: skip
    annotations = draw(st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"image_id": ids},
                optional={
                    "id": st.integers(0, 99), "category_id": st.sampled_from([1, 2, 3, 99]), "pair_id": st.one_of(st.integers(0, 9), st.sampled_from(["p", "q"])),
                    "bbox": st.one_of(st.lists(numbers, min_size=4, max_size=4), junk), "keypoints": st.lists(st.integers(0, 300), max_size=30), "segmentation": junk,
                },
            ),
            st.integers(),
        ),
        max_size=12,
    ))  # fmt: skip
    categories = draw(st.lists(st.fixed_dictionaries({"id": st.integers(1, 4), "name": st.sampled_from(["skirt", "hat", "shoe"])}, optional={"keypoints": junk}), max_size=4))
    members = [("images", images), ("annotations", annotations), ("categories", categories), ("info", junk), ("licenses", st.lists(junk))]
    order = draw(st.permutations(range(len(members))))
    document = {}
    for index in order:
        key, value = members[index]
        if key == "categories" and draw(st.booleans()):
            continue
        document[key] = draw(value) if key in ("info", "licenses") else value
    return document


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(document=documents(), indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans(), read_size=st.integers(1, 97))
def test_stream_gives_the_former_readers_items_in_any_order_of_the_file(document, indent, ascii_only, read_size, tmp_path, monkeypatch):
    # Tiny reads: entries are taken out of their lists between reads, mid-entry as often as not.
    monkeypatch.setattr(coco, "READ_SIZE", read_size)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(document, indent=indent, ensure_ascii=ascii_only), encoding="utf-8")
    assert streamed(path) == whole_document(document, "c.json")
    with CocoStream.open(path, source="c.json") as stream:
        assert len(stream) == len(document["images"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents(), cuts=st.lists(st.integers(0, 8), max_size=4))
def test_consecutive_ranges_give_the_whole_file(document, cuts, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(document))
    with CocoStream.open(path, source="c.json") as stream:
        bounds = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)}) or [0]
        bounds = bounds if len(bounds) > 1 else [0, 0]
        pieces = [comparable(item) for a, b in zip(bounds, bounds[1:]) for item in stream.items(a, b)]
        assert pieces == [comparable(item) for item in stream.items()]
        with pytest.raises(ValueError):
            list(stream.items(2, 1))


def test_the_c_backend_reads_the_files(monkeypatch):
    assert coco.BACKEND.backend_name == "yajl2_c"
    # Where it is missing, the best other backend is used, with a warning.
    real = coco.ijson.get_backend

    def without_c(name):
        if name == "yajl2_c":
            raise ImportError("no C backend here")
        return real(name)

    monkeypatch.setattr(coco.ijson, "get_backend", without_c)
    monkeypatch.setattr(coco.ijson, "backend_name", "python")
    with pytest.warns(RuntimeWarning, match="C backend .yajl2_c. is not available"):
        assert coco._backend().backend_name == "python"


def test_images_after_annotations_and_duplicate_keys_as_json_loads(tmp_path):
    text = (
        '{"annotations": [{"id": 9, "image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 1}],'
        ' "images": [{"id": 5, "file_name": "gone.jpg"}], "categories": [{"id": 1, "name": "hat"}],'
        ' "images": [{"id": 1, "file_name": "b.jpg"}, {"id": 2, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "cap"}]}'
    )
    (tmp_path / "c.json").write_text(text)
    assert streamed(tmp_path / "c.json") == whole_document(json.loads(text), "c.json")
    assert streamed(tmp_path / "c.json")[1][4][0][1] == "cap"  # the last "categories" counts


def test_numbers_beyond_doubles_are_read_as_json_loads_reads_them(tmp_path):
    text = '{"images": [{"id": 123456789012345678901234567890, "file_name": "a.jpg"}], "annotations": [{"image_id": 123456789012345678901234567890, "bbox": [1e400, 0.1, 2.5e-3, 1E2]}]}'
    (tmp_path / "c.json").write_text(text)
    assert streamed(tmp_path / "c.json") == whole_document(json.loads(text), "c.json")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
def test_byte_order_marks_and_utf16_are_read_as_json_loads_reads_them(encoding, tmp_path):
    document = {"images": [{"id": 1, "file_name": "naïve 😀.jpg"}], "annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4]}]}
    (tmp_path / "c.json").write_bytes(json.dumps(document, ensure_ascii=False).encode(encoding))
    assert streamed(tmp_path / "c.json") == whole_document(document, "c.json")


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "bbox": [NaN, 1, 2, 3]}]}', "NaN and Infinity are not JSON numbers"),
        ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1,', "premature EOF"),
        ('{"images": [], "annotations": []} {}', "trailing garbage"),
    ],
)
def test_a_broken_coco_file_is_one_invalid_json_rejection(text, expected, tmp_path):
    (tmp_path / "c.json").write_text(text)
    source = open_source(tmp_path / "c.json")
    items = [item for item, _ in source]
    assert source.kind == "coco" and len(items) == 1
    assert items[0].reason == "invalid_json" and expected in items[0].detail and "of the file" in items[0].detail


def test_what_is_not_coco_is_read_as_a_deepfashion2_file(tmp_path):
    for text in ('{"source": "shop", "pair_id": 1, "item1": {"category_id": 1}}', "[1, 2]", '{"images": {}, "annotations": []}'):
        (tmp_path / "c.json").write_text(text)
        with pytest.raises(NotCoco):
            CocoStream.open(tmp_path / "c.json", source="c.json")
        assert open_source(tmp_path / "c.json").kind == "file"


# Unpaired surrogates, escaped or raw: yajl makes "?" of "\ud800", fails on "\udc00", and refuses
# raw ones; the reader hands it NOT_TEXT in their place, and keeps pairs as they are.
# Pieces that make escapes next to escapes: "\\ud800" in the text is written "\\\\ud800", no surrogate.
surrogate_text = st.lists(
    st.one_of(st.characters(codec="utf-8"), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.sampled_from(["\\", '"', "\\ud800", "u", "d8", "😀"])),
    max_size=12,
).map("".join)


def lone_surrogates_replaced(text):
    # A surrogate left in a str by json.loads is unpaired: it joins the two escapes of a pair.
    return "".join(NOT_TEXT if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


@settings(max_examples=120, deadline=None)
@given(values=st.lists(surrogate_text, min_size=1, max_size=4), raw=st.booleans(), read_size=st.integers(1, 40))
def test_the_reader_replaces_lone_surrogates_only(values, raw, read_size):
    data = json.dumps(values, ensure_ascii=not raw).encode("utf-8", "surrogatepass")
    handle = io.BytesIO(data)
    reader = _Reader(handle, lambda: None)
    chunks = []
    while chunk := reader.read(read_size):
        chunks.append(chunk)
    assert len(b"".join(chunks)) == len(data)  # the same length: errors keep their place
    parsed = next(coco.BACKEND.items(io.BytesIO(b"".join(chunks)), ""))
    assert parsed == [lone_surrogates_replaced(v) for v in json.loads(data)]  # which joins escaped pairs


def test_valid_surrogate_pairs_are_characters():
    assert next(coco.BACKEND.items(_Reader(io.BytesIO(b'["\\ud83d\\ude00", "\\\\ud800", "\\ud800\\u0041"]'), lambda: None), "")) == ["😀", "\\ud800", NOT_TEXT + "A"]


def test_file_names_are_normalised_and_never_leave_the_images_folder(tmp_path):
    document = {
        "images": [
            {"id": 1, "file_name": "./a.jpg"}, {"id": 2, "file_name": "a.jpg"}, {"id": 3, "file_name": "../x.jpg"},
            {"id": 4, "file_name": "/etc/x.jpg"}, {"id": 5, "file_name": "sub//b.jpg"}, {"id": 6, "file_name": "\ud800.jpg"}, {"id": 7, "file_name": "nul\u0000.jpg"},
        ],
        "annotations": [],
    }
    (tmp_path / "c.json").write_text(json.dumps(document))
    with CocoStream.open(tmp_path / "c.json", source="c.json") as stream:
        items = {item.source.rsplit("#image", 1)[1]: item for item in stream}
    assert items["1"].image_candidates == items["2"].image_candidates == ("a.jpg",)  # one image: the second is a duplicate
    assert items["5"].image_candidates == ("sub/b.jpg",)
    assert (items["3"].reason, items["4"].reason) == ("image_outside_images", "image_outside_images")
    assert "'../x.jpg' leaves the images folder" in items["3"].detail
    assert (items["6"].reason, items["7"].reason) == ("invalid_file_name", "invalid_file_name")


def test_both_image_stores_refuse_names_outside_their_root(tmp_path):
    from converter.s3 import S3ImageStore
    from fashion_pipeline.sources import LocalImages

    (tmp_path / "images").mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8")

    class NoClient:
        def get_object(self, **kwargs):
            raise AssertionError(f"must not be asked for {kwargs['Key']}")

    for store in (LocalImages(tmp_path / "images", "s3://bucket/images/"), S3ImageStore(NoClient(), "bucket", "images/demo/")):
        for name in ("../secret.jpg", "/etc/passwd", "a/../../secret.jpg"):
            with pytest.raises(ImageError) as error:
                store.open((name,))
            assert error.value.reason == "image_outside_images"
    assert checked_image_names(("./a.jpg", "b//c.png")) == ("a.jpg", "b/c.png")


# Odd values where ids, names and numbers belong: a report, never an exception.
odd = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**64, max_value=2**80), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4), surrogate_text, st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
odd_or = lambda usual: st.one_of(usual, odd)  # noqa: E731


@st.composite
def odd_documents(draw):
    images = draw(st.lists(st.fixed_dictionaries({"id": odd_or(st.integers(1, 3)), "file_name": odd_or(names)}), max_size=4))
    annotations = draw(st.lists(st.fixed_dictionaries({
        "id": odd, "image_id": odd_or(st.integers(1, 3)), "category_id": odd_or(st.integers(1, 3)), "pair_id": odd_or(st.integers(1, 3)),
        "bbox": odd_or(st.lists(odd_or(numbers), min_size=4, max_size=4)),
    }), max_size=5))  # fmt: skip
    categories = draw(st.lists(st.fixed_dictionaries({"id": odd_or(st.integers(1, 3)), "name": odd_or(st.sampled_from(["skirt", "hat"]))}), max_size=3))
    return {"images": images, "annotations": annotations, "categories": categories}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=odd_documents(), nan=st.booleans())
def test_odd_values_are_reported_never_raised(document, nan, tmp_path):
    text = json.dumps(document)  # lone surrogates become "\ud800" escapes, as a JSON writer writes them
    if nan:
        text = text.replace('"bbox": [', '"bbox": [NaN, ', 1)
    (tmp_path / "c.json").write_text(text)
    source = open_source(tmp_path / "c.json")
    for item, created in source:
        if isinstance(item, ImageAnnotation):
            record, rejections = build_record(item, "s3://bucket/images/" + item.image, ImageInfo("jpeg", 640, 480, 3), 1000, created)
            for rejection in rejections:
                assert rejection.reason
                json.dumps(rejection.to_dict(), ensure_ascii=False).encode()  # a report can hold it
            if record is not None:
                json.dumps(record.to_dict(), ensure_ascii=False).encode()  # and so can a fragment
                assert all(box.category in {"skirt", "hat"} for box in record.boxes)
        else:
            assert isinstance(item, (AnnotationError, Rejection)) and item.reason
            json.dumps((item if isinstance(item, Rejection) else Rejection(item.source or "c.json", None, item.reason, item.detail)).to_dict(), ensure_ascii=False).encode()
    assert source.categories is None or all("\ud800" not in name and NOT_TEXT not in name for name in source.categories)


def test_odd_ids_and_pair_ids_are_named(tmp_path):
    document = {
        "images": [{"id": [1], "file_name": "a.jpg"}, {"id": True, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}, {"id": 4, "file_name": "d.jpg"}],
        "annotations": [
            {"id": 1, "image_id": [1], "bbox": [1, 2, 3, 4]}, {"id": 2, "image_id": True, "bbox": [1, 2, 3, 4]},
            {"id": 3, "image_id": 3, "pair_id": [7], "bbox": [1, 2, 3, 4]}, {"id": 4, "image_id": 4, "category_id": True, "bbox": [True, 2, 3, 4]},
        ],
        "categories": [{"id": 1, "name": "hat"}, {"id": 2, "name": "\ud800"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(document))
    with CocoStream.open(tmp_path / "c.json", source="c.json") as stream:
        items = [comparable(item) for item in stream]
        assert stream.category_names == {"hat"}
    assert items[:2] == [
        ("rejection", Rejection("c.json", None, "orphan_annotation", "annotation 1 refers to no image (image_id [1])", "annotation 1")),
        ("rejection", Rejection("c.json", None, "orphan_annotation", "annotation 2 refers to no image (image_id True)", "annotation 2")),
    ]
    assert items[2] == ("error", "invalid_id", "image id [1] is not an integer or a string", "c.json#image[1]")
    assert items[3] == ("error", "invalid_id", "image id True is not an integer or a string", "c.json#imageTrue")
    assert items[4] == ("error", "invalid_pair_id", "annotation 3: pair_id [7] is not a number or a string", "c.json#image3")
    assert items[5][4] == [("annotation 4", None, True, [True, 2, 3, 4], None)]  # unknown_category, box_invalid when converted


def test_a_category_name_that_is_not_text_drops_its_boxes_with_a_reason(tmp_path):
    document = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 2, 30, 40]}], "categories": [{"id": 2, "name": "x\ud800"}]}
    (tmp_path / "c.json").write_text(json.dumps(document))
    with CocoStream.open(tmp_path / "c.json", source="c.json") as stream:
        (annotation,) = list(stream)
    record, rejections = build_record(annotation, "s3://b/i/a.jpg", ImageInfo("jpeg", 640, 480, 3), 1000, "2024-01-01T00:00:00")
    assert record.boxes == () and [(r.reason, r.item) for r in rejections] == [("invalid_category_name", "annotation 1")]


def test_the_spool_is_removed_when_the_stream_is_closed(tmp_path):
    (tmp_path / "c.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}')
    stream = CocoStream.open(tmp_path / "c.json", source="c.json", directory=str(tmp_path))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("coco-")]
    stream.close()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("coco-")]


def test_sources_of_a_surrogate_escape_are_written_escaped():
    rejection = Rejection("a\ud800.json", "b\udcff.jpg", "invalid_file_name", "x", "item\ud800")
    assert json.dumps(rejection.to_dict(), ensure_ascii=False).encode() == json.dumps(
        {"source": "a\\ud800.json", "image": "b\\udcff.jpg", "reason": "invalid_file_name", "detail": "x", "item": "item\\ud800", "level": "box"}, ensure_ascii=False
    ).encode()


def test_the_fallback_backend_gives_the_same_items(tmp_path, monkeypatch):
    document = {"annotations": [{"id": 1, "image_id": 2, "bbox": [1, 2, 3, 4], "pair_id": 5}, {"image_id": 9}], "images": [{"id": 2, "file_name": "b\\ud800.jpg"}, {"id": 1, "file_name": "a.jpg"}, 3]}
    (tmp_path / "c.json").write_text(json.dumps(document))
    with_c = streamed(tmp_path / "c.json")
    monkeypatch.setattr(coco, "BACKEND", coco.ijson.get_backend("python"))
    assert streamed(tmp_path / "c.json") == with_c
