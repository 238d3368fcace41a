"""Partitions: the records still in play spread over files by ranges of their group hash.

Past ONE_PART_RECORDS (see assembler.py) the group split reads the records a part at a time,
each part's entries (group hash, record index, label mask) sorted into groups in memory.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from .runs import RunFile

PENDING_ENTRIES = 1 << 13  # entries waiting, in all, to be written to their partition's file
Part = tuple[Sequence[int], Sequence[int], Sequence[int]]  # group hashes, record indices, label masks


class Partitions:
    """Entries spread over files by ranges of their hash, each range read back sorted."""

    def __init__(self, entries: Iterable[tuple[int, int, int]], parts: int, folder: str) -> None:
        self._files = [RunFile(folder) for _ in range(parts)]
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

    def __iter__(self) -> Iterator[Part]:
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


def groups(hashes: Sequence[int], indices: Sequence[int], masks: Sequence[int]) -> list[list[Any]]:
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
