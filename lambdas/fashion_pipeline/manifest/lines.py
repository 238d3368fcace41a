"""The manifest line: one Ground Truth object-detection JSON line per image.

``ManifestLines.prepare`` does what depends on one record alone (labels, per-line rules, the
line itself) and keeps no state, so worker processes can run it.
"""

from __future__ import annotations

import re
from json.encoder import encode_basestring as quote  # how json.dumps(..., ensure_ascii=False) writes a str
from typing import Any, Iterable, NamedTuple

from ..labels import LabelCatalogue
from ..records import Box, Record, Rejection
from ..split import stable_hash
from .batches import BatchBuilder
from .quotas import MAX_BOXES_PER_IMAGE, MAX_LINE_CHARS


DEFAULT_ATTRIBUTE = "bounding-box"
DEFAULT_JOB_NAME = "fashion-pipeline"
_UNKNOWN = object()  # a category the catalogue has never heard of (None: one it excludes)
# A label attribute is a Ground Truth LabelAttributeName: botocore's sagemaker service model
# gives its shape (1-127 characters, [a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}), and CreateLabelingJob's
# reference adds that it "can't end with -metadata". "source-ref" is the image's own key.
_ATTRIBUTE_SHAPE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}")


def check_attribute(attribute: str) -> str:
    """``attribute`` when it can name a line's label attribute; ValueError saying why not."""
    if not isinstance(attribute, str) or not _ATTRIBUTE_SHAPE.fullmatch(attribute):
        raise ValueError(f"label attribute {attribute!r}: 1-127 letters, digits and inner hyphens")
    if attribute == "source-ref" or attribute.endswith("-metadata"):
        raise ValueError(f"label attribute {attribute!r}: is 'source-ref' or ends with '-metadata', keys a manifest line already has")
    return attribute


class Prepared(NamedTuple):
    """A record with the catalogue and the per-line rules applied: what ``BatchBuilder.add`` takes."""

    source: str
    image: str  # the image's file name, as reports name it
    image_uri: str
    rejections: tuple[Rejection, ...]  # boxes the catalogue leaves out
    problem: tuple[str, str] | None  # (reason, detail) when the image is left out
    line: bytes  # the manifest line with its newline; empty when there is a problem
    class_ids: tuple[int, ...]  # of the boxes on the line
    mask: int  # the same class ids as a bit mask
    group_key: str  # the split group: "pair:ID", else "image:URI"
    group_hash: int  # stable_hash(seed, group_key)


