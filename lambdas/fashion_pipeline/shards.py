"""Shards: assembly split into pieces that many workers write and one merge reads.

Assembly reads every fragment (the records of one annotation object) and every report (what
conversion left out of it). With one object per image that is two small reads per image, so
the reading is spread over workers (the Distributed Map's children, see
``lambdas/workflow/assembly.py``): each is given some fragment keys, applies the per-record
half of assembly (``ManifestLines.prepare``: catalogue and per-line rules) and writes one
shard. The merge then feeds every shard's segments to a ``ManifestAssembler`` in the order the
sequential assembly read them: fragments by key, then reports by key. The manifests and the
report are therefore the same bytes whatever the batching, the order children finish in, or
the number of workers.

A shard is a file of segments, one per fragment and one per report, each a JSON header line
followed by the byte columns of its ``Batch`` (a report's segment has its rejections and no
columns). The first line says which keys the shard covers, so the merge can read shards whose
key ranges do not overlap one after the other (the usual case: the Distributed Map batches
the listing in order) and merges only the shards whose ranges do overlap. A key found in two
shards (left by an earlier attempt with other batch boundaries) is taken from the newer shard.

The ``origins`` column is marshal data (see ``manifest.runs.pack_run``), read back by the same Python
that wrote it: the children and the merge are functions of one deployment, on one runtime.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator

from .manifest import COLUMNS, Batch, BatchBuilder, ManifestAssembler, ManifestLines
from .records import Record, Rejection

FORMAT = "fashion-pipeline-shard/1"
FRAGMENT, REPORT = "fragment", "report"
OUTSIDE_DATASET = "image_outside_dataset"


def fragment_batch(lines: ManifestLines, key: str, body: bytes, image_prefix: str) -> tuple[Batch, int]:
    """A fragment's records, prepared for the merge; with the number of records whose image
    is not under ``image_prefix`` (each one rejected, as the sequential assembly does)."""
    builder: BatchBuilder = lines.builder()
    outside = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        record = Record.from_dict(json.loads(line))
        if not record.image_uri.startswith(image_prefix):
            outside += 1
            builder.reject(Rejection(record.source, record.image_name, OUTSIDE_DATASET, f"{record.image_uri} is not under {image_prefix}"))
            continue
        builder.add(lines.prepare(record))
    return builder.build(), outside


def report_rejections(body: bytes) -> list[dict[str, Any]]:
    """The rejections a conversion report carries (its ``rejected`` list)."""
    return json.loads(body).get("rejected", [])


class ShardWriter:
    """Writes one shard: its fragments' segments in key order, then its reports' in key order.

    ``fragments`` and ``reports`` bound the keys the shard may hold (its first line says so,
    for the merge); a segment out of order or out of bounds is refused.
    """

    def __init__(self, out: IO[bytes], *, fragments: list[str], reports: list[str]) -> None:
        self._out = out
        self._bounds = {FRAGMENT: _range(sorted(fragments)), REPORT: _range(sorted(reports))}
        self._last: dict[str, str | None] = {FRAGMENT: None, REPORT: None}
        head = {"format": FORMAT, "fragments": self._bounds[FRAGMENT], "reports": self._bounds[REPORT]}
        out.write(json.dumps(head, ensure_ascii=False).encode() + b"\n")

    def _next(self, kind: str, key: str) -> None:
        bounds, last = self._bounds[kind], self._last[kind]
        if bounds is None or not bounds[0] <= key <= bounds[1]:
            raise ValueError(f"{kind} {key!r} is outside the shard's keys {bounds}")
        if (last is not None and key <= last) or (kind == FRAGMENT and self._last[REPORT] is not None):
            raise ValueError(f"shard segments must come fragments first, each kind in key order: {kind} {key!r} after {last!r}")
        self._last[kind] = key

    def fragment(self, key: str, batch: Batch, outside: int) -> None:
        self._next(FRAGMENT, key)
        columns = [getattr(batch, name) for name in COLUMNS]
        header = {
            "kind": FRAGMENT, "key": key, "records": batch.records, "images": batch.images, "outside": outside,
            "columns": [len(column) for column in columns], "rejections": [r.to_dict() for r in batch.rejections],
        }
        self._out.write(json.dumps(header, ensure_ascii=False).encode() + b"\n")
        for column in columns:
            self._out.write(column)

    def report(self, key: str, rejections: list[dict[str, Any]]) -> None:
        self._next(REPORT, key)
        header = {"kind": REPORT, "key": key, "rejections": rejections}
        self._out.write(json.dumps(header, ensure_ascii=False).encode() + b"\n")


def _range(keys: list[str]) -> list[str] | None:
    return [keys[0], keys[-1]] if keys else None


@dataclass
class Shard:
    """A shard file the merge reads; ``order`` ranks shards by age (higher: newer)."""

    path: str
    order: tuple[Any, ...]
    fragments: list[str] | None = None  # [first, last] key
    reports: list[str] | None = None

    @classmethod
    def open(cls, path: str, order: tuple[Any, ...]) -> "Shard":
        with open(path, "rb") as handle:
            head = json.loads(handle.readline())
        if head.get("format") != FORMAT:
            raise ValueError(f"{path}: not a shard of format {FORMAT} (found {head.get('format')!r})")
        return cls(path, order, head["fragments"], head["reports"])

    def segments(self, kind: str) -> Iterator[tuple[str, dict[str, Any], list[bytes]]]:
        """(key, header, columns) of each segment of ``kind``, in key order."""
        with open(self.path, "rb") as handle:
            handle.readline()
            while line := handle.readline():
                header = json.loads(line)
                columns = [handle.read(size) for size in header.get("columns", ())]
                if header["kind"] == kind:
                    yield header["key"], header, columns


def _groups(shards: list[Shard], kind: str) -> list[list[Shard]]:
    """Shards with segments of ``kind``, in key order, those whose key ranges overlap grouped."""
    ranged = sorted((s for s in shards if getattr(s, kind + "s")), key=lambda s: getattr(s, kind + "s")[0])
    groups: list[list[Shard]] = []
    last = None
    for shard in ranged:
        first, end = getattr(shard, kind + "s")
        if groups and last is not None and first <= last:
            groups[-1].append(shard)
            last = max(last, end)
        else:
            groups.append([shard])
            last = end
    return groups


def _in_order(shards: list[Shard], kind: str) -> Iterator[tuple[str, dict[str, Any], list[bytes]]]:
    """Every segment of ``kind`` once, in key order; of a key in several shards, the newest's."""
    for group in _groups(shards, kind):
        if len(group) == 1:
            yield from group[0].segments(kind)
            continue
        streams = [((key, -rank, header, columns) for key, header, columns in shard.segments(kind))
                   for rank, shard in enumerate(sorted(group, key=lambda s: s.order))]
        previous = None
        for key, _, header, columns in heapq.merge(*streams, key=lambda entry: (entry[0], entry[1])):
            if key != previous:  # the newest shard's segment sorts first among equal keys
                yield key, header, columns
            previous = key


@dataclass
class MergeCounts:
    fragments: int = 0
    outside: int = 0


def merge_into(assembler: ManifestAssembler, shards: Iterable[Shard]) -> MergeCounts:
    """Feed every shard's segments to ``assembler`` in the sequential assembly's order."""
    shards = list(shards)
    counts = MergeCounts()
    for _, header, columns in _in_order(shards, FRAGMENT):
        rejections = tuple(Rejection.from_dict(entry) for entry in header["rejections"])
        assembler.accept(Batch(rejections, header["images"], header["records"], *columns))
        counts.fragments += 1
        counts.outside += header["outside"]
    for _, header, _ in _in_order(shards, REPORT):
        for entry in header["rejections"]:
            assembler.reject(Rejection.from_dict(entry))
    return counts
