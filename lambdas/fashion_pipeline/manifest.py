"""Ground Truth object-detection manifests for Rekognition Custom Labels.

``ManifestAssembler`` takes records one at a time (from a local conversion or from S3
fragments), applies the label catalogue and the per-line rules, and spools finished lines
to disk; ``finish`` splits them into train and test and enforces the manifest caps. Memory
holds a few integers per record, never the records themselves.

``add`` comes in two halves. ``ManifestLines.prepare`` does what depends on the record alone
(labels, per-line rules, the line itself) and keeps no state, so worker processes can run
it; ``ManifestAssembler.accept`` does the rest, in input order (duplicates, split groups,
spooling).
"""

from __future__ import annotations

import json
import marshal
import operator
import os
import tempfile
from array import array
from dataclasses import dataclass, field
from collections import Counter
from itertools import chain, compress, repeat
from json.encoder import encode_basestring as quote  # how json.dumps(..., ensure_ascii=False) writes a str
from typing import IO, Any, Iterable, Iterator, NamedTuple

from .labels import LabelCatalogue
from .records import Box, Record, Rejection
from .split import stable_hash, stratified_keep, take_test_groups

MAX_BOXES_PER_IMAGE = 50
MAX_LINES_PER_MANIFEST = 250_000
MAX_LINE_CHARS = 100_000
MAX_MANIFEST_BYTES = 1_000_000_000
DEFAULT_ATTRIBUTE = "bounding-box"
DEFAULT_JOB_NAME = "fashion-pipeline"


class Prepared(NamedTuple):
    """A record with the catalogue and the per-line rules applied: what ``accept`` takes."""

    source: str
    image: str  # the image's file name, as reports name it
    image_uri: str
    rejections: tuple[Rejection, ...]  # boxes the catalogue leaves out
    problem: tuple[str, str] | None  # (reason, detail) when the image is left out
    line: bytes  # the manifest line with its newline; empty when there is a problem
    class_ids: tuple[int, ...]  # of the boxes on the line
    group_key: str  # the split group: "pair:ID", else "image:URI"
    group_hash: int  # stable_hash(seed, group_key)


class ManifestLines:
    """The per-record half of assembly: label catalogue, per-line rules and the line itself.

    Lines are written out piece by piece rather than by json.dumps of the nested structure,
    which was the costliest step of assembly. Strings are quoted by json's own function and
    every number is an int, so the bytes are those of json.dumps(structure, separators=(",",
    ":"), ensure_ascii=False); tests/core/test_pipeline.py holds the two side by side.
    """

    def __init__(
        self,
        catalogue: LabelCatalogue,
        *,
        attribute: str = DEFAULT_ATTRIBUTE,
        job_name: str = DEFAULT_JOB_NAME,
        seed: int = 0,
    ) -> None:
        self.catalogue = catalogue
        self.seed = seed
        self._label_of = {category: catalogue.label_for(category) for category in catalogue.categories}
        self._class_ids = catalogue.class_ids
        self._class_map = {i: f'"{i}":{quote(label)}' for label, i in self._class_ids.items()}
        self._size = f',{quote(attribute)}:{{"image_size":[{{"width":'
        self._metadata = f',{quote(attribute + "-metadata")}:{{"objects":['
        self._job = f',"job-name":{quote(job_name)}'

    def line(self, record: Record, labelled: list[tuple[str, Box]]) -> str:
        """One JSON line in the exact shape Rekognition imports (see the Custom Labels guide,
        "Object localization in manifest files")."""
        return self._line(record, [self._class_ids[label] for label, _ in labelled], [box for _, box in labelled])

    def _line(self, record: Record, class_ids: list[int], boxes: list[Box]) -> str:
        annotations = ",".join([
            f'{{"class_id":{cid},"top":{box.top},"left":{box.left},"width":{box.width},"height":{box.height}}}'
            for cid, box in zip(class_ids, boxes)
        ])
        objects = ",".join(['{"confidence":1}'] * len(class_ids))
        class_map = ",".join(map(self._class_map.__getitem__, sorted(set(class_ids))))
        return (
            f'{{"source-ref":{quote(record.image_uri)}'
            f'{self._size}{record.width},"height":{record.height},"depth":{record.depth}}}],"annotations":[{annotations}]}}'
            f'{self._metadata}{objects}],"class-map":{{{class_map}}},"type":"groundtruth/object-detection",'
            f'"human-annotated":"yes","creation-date":{quote(record.created)}{self._job}}}}}'
        )

    def prepare(self, record: Record) -> Prepared:
        """Everything about a record that does not depend on the records before it."""
        image = record.image_name
        class_ids: list[int] = []
        boxes: list[Box] = []
        rejections = []
        for index, box in enumerate(record.boxes):
            if box.category not in self._label_of:
                rejections.append(Rejection(record.source, image, "unknown_category", f"category {box.category!r} is not in the catalogue", f"box {index + 1}"))
            elif (label := self._label_of[box.category]) is None:
                rejections.append(Rejection(record.source, image, "label_excluded", f"category {box.category!r} is excluded by the label mapping", f"box {index + 1}"))
            else:
                class_ids.append(self._class_ids[label])
                boxes.append(box)
        problem = None
        if len(boxes) > MAX_BOXES_PER_IMAGE:
            problem = ("too_many_boxes", f"{len(boxes)} boxes; Rekognition accepts at most {MAX_BOXES_PER_IMAGE} per image")
        elif not boxes:
            problem = ("no_valid_boxes", "no box survived the rules")
        else:
            text = self._line(record, class_ids, boxes)
            line = text.encode()
            if len(line) > MAX_LINE_CHARS and len(text) > MAX_LINE_CHARS:
                problem = ("line_too_long", f"the manifest line would be {len(line)} characters; the limit is {MAX_LINE_CHARS}")
        if problem is not None:
            return Prepared(record.source, image, record.image_uri, tuple(rejections), problem, b"", (), "", 0)
        group_key = f"pair:{record.pair_id}" if record.pair_id is not None else f"image:{record.image_uri}"
        return Prepared(
            record.source, image, record.image_uri, tuple(rejections), None, line + b"\n", tuple(class_ids),
            group_key, stable_hash(self.seed, group_key),
        )


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


