"""Prepared records packed into a ``Batch``: columns of bytes, in input order."""

from __future__ import annotations

import hashlib
from array import array
from typing import TYPE_CHECKING, NamedTuple

from ..records import Rejection
from .runs import pack_run

if TYPE_CHECKING:
    from .lines import Prepared

# The columns of Batch that go to spool files (and shards) as they are, in this order.
COLUMNS = ("lines", "image_hashes", "group_hashes", "masks", "sizes", "boxes", "labels", "origins")


def image_hash(image_uri: str) -> int:
    """A 64-bit digest of an image URI that every process agrees on (duplicates are found by it)."""
    return int.from_bytes(hashlib.blake2b(image_uri.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")



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
    origins: bytes  # (source, image, group key) per line, as one run (see runs.pack_run)


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
            self._sizes.tobytes(), self._boxes.tobytes(), self._labels.tobytes(), pack_run(self._origins) if self._origins else b"",
        )
