"""Runs: lists of values for private files, read back by this same Python.

A run is marshal data behind its length, as marshal.load on a file reads it in tiny pieces.
The ``origins`` column of a batch is one run, and the partitions and the group split of
``ManifestAssembler.finish`` spill runs to temporary files.
"""

from __future__ import annotations

import marshal
import os
import tempfile
from typing import IO, Any, Iterator


def pack_run(values: list[Any] | tuple[Any, ...]) -> bytes:
    """One run, read back by ``unpack_runs``."""
    data = marshal.dumps(values)
    return len(data).to_bytes(8, "little") + data


def unpack_runs(spool: IO[bytes]) -> Iterator[Any]:
    """The runs written to ``spool``, in order."""
    spool.seek(0)
    while size := int.from_bytes(spool.read(8), "little"):
        yield marshal.loads(spool.read(size))
    spool.seek(0, os.SEEK_END)


class RunFile:
    """A private temporary file of runs."""

    def __init__(self, folder: str) -> None:
        self._file = tempfile.TemporaryFile(dir=folder)

    def write(self, values: list[Any] | tuple[Any, ...]) -> None:
        self._file.write(pack_run(values))

    def __iter__(self) -> Iterator[Any]:
        return unpack_runs(self._file)

    def close(self) -> None:
        self._file.close()