LEFT_OUT = 2  # a record's destination when a cap drops it, besides 0 (train) and 1 (test)


def _selected(values: Iterable[Any], flags: bytes | bytearray, flag: int) -> Iterator[Any]:
    """The values whose flag is ``flag``: loops in C, as finish goes over every record."""
    return compress(values, map(operator.eq, flags, repeat(flag)))


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
        self.lines = ManifestLines(catalogue, attribute=attribute, job_name=job_name, seed=seed)
        self._dir = tempfile.TemporaryDirectory(prefix="manifest-", dir=workdir)
        self._lines = open(os.path.join(self._dir.name, "lines"), "w+b")
        self._origins = open(os.path.join(self._dir.name, "origins"), "w+b")  # (source, image, group key) per line
        self._rejections = open(os.path.join(self._dir.name, "rejections"), "w+b")
        # Per record, a few machine integers: its group, its line length, its labels.
        self._record_group = array("I")
        self._record_bytes = array("I")
        self._label_start = array("I", [0])
        self._labels = array("H")
        # Per group (pair id): its index by stable hash, its images and its labels as a bit mask.
        # Keyed by the hash, not the name: two names with one 64-bit hash would share a group,
        # which only changes which side they land on, never that a pair stays together.
        self._groups: dict[int, int] = {}
        self._group_images = array("I")
        self._group_labels: array[int] | list[int] = array("Q") if len(catalogue.labels) <= 64 else []
        # Image URIs seen, as their 64-bit hash() (a fraction of the URIs' memory). Two URIs
        # sharing a hash would report the later as a duplicate: odds of about n^2 / 2^65 for
        # n images, 3e-10 at 100,000 and 3e-8 at a million.
        self._seen_images: set[int] = set()
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
        return self.accept(self.lines.prepare(record))

    def accept(self, prepared: Prepared) -> bool:
        """The order-dependent half of ``add``, for a record prepared by ``ManifestLines``."""
        for rejection in prepared.rejections:
            self.reject(rejection)
        problem = prepared.problem
        image_key = hash(prepared.image_uri)
        if image_key in self._seen_images:
            problem = ("duplicate_image", f"{prepared.image_uri} is already annotated by an earlier file")
        if problem is not None:
            self.reject(Rejection(prepared.source, prepared.image, *problem))
            return False
        self.inputs += 1
        self._seen_images.add(image_key)
        group = self._groups.get(prepared.group_hash)
        if group is None:
            group = self._groups[prepared.group_hash] = len(self._group_images)
            self._group_images.append(0)
            self._group_labels.append(0)
        mask = 0
        for class_id in prepared.class_ids:
            mask |= 1 << class_id
        self._labels.extend(prepared.class_ids)
        self._group_images[group] += 1
        self._group_labels[group] |= mask
        self._record_group.append(group)
        self._record_bytes.append(len(prepared.line))
        self._label_start.append(len(self._labels))
        self._lines.write(prepared.line)
        marshal.dump((prepared.source, prepared.image, prepared.group_key), self._origins)
        return True

    # -- output ---------------------------------------------------------------------------
    def finish(self, train: IO[bytes], test: IO[bytes]) -> dict[str, Any]:
        """Split, cap and write both manifests; returns the summary for the report."""
        order = [self._groups[key] for key in sorted(self._groups)]  # by stable hash, as choose_test_groups
        group_test = take_test_groups(order, self._group_images, self._group_labels, test_fraction=self.test_fraction)
        del order
        # Where each record goes: 0 train, 1 test, or LEFT_OUT + its side when a cap drops it.
        destination = bytearray(map(group_test.__getitem__, self._record_group))
        downsampled: dict[str, Any] = {}
        for side in (0, 1):
            note = self._cap(destination, side)
            if note:
                downsampled["test" if side else "train"] = note
        if downsampled:
            for index, (source, image, _) in enumerate(self._read_origins()):
                if destination[index] >= LEFT_OUT:
                    side = "test" if destination[index] - LEFT_OUT else "train"
                    self.reject(Rejection(source, image, "downsampled", f"left out to keep the {side} manifest within its caps"))
                    self.inputs -= 1  # counted when it was added
        self._lines.seek(0)
        done = 0
        while lines := self._lines.readlines(1 << 18):  # a quarter megabyte of lines at a time
            flags = destination[done : done + len(lines)]
            train.write(b"".join(_selected(lines, flags, 0)))
            test.write(b"".join(_selected(lines, flags, 1)))
            done += len(lines)
        boxes_per_record = map(operator.sub, self._label_start[1:], self._label_start[:-1])
        box_destination = bytes(chain.from_iterable(map(repeat, destination, boxes_per_record)))
        names = self.catalogue.labels
        counts = [
            SplitCounts(
                images=destination.count(side),
                boxes={names[class_id]: n for class_id, n in Counter(_selected(self._labels, box_destination, side)).items()},
                bytes=sum(_selected(self._record_bytes, destination, side)),
            )
            for side in (0, 1)
        ]
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

    def _cap(self, destination: bytearray, side: int) -> dict[str, Any] | None:
        """Keep a side within the line and byte caps, stratified by each image's rarest label.

        Marks the records it leaves out in ``destination``; returns a note for the summary, or
        None when the side is within its caps.
        """
        if destination.count(side) <= self.max_lines and sum(_selected(self._record_bytes, destination, side)) <= self.max_bytes:
            return None
        members = list(_selected(range(len(destination)), destination, side))
        label_images: dict[int, int] = {}
        for index in members:
            for class_id in set(self._labels[self._label_start[index] : self._label_start[index + 1]]):
                label_images[class_id] = label_images.get(class_id, 0) + 1
        strata = {}
        keys = {}
        for index, (_, _, group_key) in enumerate(self._read_origins()):
            if destination[index] == side:
                labels = set(self._labels[self._label_start[index] : self._label_start[index + 1]])
                strata[index] = min(labels, key=lambda c: (label_images[c], c))
                keys[index] = stable_hash(self.seed, group_key + "|" + str(index))
        cap = min(self.max_lines, len(members))
        while True:
            kept = stratified_keep(strata, keys, members, cap)
            if sum(self._record_bytes[i] for i in kept) <= self.max_bytes or cap <= 1:
                break
            cap = int(cap * self.max_bytes / sum(self._record_bytes[i] for i in kept) * 0.999)
        for index in members:
            if index not in kept:
                destination[index] = LEFT_OUT + side
        return {"from": len(members), "to": len(kept), "max_lines": self.max_lines, "max_bytes": self.max_bytes, "stratified_by": "rarest label in the image"}

    def _read_origins(self) -> Iterator[tuple[str, str, str]]:
        """(source, image, group key) of every line, in order."""
        self._origins.seek(0)
        while True:
            try:
                yield marshal.load(self._origins)  # marshal: a private spool, read back by this same Python
            except EOFError:
                return

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
