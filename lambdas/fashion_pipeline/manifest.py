"""Ground Truth object-detection manifests for Rekognition Custom Labels.

``ManifestAssembler`` takes records (from a local conversion or from S3 fragments), applies
the label catalogue and the per-line rules, and spools finished lines and a few columns of
integers per line to disk; ``finish`` finds duplicates, splits the lines into train and test
by groups and enforces the manifest caps, a partition at a time. Memory stays flat in the
number of records: about one byte per record besides a few fixed-size buffers.

Work comes in two halves. ``ManifestLines.prepare`` does what depends on one record alone
(labels, per-line rules, the line itself) and keeps no state, so worker processes can run
it, and a ``BatchBuilder`` packs prepared records into a ``Batch``; ``ManifestAssembler``
takes batches in input order (``accept``), or records one by one (``add``).
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import struct
import tempfile
from array import array
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, compress, count, islice, repeat
from operator import eq, not_
from json.encoder import encode_basestring as quote  # how json.dumps(..., ensure_ascii=False) writes a str
from typing import IO, Any, Iterable, Iterator, NamedTuple, Sequence

from .labels import MAX_LABEL_CHARS, LabelCatalogue
from .records import Box, Record, Rejection
from .split import GroupSplitter, stable_hash, stratified_keep

# Rekognition Custom Labels limits: "Guidelines and quotas"
# (https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/limits.html) and "Validation
# rules for manifest files" (https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/md-create-manifest-file-validation-rules.html).
MAX_BOXES_PER_IMAGE = 50
MAX_LINES_PER_MANIFEST = 250_000
MAX_LINE_CHARS = 100_000
MAX_MANIFEST_BYTES = 1_000_000_000
MAX_LABELS_PER_MANIFEST = 250  # "Maximum number of unique labels per manifest is 250."
# The validation rules say "Lower boundary on labels: >=2" for every manifest, but the quotas
# tell the model types apart ("Minimum number of unique labels per Object Location (detection)
# dataset is 1", 2 for classification), ERROR_MANIFEST_TOO_FEW_LABELS defers to them ("The
# minimum depends on if the dataset trains/tests a model to detect image-level labels
# (classification) or if the model detects object locations", tm-debugging-aggregate-errors.html)
# and "Purposing datasets" says why (md-dataset-purpose.html): "To find object locations, your
# datasets needs at least one label. During model training, a further label is automatically
# created that represents the area outside of the bounding boxes". So a detector of a single
# label (every garment mapped to one) is valid.
MIN_LABELS = 1
# Images per object-detection dataset, (train, test), by region (None: every other region):
# "Maximum number of images per Object Location (detection) dataset is 250,000. The limit for
# Asia Pacific (Mumbai) and Europe (London) AWS Regions is 28,000 images" (7,000 for testing),
# https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/limits.html
MAX_IMAGES_BY_REGION: dict[str | None, tuple[int, int]] = {
    None: (250_000, 250_000),
    "ap-south-1": (28_000, 7_000),  # Asia Pacific (Mumbai)
    "eu-west-2": (28_000, 7_000),  # Europe (London)
}
DEFAULT_ATTRIBUTE = "bounding-box"
DEFAULT_JOB_NAME = "fashion-pipeline"
_UNKNOWN = object()  # a category the catalogue has never heard of (None: one it excludes)


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
        self.catalogue = catalogue
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


def image_hash(image_uri: str) -> int:
    """A 64-bit digest of an image URI that every process agrees on (duplicates are found by it)."""
    return int.from_bytes(hashlib.blake2b(image_uri.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


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


# Where finish sends each record: 0 train, 1 test, LEFT_OUT + side when a cap drops it.
LEFT_OUT = 2
DUPLICATE = 4  # a later record for an image an earlier one already annotates
# Records finish groups in memory at once: up to ONE_PART_RECORDS straight from the columns
# (arrays, about 100 bytes a record), else parts of PARTITION_RECORDS read back from files
# (lists of Python ints, about 400 bytes a record): either way a few MB.
ONE_PART_RECORDS = 1 << 15
PARTITION_RECORDS = 1 << 13
MAX_PARTITIONS = 512  # open files while partitioning; past 4M records partitions grow instead
PENDING_ENTRIES = 1 << 13  # entries waiting, in all, to be written to their partition's file
DUPLICATE_FILTER_BITS = 1 << 24  # 2 MB of bits for the duplicate search
BLOCK_RECORDS = 1 << 14  # records per block when finish streams the columns
_Part = tuple[Sequence[int], Sequence[int], Sequence[int]]  # group hashes, record indices, label masks
# The spool files a batch adds to, one per column of Batch.
_COLUMNS = ("lines", "image_hashes", "group_hashes", "masks", "sizes", "boxes", "labels", "origins")


def _selected(values: Iterable[Any], flags: bytes | bytearray, flag: int) -> Iterator[Any]:
    """The values whose flag is ``flag``: loops in C, as finish goes over every record."""
    return compress(values, map(eq, flags, repeat(flag)))


class Batch(NamedTuple):
    """Prepared records of one stretch of input, packed for ``ManifestAssembler.accept``.

    Columns of bytes rather than objects: a batch crosses a pipe from a worker process in
    one piece, and the assembler appends each column to its spool file as it is.
    """

    rejections: tuple[Rejection, ...]  # everything the batch leaves out, in input order
    images: int  # input images the batch stands for (accepted and rejected)
    records: int  # lines in the batch
    lines: bytes  # the manifest lines, each with its newline
    image_hashes: bytes  # array("Q"): image_hash() of each line's image URI, to find duplicates
    group_hashes: bytes  # array("Q"): Prepared.group_hash of each line
    masks: bytes  # each line's labels as a bit mask, ManifestLines.mask_bytes each
    sizes: bytes  # array("I"): bytes per line
    boxes: bytes  # array("H"): boxes per line
    labels: bytes  # array("H"): the class ids of every line's boxes, line after line
    origins: bytes  # (source, image, group key) per line, as one run (see _run)


class BatchBuilder:
    """Collects prepared records (and rejections) into a ``Batch``, in input order."""

    def __init__(self, mask_bytes: int) -> None:
        self._mask_bytes = mask_bytes
        self.rejections: list[Rejection] = []
        self.images = 0
        self._lines: list[bytes] = []
        self._image_hashes = array("Q")
        self._group_hashes = array("Q")
        self._masks: list[bytes] = []
        self._sizes = array("I")
        self._boxes = array("H")
        self._labels = array("H")
        self._origins: list[tuple[str, str, str]] = []

    def reject(self, rejection: Rejection) -> None:
        """Something left out: an input image (item None), or a box of one."""
        self.images += rejection.item is None
        self.rejections.append(rejection)

    def add(self, prepared: Prepared) -> None:
        """One image's outcome: its line, or the reason it has none."""
        source, image, image_uri, rejections, problem, line, class_ids, mask, group_key, group_hash = prepared
        self.images += 1
        self.rejections.extend(rejections)
        if problem is not None:
            self.rejections.append(Rejection(source, image, *problem))
            return
        self._lines.append(line)
        # A digest, not hash(): batches are also built by other processes (forked workers,
        # and the Lambdas that write shards, see shards.py), which hash() would not agree with.
        self._image_hashes.append(image_hash(image_uri))
        self._group_hashes.append(group_hash)
        self._masks.append(mask.to_bytes(self._mask_bytes, "little"))
        self._sizes.append(len(line))
        self._boxes.append(len(class_ids))
        self._labels.extend(class_ids)
        self._origins.append((source, image, group_key))

    def build(self) -> Batch:
        return Batch(
            tuple(self.rejections), self.images, len(self._lines), b"".join(self._lines),
            self._image_hashes.tobytes(), self._group_hashes.tobytes(), b"".join(self._masks),
            self._sizes.tobytes(), self._boxes.tobytes(), self._labels.tobytes(), _run(self._origins) if self._origins else b"",
        )