class ManifestLines:
    """The per-record half of assembly: label catalogue, per-line rules and the line itself.

    Lines are written out piece by piece rather than by json.dumps of the nested structure,
    which was the costliest step of assembly. Strings are quoted by json's own function and
    every number is an int, so the bytes are those of json.dumps(structure, separators=(",",
    ":"), ensure_ascii=False); tests/fashion_pipeline/test_pipeline.py holds the two side by side.
    """

    def __init__(
        self,
        catalogue: LabelCatalogue,
        *,
        attribute: str = DEFAULT_ATTRIBUTE,
        job_name: str = DEFAULT_JOB_NAME,
        seed: int = 0,
    ) -> None:
        check_attribute(attribute)
        self.seed = seed
        # Per category: its class id, or None when the mapping excludes it.
        self._class_of = {category: catalogue.class_ids.get(catalogue.label_for(category)) for category in catalogue.categories}
        self._class_ids = catalogue.class_ids
        self._class_map = {i: f'"{i}":{quote(label)}' for label, i in self._class_ids.items()}
        self._class_maps: dict[int, str] = {}  # the class-map text of each label mask seen
        self._objects = [",".join(['{"confidence":1}'] * n) for n in range(MAX_BOXES_PER_IMAGE + 1)]
        self._size = f',{quote(attribute)}:{{"image_size":[{{"width":'
        self._metadata = f',{quote(attribute + "-metadata")}:{{"objects":['
        self._job = f',"job-name":{quote(job_name)}'
        self.mask_bytes = max(8, -(-len(self._class_ids) // 8))  # a record's labels as a bit mask

    def builder(self) -> BatchBuilder:
        """A BatchBuilder for records prepared here."""
        return BatchBuilder(self.mask_bytes)

    def line(self, record: Record, labelled: list[tuple[str, Box]]) -> str:
        """One JSON line in the exact shape Rekognition imports (see the Custom Labels guide,
        "Object localization in manifest files")."""
        class_ids = [self._class_ids[label] for label, _ in labelled]
        return self._line(record, class_ids, [box for _, box in labelled], _mask(class_ids))

    def _line(self, record: Record, class_ids: list[int], boxes: list[Box], mask: int) -> str:
        annotations = ",".join([
            f'{{"class_id":{cid},"top":{top},"left":{left},"width":{width},"height":{height}}}'
            for cid, (_, left, top, width, height) in zip(class_ids, boxes)
        ])
        class_map = self._class_maps.get(mask)
        if class_map is None:
            class_map = self._class_maps[mask] = ",".join(map(self._class_map.__getitem__, sorted(set(class_ids))))
        return (
            f'{{"source-ref":{quote(record.image_uri)}'
            f'{self._size}{record.width},"height":{record.height},"depth":{record.depth}}}],"annotations":[{annotations}]}}'
            f'{self._metadata}{self._objects[len(class_ids)]}],"class-map":{{{class_map}}},"type":"groundtruth/object-detection",'
            f'"human-annotated":"yes","creation-date":{quote(record.created)}{self._job}}}}}'
        )

    def prepare(self, record: Record) -> Prepared:
        """Everything about a record that does not depend on the records before it."""
        source, image_uri, image = record.source, record.image_uri, record.image_name
        class_of = self._class_of
        class_ids: list[int] = []
        boxes: list[Box] = []
        rejections: list[Rejection] = []
        mask = 0
        for index, box in enumerate(record.boxes):
            class_id = class_of.get(box.category, _UNKNOWN)
            if class_id is None or class_id is _UNKNOWN:
                rejections.append(self._box_rejection(source, image, box.category, index, known=class_id is None))
            else:
                class_ids.append(class_id)
                boxes.append(box)
                mask |= 1 << class_id
        problem = None
        if len(boxes) > MAX_BOXES_PER_IMAGE:
            problem = ("too_many_boxes", f"{len(boxes)} boxes; Rekognition accepts at most {MAX_BOXES_PER_IMAGE} per image")
        elif not boxes:
            problem = ("no_valid_boxes", "no box survived the rules")
        else:
            text = self._line(record, class_ids, boxes, mask)
            line = text.encode()
            if len(line) > MAX_LINE_CHARS and len(text) > MAX_LINE_CHARS:
                problem = ("line_too_long", f"the manifest line would be {len(line)} characters; the limit is {MAX_LINE_CHARS}")
        if problem is not None:
            return Prepared(source, image, image_uri, tuple(rejections), problem, b"", (), 0, "", 0)
        group_key = f"pair:{record.pair_id}" if record.pair_id is not None else "image:" + image_uri
        return Prepared(
            source, image, image_uri, tuple(rejections), None, line + b"\n", tuple(class_ids), mask,
            group_key, stable_hash(self.seed, group_key),
        )

    @staticmethod
    def _box_rejection(source: str, image: str, category: str, index: int, *, known: bool) -> Rejection:
        if known:
            return Rejection(source, image, "label_excluded", f"category {category!r} is excluded by the label mapping", f"box {index + 1}")
        return Rejection(source, image, "unknown_category", f"category {category!r} is not in the catalogue", f"box {index + 1}")


def _mask(class_ids: Iterable[int]) -> int:
    mask = 0
    for class_id in class_ids:
        mask |= 1 << class_id
    return mask


def manifest_line(
    record: Record,
    labelled: list[tuple[str, Any]],
    catalogue: LabelCatalogue,
    *,
    attribute: str = DEFAULT_ATTRIBUTE,
    job_name: str = DEFAULT_JOB_NAME,
) -> str:
    """One manifest line for ``record``'s ``labelled`` boxes (see ManifestLines.line)."""
    return ManifestLines(catalogue, attribute=attribute, job_name=job_name).line(record, labelled)
