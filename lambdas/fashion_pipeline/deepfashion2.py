"""DeepFashion2 annotations: one JSON file per image, ``000001.json`` beside ``000001.jpg``.

Each file holds the image-level ``source`` and ``pair_id`` and one ``itemN`` object per
garment (``category_id``, ``bounding_box`` as ``[x1, y1, x2, y2]``, landmarks, segmentation,
style, scale, occlusion, zoom_in, viewpoint). Only the id, the box and ``pair_id`` matter here;
the category name is taken from the id, because the files' names ("short sleeve top") are
not the catalogue's ("short_sleeved_shirt").
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from .labels import CATEGORY_NAMES
from .records import AnnotationError, ImageAnnotation, SourceBox, normalise_image_name, pair_id_problem

try:  # pydantic's Rust JSON parser, where installed (the Lambdas and the CLI have it)
    from pydantic_core import SchemaValidator, core_schema
except ImportError:  # pragma: no cover - json.loads is the reference anyway
    _FAST_PARSER = None
else:
    # Any JSON object, whose object values other than source and pair_id (the itemN) keep only
    # the fields parse_document reads. The parser skips the rest (landmarks and segmentation,
    # most of the bytes) instead of building Python objects for it: 3x json.loads' speed.
    _optional = core_schema.typed_dict_field(core_schema.any_schema(), required=False)
    _item = core_schema.typed_dict_schema({"category_id": _optional, "bounding_box": _optional}, extra_behavior="ignore")
    _FAST_PARSER = SchemaValidator(
        core_schema.typed_dict_schema(
            {"source": _optional, "pair_id": _optional},
            extra_behavior="allow",
            extras_schema=core_schema.union_schema([_item, core_schema.any_schema()], mode="left_to_right"),
        )
    )

IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg")  # DeepFashion2 ships .jpg; .png is the common other
MAX_ITEMS_IN_ORDER = 64  # item1 ... item64 in this order need no sorting
MAX_ITEM_DIGITS = 18  # itemN sorts by the number N; a longer N sorts after (int() refuses 4,300 digits)


_IN_ORDER = [f"item{number}" for number in range(1, MAX_ITEMS_IN_ORDER + 1)]


def _item_order(entry: tuple[str, Any]) -> tuple[int, int, str]:
    digits = entry[0][4:]
    return (0, int(digits), entry[0]) if len(digits) <= MAX_ITEM_DIGITS else (1, 0, entry[0])


def load_document(data: bytes) -> Any:
    """``json.loads(data)``, but with only what parse_document reads from the items.

    The fast parser accepts a subset of what json.loads does (it refuses a BOM, UTF-16, lone
    surrogates, deep nesting and anything but an object) and gives equal values for what
    parse_document reads; whatever it refuses goes to json.loads, whose result, or error
    message in the report, stays the reference.
    """
    if _FAST_PARSER is not None:
        try:
            return _FAST_PARSER.validate_json(data)
        except ValueError:  # pydantic_core.ValidationError included
            pass
    return json.loads(data)


def image_candidates(stem: str) -> tuple[str, ...]:
    return tuple([stem + ext for ext in IMAGE_EXTENSIONS])


def parse_document(document: Any, *, source: str, image_candidates: tuple[str, ...]) -> ImageAnnotation:
    """One DeepFashion2 annotation object -> ImageAnnotation. Raises AnnotationError."""
    if not isinstance(document, dict):
        raise AnnotationError("not_an_annotation", "expected a JSON object with item1, item2, ...")
    items = [(key, value) for key, value in document.items() if key[:4] == "item" and key[4:].isdecimal()]
    if len(items) > 1 and [key for key, _ in items] != _IN_ORDER[: len(items)]:  # files list item1, item2, ... in order
        items.sort(key=_item_order)
    if not items and "pair_id" not in document and "source" not in document:
        raise AnnotationError("not_an_annotation", "no DeepFashion2 fields (source, pair_id, itemN)")
    pair_id = document.get("pair_id")
    if pair_id is not None and (problem := pair_id_problem(pair_id)) is not None:
        raise AnnotationError("invalid_pair_id", problem)  # its split group is unknown: it cannot be placed
    boxes = []
    for key, item in items:
        if not isinstance(item, dict):
            boxes.append(SourceBox(key, None, None, None))
            continue
        category_id = item.get("category_id")
        # type() rather than isinstance: True is an int, and must not read as category 1.
        category = CATEGORY_NAMES.get(category_id) if type(category_id) is int else None
        boxes.append(SourceBox(key, category, category_id, item.get("bounding_box")))
    return ImageAnnotation(source, image_candidates, None if pair_id is None else str(pair_id), boxes)


def parse_file(data: bytes, *, source: str, stem: str) -> ImageAnnotation:
    """A per-image annotation file's bytes -> ImageAnnotation. Raises AnnotationError."""
    try:
        document = load_document(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnnotationError("invalid_json", f"not valid JSON: {exc}") from None
    return parse_document(document, source=source, image_candidates=image_candidates(stem))


def iter_jsonl(lines: Iterator[bytes], *, source: str) -> Iterator[ImageAnnotation | AnnotationError]:
    """JSON Lines of DeepFashion2 records, each with an ``image`` (file name) key.

    Yields an ImageAnnotation per good line and an AnnotationError (with ``source`` naming
    the line) per bad one, so one bad line does not lose the rest.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}#line{number}"
        try:
            document = load_document(line)
        except (ValueError, UnicodeDecodeError) as exc:
            yield AnnotationError("invalid_json", f"line {number} is not valid JSON: {exc}", where)
            continue
        image = document.get("image") if isinstance(document, dict) else None
        if not isinstance(image, str) or not image:
            yield AnnotationError("not_an_annotation", f"line {number} has no 'image' file name", where)
            continue
        try:
            image = normalise_image_name(image)  # "./a.jpg" is "a.jpg"; "../a.jpg" is refused
            candidates = (image,) if image.lower().endswith(IMAGE_EXTENSIONS) else image_candidates(image)
            yield parse_document(document, source=where, image_candidates=candidates)
        except AnnotationError as exc:
            exc.source = where
            yield exc
