"""The assembler's files on disk: one per ``Batch`` column, and one of rejections.

Records go straight to these files as they arrive, so ``ManifestAssembler.finish`` reads them
back a column at a time, a block at a time: memory stays flat however many records there are.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from array import array
from itertools import chain, islice
from typing import Any, Iterator

from ..records import Rejection
from .batches import COLUMNS, Batch
from .runs import unpack_runs

BLOCK_RECORDS = 1 << 14  # records per block when finish streams the columns
LINE_CHUNK_BYTES = 1 << 18  # a quarter megabyte of lines at a time


class Spool:
    """A temporary folder with a file per ``Batch`` column and one of rejections (JSON lines).

    Appending keeps every column in record order; the readers rewind and stream a column.
    """

    def __init__(self, mask_bytes: int, workdir: str | None = None) -> None:
        self.mask_bytes = mask_bytes
        self._dir = tempfile.TemporaryDirectory(prefix="manifest-", dir=workdir)
        self._files = {name: open(os.path.join(self._dir.name, name), "w+b") for name in (*COLUMNS, "rejections")}

    @property
    def folder(self) -> str:
        """Where more private files (see runs.RunFile) may go; removed with the spool."""
        return self._dir.name

    # -- writing --------------------------------------------------------------------------
    def append(self, batch: Batch) -> None:
        files = self._files
        for name in COLUMNS:
            files[name].write(getattr(batch, name))

    def add_rejection(self, rejection: Rejection) -> None:
        self._files["rejections"].write(json.dumps(rejection.to_dict(), ensure_ascii=False).encode() + b"\n")

    def flush(self) -> None:
        for handle in self._files.values():
            handle.flush()

    # -- reading --------------------------------------------------------------------------
    def blocks(self, name: str, itemsize: int) -> Iterator[bytes]:
        """A column's bytes, BLOCK_RECORDS items of ``itemsize`` bytes at a time."""
        spool = self._files[name]
        spool.seek(0)
        while block := spool.read(itemsize * BLOCK_RECORDS):
            yield block

    def column(self, name: str, typecode: str) -> Iterator[array]:
        """An array column, a block at a time."""
        return (array(typecode, block) for block in self.blocks(name, array(typecode).itemsize))

    def values(self, name: str) -> Iterator[int]:
        """A column of 64-bit integers, value by value."""
        return chain.from_iterable(self.column(name, "Q"))

    def masks(self) -> Iterator[int]:
        """Each record's label mask."""
        width = self.mask_bytes
        if width == 8:  # up to 64 labels: read as machine integers, in C
            return self.values("masks")
        unpack = struct.Struct(f"{width}s").iter_unpack
        return (int.from_bytes(mask, "little") for block in self.blocks("masks", width) for (mask,) in unpack(block))

    def labels(self) -> Iterator[int]:
        """Every record's class ids, record after record."""
        return chain.from_iterable(self.column("labels", "H"))

    def per_record_labels(self) -> Iterator[list[int]]:
        """Each record's class ids, in record order."""
        labels = self.labels()
        for boxes in self.column("boxes", "H"):
            for number in boxes:
                yield list(islice(labels, number))

    def origins(self) -> Iterator[tuple[str, str, str]]:
        """(source, image, group key) of every line, in order."""
        for run in unpack_runs(self._files["origins"]):
            yield from run

    def line_chunks(self) -> Iterator[list[bytes]]:
        """The manifest lines (each with its newline), LINE_CHUNK_BYTES or so at a time."""
        lines = self._files["lines"]
        lines.seek(0)
        while chunk := lines.readlines(LINE_CHUNK_BYTES):
            yield chunk

    def rejections(self) -> Iterator[dict[str, Any]]:
        spool = self._files["rejections"]
        spool.flush()
        spool.seek(0)
        for line in spool:
            yield json.loads(line)
        spool.seek(0, os.SEEK_END)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._dir.cleanup()
