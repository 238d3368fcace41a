"""Ground Truth object-detection manifests for Rekognition Custom Labels.

``ManifestAssembler`` takes records one at a time (from a local conversion or from S3
fragments), applies the label catalogue and the per-line rules, and spools finished lines
to disk; ``finish`` splits them into train and test and enforces the manifest caps. Memory
holds a few integers per record, never the records themselves.
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

from .labels import LabelCatalogue
from .records import Record, Rejection
from .split import choose_test_groups, stable_hash, stratified_keep

MAX_BOXES_PER_IMAGE = 50
MAX_LINES_PER_MANIFEST = 250_000
MAX_LINE_CHARS = 100_000
MAX_MANIFEST_BYTES = 1_000_000_000
DEFAULT_ATTRIBUTE = "bounding-box"
DEFAULT_JOB_NAME = "fashion-pipeline"


def manifest_line(
    record: Record,
    labelled: list[tuple[str, Any]],
    catalogue: LabelCatalogue,
    *,
    attribute: str = DEFAULT_ATTRIBUTE,
    job_name: str = DEFAULT_JOB_NAME,
) -> str:
    """One JSON line in the exact shape Rekognition imports (see the Custom Labels guide,
    "Object localization in manifest files")."""
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


@dataclass
class SplitCounts:
    images: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "boxes": dict(sorted(self.boxes.items())), "bytes": self.bytes}


class ManifestAssembler:
    """Streams records into train/test manifests with a report of everything left out."""

    def __init__(
        self,
        catalogue: LabelCatalogue,
        *,
        test_fraction: float = 0.2,
        seed: int = 0,
        attribute: str = DEFAULT_ATTRIBUTE,
        job_name: str = DEFAULT_JOB_NAME,
        max_lines: int = MAX_LINES_PER_MANIFEST,
        max_bytes: int = MAX_MANIFEST_BYTES,
        workdir: str | None = None,
    ) -> None:
        if not 0 <= test_fraction < 1:
            raise ValueError(f"test fraction must be at least 0 and below 1, got {test_fraction}")
        self.catalogue = catalogue
        self.test_fraction = test_fraction
        self.seed = seed
        self.attribute = attribute
        self.job_name = job_name
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._dir = tempfile.TemporaryDirectory(prefix="manifest-", dir=workdir)
        self._lines = open(os.path.join(self._dir.name, "lines"), "w+b")
        self._origins = open(os.path.join(self._dir.name, "origins"), "w+b")
        self._rejections = open(os.path.join(self._dir.name, "rejections"), "w+b")
        # Per record, a few machine integers: its group, its line length, its labels.
        self._record_group = array("I")
        self._record_bytes = array("I")
        self._label_start = array("I", [0])
        self._labels = array("H")
        self._groups: dict[str, int] = {}
        self._group_keys: list[str] = []
        self._group_images: list[int] = []
        self._group_labels: list[int] = []
        self._seen_images: set[str] = set()
        self.inputs = 0
        self.rejection_counts: dict[str, int] = {}
        self.box_rejections = 0
        self.image_rejections = 0

    # -- intake ---------------------------------------------------------------------------
    def reject(self, rejection: Rejection) -> None:
        """Record something left out (an image, or a box of an image)."""
        if rejection.item is None:
            self.inputs += 1
            self.image_rejections += 1
        else:
            self.box_rejections += 1
        self.rejection_counts[rejection.reason] = self.rejection_counts.get(rejection.reason, 0) + 1
        self._rejections.write(json.dumps(rejection.to_dict(), ensure_ascii=False).encode() + b"\n")

    def add(self, record: Record) -> bool:
        """Apply the catalogue and line rules; spool the line. False when the image is left out."""
        image = record.image_name
        labelled = []
        for index, box in enumerate(record.boxes):
            label = self.catalogue.label_for(box.category)
            if box.category not in self.catalogue.categories:
                self.reject(Rejection(record.source, image, "unknown_category", f"category {box.category!r} is not in the catalogue", f"box {index + 1}"))
            elif label is None:
                self.reject(Rejection(record.source, image, "label_excluded", f"category {box.category!r} is excluded by the label mapping", f"box {index + 1}"))
            else:
                labelled.append((label, box))
        problem = None
        if record.image_uri in self._seen_images:
            problem = ("duplicate_image", f"{record.image_uri} is already annotated by an earlier file")
        elif len(labelled) > MAX_BOXES_PER_IMAGE:
            problem = ("too_many_boxes", f"{len(labelled)} boxes; Rekognition accepts at most {MAX_BOXES_PER_IMAGE} per image")
        elif not labelled:
            problem = ("no_valid_boxes", "no box survived the rules")
        line = b""
        if problem is None:
            line = manifest_line(record, labelled, self.catalogue, attribute=self.attribute, job_name=self.job_name).encode()
            if len(line) > MAX_LINE_CHARS and len(line.decode()) > MAX_LINE_CHARS:
                problem = ("line_too_long", f"the manifest line would be {len(line)} characters; the limit is {MAX_LINE_CHARS}")
        if problem is not None:
            self.reject(Rejection(record.source, image, *problem))
            return False
        self.inputs += 1
        self._seen_images.add(record.image_uri)
        group_key = f"pair:{record.pair_id}" if record.pair_id is not None else f"image:{record.image_uri}"
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = len(self._group_keys)
            self._group_keys.append(group_key)
            self._group_images.append(0)
            self._group_labels.append(0)
        mask = 0
        for label, _ in labelled:
            class_id = self.catalogue.class_id(label)
            mask |= 1 << class_id
            self._labels.append(class_id)
        self._group_images[group] += 1
        self._group_labels[group] |= mask
        self._record_group.append(group)
        self._record_bytes.append(len(line) + 1)
        self._label_start.append(len(self._labels))
        self._lines.write(line + b"\n")
        self._origins.write(json.dumps([record.source, image], ensure_ascii=False).encode() + b"\n")
        return True

    # -- output ---------------------------------------------------------------------------
    def finish(self, train: IO[bytes], test: IO[bytes]) -> dict[str, Any]:
        """Split, cap and write both manifests; returns the summary for the report."""
        records = len(self._record_group)
        group_test = choose_test_groups(
            self._group_keys, self._group_images, self._group_labels, test_fraction=self.test_fraction, seed=self.seed
        )
        sides = {0: [], 1: []}
        for index in range(records):
            sides[group_test[self._record_group[index]]].append(index)
        kept: dict[int, set[int]] = {}
        downsampled: dict[str, Any] = {}
        for side, members in sides.items():
            kept[side], note = self._cap(members)
            if note:
                downsampled["test" if side else "train"] = note
        counts = {0: SplitCounts(), 1: SplitCounts()}
        names = self.catalogue.labels
        self._lines.seek(0)
        self._origins.seek(0)
        for index, (line, origin) in enumerate(zip(self._lines, self._origins)):
            side = group_test[self._record_group[index]]
            if index not in kept[side]:
                source, image = json.loads(origin)
                self.reject(Rejection(source, image, "downsampled", f"left out to keep the {'test' if side else 'train'} manifest within its caps"))
                self.inputs -= 1  # counted when it was added
                continue
            (test if side else train).write(line)
            split = counts[side]
            split.images += 1
            split.bytes += len(line)
            for class_id in self._labels[self._label_start[index] : self._label_start[index + 1]]:
                split.boxes[names[class_id]] = split.boxes.get(names[class_id], 0) + 1
        return {
            "annotations_in": self.inputs,
            "lines_out": counts[0].images + counts[1].images,
            "train": counts[0].to_dict(),
            "test": counts[1].to_dict(),
            "groups": {"train": sum(1 for f in group_test if not f), "test": sum(group_test)},
            "test_fraction": {"requested": self.test_fraction, "actual": round(counts[1].images / max(1, counts[0].images + counts[1].images), 4)},
            "seed": self.seed,
            "class_map": {str(i): label for label, i in self.catalogue.class_ids.items()},
            "label_mapping": json.loads(self.catalogue.to_json()),
            "rejections": {"images": self.image_rejections, "boxes": self.box_rejections, "by_reason": dict(sorted(self.rejection_counts.items()))},
            "downsampled": downsampled,
        }

    def _cap(self, members: list[int]) -> tuple[set[int], dict[str, Any] | None]:
        """Keep a side within the line and byte caps, stratified by each image's rarest label."""
        total_bytes = sum(self._record_bytes[i] for i in members)
        if len(members) <= self.max_lines and total_bytes <= self.max_bytes:
            return set(members), None
        label_images: dict[int, int] = {}
        for index in members:
            for class_id in set(self._labels[self._label_start[index] : self._label_start[index + 1]]):
                label_images[class_id] = label_images.get(class_id, 0) + 1
        strata = {}
        keys = {}
        for index in members:
            labels = set(self._labels[self._label_start[index] : self._label_start[index + 1]])
            strata[index] = min(labels, key=lambda c: (label_images[c], c))
            keys[index] = stable_hash(self.seed, self._group_keys[self._record_group[index]] + "|" + str(index))
        cap = min(self.max_lines, len(members))
        while True:
            kept = stratified_keep(strata, keys, members, cap)
            if sum(self._record_bytes[i] for i in kept) <= self.max_bytes or cap <= 1:
                break
            cap = int(cap * self.max_bytes / sum(self._record_bytes[i] for i in kept) * 0.999)
        note = {"from": len(members), "to": len(kept), "max_lines": self.max_lines, "max_bytes": self.max_bytes, "stratified_by": "rarest label in the image"}
        return kept, note

    def iter_rejections(self) -> Iterator[dict[str, Any]]:
        self._rejections.flush()
        self._rejections.seek(0)
        for line in self._rejections:
            yield json.loads(line)
        self._rejections.seek(0, os.SEEK_END)

    def close(self) -> None:
        for handle in (self._lines, self._origins, self._rejections):
            handle.close()
        self._dir.cleanup()

    def __enter__(self) -> "ManifestAssembler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def manifest_problems(summary: dict[str, Any], *, image_prefix: str | None = None, outside: int = 0) -> list[str]:
    """Reasons Rekognition would refuse these manifests, caught before any money is spent."""
    problems = []
    train_labels = set(summary["train"]["boxes"])
    test_labels = set(summary["test"]["boxes"])
    if summary["train"]["images"] == 0:
        problems.append("the training manifest is empty: no image passed the rules (see the report)")
    elif len(train_labels) < 2:
        problems.append(f"Rekognition needs at least 2 labels; the training manifest has {len(train_labels)}: {sorted(train_labels)}")
    if summary["test"]["images"] == 0:
        problems.append("the test manifest is empty: add images (more pair ids) or raise the test fraction")
    if test_labels - train_labels:
        problems.append(f"labels in test but not in train: {sorted(test_labels - train_labels)}")
    for side in ("train", "test"):
        if summary[side]["images"] > MAX_LINES_PER_MANIFEST:
            problems.append(f"the {side} manifest has {summary[side]['images']} lines; the limit is {MAX_LINES_PER_MANIFEST}")
        if summary[side]["bytes"] > MAX_MANIFEST_BYTES:
            problems.append(f"the {side} manifest has {summary[side]['bytes']} bytes; the limit is {MAX_MANIFEST_BYTES}")
    if outside:
        problems.append(f"{outside} records point at images outside {image_prefix}")
    return problems


def write_report(out: IO[str], summary: dict[str, Any], rejections: Iterator[dict[str, Any]]) -> None:
    """report.json: the summary, then every rejection, streamed (the list can be long)."""
    out.write('{"summary": ')
    json.dump(summary, out, indent=2, ensure_ascii=False)
    out.write(',\n "rejected": [')
    for number, rejection in enumerate(rejections):
        out.write(",\n  " if number else "\n  ")
        json.dump(rejection, out, ensure_ascii=False, sort_keys=True)
    out.write("\n ]\n}\n")
