"""ManifestAssembler: records in, train and test manifests and the report's summary out.

Records (prepared in batches, see lines.py and batches.py) go straight to a ``Spool`` on disk;
``finish`` finds duplicates, splits the lines into train and test by groups and enforces the
manifest caps, a partition at a time.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from itertools import chain, compress, count, islice, repeat
from operator import eq, not_
from typing import IO, Any, Iterable, Iterator

from ..labels import LabelCatalogue
from ..records import Record, Rejection
from ..split import GroupSplitter, stable_hash, stratified_keep
from .batches import Batch
from .lines import DEFAULT_ATTRIBUTE, DEFAULT_JOB_NAME, ManifestLines
from .partitions import Part, Partitions
from .partitions import groups as partition_groups
from .quotas import MAX_LINES_PER_MANIFEST, MAX_MANIFEST_BYTES
from .report import SplitCounts
from .runs import RunFile
from .spool import Spool

# Where finish sends each record: 0 train, 1 test, LEFT_OUT + side when a cap drops it.
LEFT_OUT = 2
DUPLICATE = 4  # a later record for an image an earlier one already annotates
# Records finish groups in memory at once: up to ONE_PART_RECORDS straight from the columns
# (arrays, about 100 bytes a record), else parts of PARTITION_RECORDS read back from files
# (lists of Python ints, about 400 bytes a record): either way a few MB.
ONE_PART_RECORDS = 1 << 15
PARTITION_RECORDS = 1 << 13
MAX_PARTITIONS = 512  # open files while partitioning; past 4M records partitions grow instead
DUPLICATE_FILTER_BITS = 1 << 24  # 2 MB of bits for the duplicate search
PENDING_RECORDS = 1 << 12  # images add() holds before it spools them as one batch


def _selected(values: Iterable[Any], flags: bytes | bytearray, flag: int) -> Iterator[Any]:
    """The values whose flag is ``flag``: loops in C, as finish goes over every record."""
    return compress(values, map(eq, flags, repeat(flag)))


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
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines = ManifestLines(catalogue, attribute=attribute, job_name=job_name, seed=seed)
        self._spool = Spool(self.lines.mask_bytes, workdir)
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
        self._spool.add_rejection(rejection)

    def add(self, record: Record) -> None:
        """Apply the catalogue and line rules to one record, and spool its line."""
        self._pending.add(self.lines.prepare(record))
        if self._pending.images >= PENDING_RECORDS:
            self._flush()

    def accept(self, batch: Batch) -> None:
        """Spool a batch of prepared records (see ``BatchBuilder``)."""
        self._flush()
        for rejection in batch.rejections:
            self.reject(rejection)
        self.inputs += batch.records
        self.records += batch.records
        self._spool.append(batch)

    def _flush(self) -> None:
        if self._pending.images:
            batch, self._pending = self._pending.build(), self.lines.builder()
            self.accept(batch)

    # -- output ---------------------------------------------------------------------------
    def finish(self, train: IO[bytes], test: IO[bytes]) -> dict[str, Any]:
        """Split, cap and write both manifests; returns the summary for the report."""
        self._flush()
        self._spool.flush()
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
        self._write(destination, train, test)
        return self._summary(self._counts(destination), groups, downsampled)

    def _write(self, destination: bytearray, train: IO[bytes], test: IO[bytes]) -> None:
        done = 0
        for chunk in self._spool.line_chunks():
            flags = destination[done : done + len(chunk)]
            train.write(b"".join(_selected(chunk, flags, 0)))
            test.write(b"".join(_selected(chunk, flags, 1)))
            done += len(chunk)

    def _summary(self, counts: list[SplitCounts], groups: dict[str, int], downsampled: dict[str, Any]) -> dict[str, Any]:
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
            hashes = array("Q", b"".join(self._spool.blocks("image_hashes", 8)))
            if len(set(hashes)) == len(hashes):
                return
        bits = bytearray(DUPLICATE_FILTER_BITS // 8)
        low = DUPLICATE_FILTER_BITS - 1
        candidates = set()
        for key in self._spool.values("image_hashes"):
            where = key & low
            bit = 1 << (where & 7)
            if bits[where >> 3] & bit:
                candidates.add(key)
            else:
                bits[where >> 3] |= bit
        del bits
        if candidates:
            seen: set[int] = set()
            for index, key in enumerate(self._spool.values("image_hashes")):
                if key in candidates:
                    if key in seen:
                        destination[index] = DUPLICATE
                    seen.add(key)

    def _split(self, destination: bytearray) -> dict[str, int]:
        """Send whole groups (pair ids) to test, in stable-hash order (see GroupSplitter)."""
        # The splitter sees every group before its first decision. The groups of one partition
        # are kept in memory for the decisions; more partitions' groups wait in a file.
        parts = self._partitions(destination)
        store = RunFile(self._spool.folder) if len(parts) > 1 else None
        kept: list[list[Any]] = []

        def grouped() -> Iterator[list[Any]]:
            for part in parts:
                groups = partition_groups(*part)
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

    def _partitions(self, destination: bytearray) -> list[Part] | Partitions:
        """The records still in play (destination 0) as columns (group hash, record index,
        label mask), split by ranges of the group hash into parts of about PARTITION_RECORDS."""
        parts = 1 if self.records <= ONE_PART_RECORDS else min(MAX_PARTITIONS, -(-self.records // PARTITION_RECORDS))
        keep = list(map(not_, destination)) if DUPLICATE in destination else None
        if parts <= 1:  # one part: straight from the columns, in C
            hashes, masks = array("Q", b"".join(self._spool.blocks("group_hashes", 8))), list(self._spool.masks())
            if keep is None:
                return [(hashes, range(self.records), masks)]
            return [(list(compress(hashes, keep)), list(compress(range(self.records), keep)), list(compress(masks, keep)))]
        entries = zip(self._spool.values("group_hashes"), count(), self._spool.masks())
        return Partitions(entries if keep is None else compress(entries, keep), parts, self._spool.folder)

    def _counts(self, destination: bytearray) -> list[SplitCounts]:
        counts = [SplitCounts(), SplitCounts()]
        names = self.catalogue.labels
        boxes_of: list[Counter[int]] = [Counter(), Counter()]
        done = 0
        labels = self._spool.labels()
        for sizes, boxes in zip(self._spool.column("sizes", "I"), self._spool.column("boxes", "H"), strict=True):
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
        for index, (source, image, _) in enumerate(self._spool.origins()):
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
        sizes = array("I", b"".join(self._spool.blocks("sizes", 4)))
        members = list(_selected(range(len(destination)), destination, side))
        record_labels = {index: set(labels) for index, labels in enumerate(self._spool.per_record_labels()) if destination[index] == side}
        label_images: dict[int, int] = Counter(chain.from_iterable(record_labels.values()))
        strata = {}
        keys = {}
        for index, (_, _, group_key) in enumerate(self._spool.origins()):
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
        for sizes in self._spool.column("sizes", "I"):
            total += sum(_selected(sizes, destination[done : done + len(sizes)], side))
            done += len(sizes)
        return total

    def iter_rejections(self) -> Iterator[dict[str, Any]]:
        self._flush()
        yield from self._spool.rejections()

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> "ManifestAssembler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