@dataclass
class SplitCounts:
    images: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "boxes": dict(sorted(self.boxes.items())), "bytes": self.bytes}


class ManifestAssembler:
    """Streams records into train/test manifests with a report of everything left out.

    Records arrive in batches and go straight to spool files on disk, one file per column of
    ``Batch``. ``finish`` then finds duplicates (with a set, or past ONE_PART_RECORDS with a
    fixed bitmap) and the split groups (in one part, or in hash-range partitions of
    PARTITION_RECORDS), so memory stays flat however many records there are: about one byte
    per record (where each one goes) besides a part's worth of entries.
    """

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
        self._spools = {
            name: open(os.path.join(self._dir.name, name), "w+b")
            for name in (*_COLUMNS, "rejections")
        }
        self._pending = self.lines.builder()  # records from add(), accepted a batch at a time
        self.records = 0  # lines spooled (duplicates among them are found by finish)
        self.inputs = 0
        self.rejection_counts: dict[str, int] = {}
        self.box_rejections = 0
        self.image_rejections = 0

    # -- intake ---------------------------------------------------------------------------
    def reject(self, rejection: Rejection) -> None:
        """Record something left out (an image, or a box of an image)."""
        self._flush()  # after what add() holds, so the report keeps the order of the calls
        if rejection.item is None:
            self.inputs += 1
        self._report(rejection)

    def _report(self, rejection: Rejection) -> None:
        if rejection.item is None:
            self.image_rejections += 1
        else:
            self.box_rejections += 1
        self.rejection_counts[rejection.reason] = self.rejection_counts.get(rejection.reason, 0) + 1
        self._spools["rejections"].write(json.dumps(rejection.to_dict(), ensure_ascii=False).encode() + b"\n")

    def add(self, record: Record) -> None:
        """Apply the catalogue and line rules to one record, and spool its line."""
        self._pending.add(self.lines.prepare(record))
        if self._pending.images >= BLOCK_RECORDS // 4:
            self._flush()

    def accept(self, batch: Batch) -> None:
        """Spool a batch of prepared records (see ``BatchBuilder``)."""
        self._flush()
        for rejection in batch.rejections:
            self.reject(rejection)
        self.inputs += batch.records
        self.records += batch.records
        spools = self._spools
        for name in _COLUMNS:
            spools[name].write(getattr(batch, name))

    def _flush(self) -> None:
        if self._pending.images:
            batch, self._pending = self._pending.build(), self.lines.builder()
            self.accept(batch)

    # -- output ---------------------------------------------------------------------------
    def finish(self, train: IO[bytes], test: IO[bytes]) -> dict[str, Any]:
        """Split, cap and write both manifests; returns the summary for the report."""
        self._flush()
        for spool in self._spools.values():
            spool.flush()
        destination = bytearray(self.records)
        self._mark_duplicates(destination)
        groups = self._split(destination)
        downsampled: dict[str, Any] = {}
        for side in (0, 1):
            note = self._cap(destination, side)
            if note:
                downsampled["test" if side else "train"] = note
        if downsampled or DUPLICATE in destination:
            self._report_left_out(destination)
        lines = self._spools["lines"]
        lines.seek(0)
        done = 0
        while chunk := lines.readlines(1 << 18):  # a quarter megabyte of lines at a time
            flags = destination[done : done + len(chunk)]
            train.write(b"".join(_selected(chunk, flags, 0)))
            test.write(b"".join(_selected(chunk, flags, 1)))
            done += len(chunk)
        counts = self._counts(destination)
        return {
            "annotations_in": self.inputs,
            "lines_out": counts[0].images + counts[1].images,
            "train": counts[0].to_dict(),
            "test": counts[1].to_dict(),
            "groups": groups,
            "test_fraction": {"requested": self.test_fraction, "actual": round(counts[1].images / max(1, counts[0].images + counts[1].images), 4)},
            "seed": self.seed,
            "class_map": {str(i): label for label, i in self.catalogue.class_ids.items()},
            "label_mapping": json.loads(self.catalogue.to_json()),
            "rejections": {"images": self.image_rejections, "boxes": self.box_rejections, "by_reason": dict(sorted(self.rejection_counts.items()))},
            "downsampled": downsampled,
        }

    def _mark_duplicates(self, destination: bytearray) -> None:
        """The first record of an image stays; later ones are marked DUPLICATE.

        A bitmap of fixed size, indexed by hash bits, finds the hashes it meets twice (true
        duplicates, and a few that share a bit); only those are looked at again, exactly.
        """
        if self.records <= ONE_PART_RECORDS:  # few enough to ask a set, in C, whether any hash repeats
            hashes = array("Q", b"".join(self._blocks("image_hashes", 8)))
            if len(set(hashes)) == len(hashes):
                return
        bits = bytearray(DUPLICATE_FILTER_BITS // 8)
        low = DUPLICATE_FILTER_BITS - 1
        candidates = set()
        for key in self._values("image_hashes"):
            where = key & low
            bit = 1 << (where & 7)
            if bits[where >> 3] & bit:
                candidates.add(key)
            else:
                bits[where >> 3] |= bit
        del bits
        if candidates:
            seen: set[int] = set()
            for index, key in enumerate(self._values("image_hashes")):
                if key in candidates:
                    if key in seen:
                        destination[index] = DUPLICATE
                    seen.add(key)

    def _split(self, destination: bytearray) -> dict[str, int]:
        """Send whole groups (pair ids) to test, in stable-hash order (see GroupSplitter)."""
        # The splitter sees every group before its first decision. The groups of one partition
        # are kept in memory for the decisions; more partitions' groups wait in a file.
        parts = self._partitions(destination)
        store = _RunFile(self._dir.name) if len(parts) > 1 else None
        kept: list[list[Any]] = []

        def grouped() -> Iterator[list[Any]]:
            for part in parts:
                groups = _groups(*part)
                if store is None:
                    kept.extend(groups)
                else:
                    store.write(groups)
                yield from groups

        splitter = GroupSplitter(((len(members), mask) for mask, members in grouped()), test_fraction=self.test_fraction)
        test_groups = train_groups = 0
        for mask, members in kept if store is None else chain.from_iterable(store):
            if not splitter.done and splitter.take(len(members), mask):
                test_groups += 1
                for index in members:
                    destination[index] = 1
            else:
                train_groups += 1
        return {"train": train_groups, "test": test_groups}

    def _partitions(self, destination: bytearray) -> list[_Part] | _Partitions:
        """The records still in play (destination 0) as columns (group hash, record index,
        label mask), split by ranges of the group hash into parts of about PARTITION_RECORDS."""
        parts = 1 if self.records <= ONE_PART_RECORDS else min(MAX_PARTITIONS, -(-self.records // PARTITION_RECORDS))
        keep = list(map(not_, destination)) if DUPLICATE in destination else None
        if parts <= 1:  # one part: straight from the columns, in C
            hashes, masks = array("Q", b"".join(self._blocks("group_hashes", 8))), list(self._masks())
            if keep is None:
                return [(hashes, range(self.records), masks)]
            return [(list(compress(hashes, keep)), list(compress(range(self.records), keep)), list(compress(masks, keep)))]
        entries = zip(self._values("group_hashes"), count(), self._masks())
        return _Partitions(entries if keep is None else compress(entries, keep), parts, self._dir.name)

    def _values(self, column: str) -> Iterator[int]:
        """A column of 64-bit integers, value by value."""
        return chain.from_iterable(self._column(column, "Q"))

    def _masks(self) -> Iterator[int]:
        width = self.lines.mask_bytes
        if width == 8:  # up to 64 labels: read as machine integers, in C
            return self._values("masks")
        unpack = struct.Struct(f"{width}s").iter_unpack
        return (int.from_bytes(mask, "little") for block in self._blocks("masks", width) for (mask,) in unpack(block))

    def _blocks(self, name: str, itemsize: int) -> Iterator[bytes]:
        spool = self._spools[name]
        spool.seek(0)
        while block := spool.read(itemsize * BLOCK_RECORDS):
            yield block

    def _column(self, name: str, typecode: str) -> Iterator[array]:
        """A spooled array column, a block at a time."""
        return (array(typecode, block) for block in self._blocks(name, array(typecode).itemsize))

    def _labels(self) -> Iterator[int]:
        """Every record's class ids, record after record."""
        return chain.from_iterable(self._column("labels", "H"))

    def _per_record_labels(self) -> Iterator[list[int]]:
        """Each record's class ids, in record order."""
        labels = self._labels()
        for boxes in self._column("boxes", "H"):
            for number in boxes:
                yield list(islice(labels, number))

    def _counts(self, destination: bytearray) -> list[SplitCounts]:
        counts = [SplitCounts(), SplitCounts()]
        names = self.catalogue.labels
        boxes_of: list[Counter[int]] = [Counter(), Counter()]
        done = 0
        labels = self._labels()
        for sizes, boxes in zip(self._column("sizes", "I"), self._column("boxes", "H"), strict=True):
            flags = destination[done : done + len(sizes)]
            done += len(sizes)
            block = array("H", islice(labels, sum(boxes)))  # these records' class ids
            box_flags = bytes(chain.from_iterable(map(repeat, flags, boxes)))
            for side in (0, 1):
                counts[side].images += flags.count(side)
                counts[side].bytes += sum(_selected(sizes, flags, side))
                boxes_of[side].update(_selected(block, box_flags, side))
        for side in (0, 1):
            counts[side].boxes = {names[class_id]: n for class_id, n in boxes_of[side].items()}
        return counts

    def _report_left_out(self, destination: bytearray) -> None:
        """Report the duplicates and the down-sampled records (both counted as inputs already)."""
        for index, (source, image, _) in enumerate(self._read_origins()):
            where = destination[index]
            if where == DUPLICATE:
                self._report(Rejection(source, image, "duplicate_image", f"{image} is already annotated by an earlier file"))
            elif where >= LEFT_OUT:
                side = "test" if where - LEFT_OUT else "train"
                self._report(Rejection(source, image, "downsampled", f"left out to keep the {side} manifest within its caps"))

    def _cap(self, destination: bytearray, side: int) -> dict[str, Any] | None:
        """Keep a side within the line and byte caps, stratified by each image's rarest label.

        Marks the records it leaves out in ``destination``; returns a note for the summary, or
        None when the side is within its caps. Only here does memory grow with the records
        (a few integers per member of the side): a side over its caps is the rare case.
        """
        if destination.count(side) <= self.max_lines and self._side_bytes(destination, side) <= self.max_bytes:
            return None
        sizes = array("I", b"".join(self._blocks("sizes", 4)))
        members = list(_selected(range(len(destination)), destination, side))
        record_labels = {index: set(labels) for index, labels in enumerate(self._per_record_labels()) if destination[index] == side}
        label_images: dict[int, int] = Counter(chain.from_iterable(record_labels.values()))
        strata = {}
        keys = {}
        for index, (_, _, group_key) in enumerate(self._read_origins()):
            if destination[index] == side:
                strata[index] = min(record_labels[index], key=lambda c: (label_images[c], c))
                keys[index] = stable_hash(self.seed, group_key + "|" + str(index))
        cap = min(self.max_lines, len(members))
        while True:
            kept = stratified_keep(strata, keys, members, cap)
            if sum(sizes[i] for i in kept) <= self.max_bytes or cap <= 1:
                break
            cap = int(cap * self.max_bytes / sum(sizes[i] for i in kept) * 0.999)
        for index in members:
            if index not in kept:
                destination[index] = LEFT_OUT + side
        return {"from": len(members), "to": len(kept), "max_lines": self.max_lines, "max_bytes": self.max_bytes, "stratified_by": "rarest label in the image"}

    def _side_bytes(self, destination: bytearray, side: int) -> int:
        total = done = 0
        for sizes in self._column("sizes", "I"):
            total += sum(_selected(sizes, destination[done : done + len(sizes)], side))
            done += len(sizes)
        return total

    def _read_origins(self) -> Iterator[tuple[str, str, str]]:
        """(source, image, group key) of every line, in order."""
        for run in _runs(self._spools["origins"]):
            yield from run

    def iter_rejections(self) -> Iterator[dict[str, Any]]:
        self._flush()
        spool = self._spools["rejections"]
        spool.flush()
        spool.seek(0)
        for line in spool:
            yield json.loads(line)
        spool.seek(0, os.SEEK_END)

    def close(self) -> None:
        for handle in self._spools.values():
            handle.close()
        self._dir.cleanup()

    def __enter__(self) -> "ManifestAssembler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(values: list[Any] | tuple[Any, ...]) -> bytes:
    """Values for a private spool, read back by this same Python (see _runs): marshal, behind
    its length, as marshal.load on a file reads it in tiny pieces."""
    data = marshal.dumps(values)
    return len(data).to_bytes(8, "little") + data


def _runs(spool: IO[bytes]) -> Iterator[Any]:
    """The runs written to ``spool``, in order."""
    spool.seek(0)
    while size := int.from_bytes(spool.read(8), "little"):
        yield marshal.loads(spool.read(size))
    spool.seek(0, os.SEEK_END)


class _RunFile:
    """A private file of runs (see _run)."""

    def __init__(self, folder: str) -> None:
        self._file = tempfile.TemporaryFile(dir=folder)

    def write(self, values: list[Any] | tuple[Any, ...]) -> None:
        self._file.write(_run(values))

    def __iter__(self) -> Iterator[Any]:
        return _runs(self._file)

    def close(self) -> None:
        self._file.close()


class _Partitions:
    """Entries spread over files by ranges of their hash, each range read back sorted."""

    def __init__(self, entries: Iterable[tuple[int, int, int]], parts: int, folder: str) -> None:
        self._files = [_RunFile(folder) for _ in range(parts)]
        # Entries wait in short runs per range (PENDING_ENTRIES in all), then go to its file.
        pending: list[tuple[list[int], list[int], list[int]]] = [([], [], []) for _ in range(parts)]
        run = max(64, PENDING_ENTRIES // parts)
        for key, index, mask in entries:
            part = (key * parts) >> 64  # by range: partition order is hash order
            keys, indices, masks = pending[part]
            keys.append(key)
            indices.append(index)
            masks.append(mask)
            if len(keys) >= run:
                self._spill(part, pending[part])
        for part, columns in enumerate(pending):
            self._spill(part, columns)

    def _spill(self, part: int, columns: tuple[list[int], list[int], list[int]]) -> None:
        if columns[0]:
            self._files[part].write(columns)
            for column in columns:
                column.clear()

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[_Part]:
        for runs in self._files:
            hashes: list[int] = []
            indices: list[int] = []
            masks: list[int] = []
            for run_hashes, run_indices, run_masks in runs:
                hashes += run_hashes
                indices += run_indices
                masks += run_masks
            yield hashes, indices, masks

    def __del__(self) -> None:
        for runs in self._files:
            runs.close()


def _groups(hashes: Sequence[int], indices: Sequence[int], masks: Sequence[int]) -> list[list[Any]]:
    """The groups of a part, in hash order: [label mask, member record indices] each, the
    members in record order."""
    groups: list[list[Any]] = []
    group: list[Any] = []
    previous = None
    for position in sorted(range(len(hashes)), key=hashes.__getitem__):  # stable: equal hashes keep record order
        key = hashes[position]
        if key == previous:
            group[0] |= masks[position]
            group[1].append(indices[position])
        else:
            group = [masks[position], [indices[position]]]
            groups.append(group)
            previous = key
    return groups


def manifest_problems(
    summary: dict[str, Any], *, image_prefix: str | None = None, outside: int = 0, region: str | None = None
) -> list[str]:
    """Reasons Rekognition would refuse these manifests, caught before any money is spent.

    ``region`` picks the image caps of MAX_IMAGES_BY_REGION (None, or a region not listed: the
    caps of most regions)."""
    problems = []
    train_labels = set(summary["train"]["boxes"])
    test_labels = set(summary["test"]["boxes"])
    if summary["train"]["images"] == 0:
        problems.append("the training manifest is empty: no image passed the rules (see the report)")
    elif len(train_labels) < MIN_LABELS:
        problems.append(f"the training manifest has {len(train_labels)} labels; Rekognition needs at least {MIN_LABELS}")
    # A test fraction of 0 asks for no test set (Rekognition can split one off the training set).
    if summary["test"]["images"] == 0 and summary["test_fraction"]["requested"]:
        problems.append("the test manifest is empty: add images (more pair ids) or raise the test fraction")
    if test_labels - train_labels:
        problems.append(f"labels in test but not in train: {sorted(test_labels - train_labels)}")
    caps = MAX_IMAGES_BY_REGION.get(region, MAX_IMAGES_BY_REGION[None])
    for side, cap in zip(("train", "test"), caps):
        counts = summary[side]
        if counts["images"] > MAX_LINES_PER_MANIFEST:
            problems.append(f"the {side} manifest has {counts['images']} lines; the limit is {MAX_LINES_PER_MANIFEST}")
        elif counts["images"] > cap:
            problems.append(f"the {side} manifest has {counts['images']} images; Rekognition accepts at most {cap} in {region}")
        if counts["bytes"] > MAX_MANIFEST_BYTES:
            problems.append(f"the {side} manifest has {counts['bytes']} bytes; the limit is {MAX_MANIFEST_BYTES}")
        if len(counts["boxes"]) > MAX_LABELS_PER_MANIFEST:
            problems.append(
                f"the {side} manifest has {len(counts['boxes'])} labels; Rekognition accepts at most {MAX_LABELS_PER_MANIFEST}"
                " per manifest (merge or exclude some with a label mapping)"
            )
    too_long = sorted(label for label in train_labels | test_labels if len(label) > MAX_LABEL_CHARS)
    if too_long:
        problems.append(f"label names longer than {MAX_LABEL_CHARS} characters: {too_long}")
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
