"""Local conversion, spread over worker processes.

Per annotation file, the work is: read and parse it, find and probe its image, apply the
rules and format its manifest line. Files are independent of each other and this is nearly
all of a conversion's time, so workers do it for chunks of a folder's files while the main
process hands the results to ``ManifestAssembler.accept`` in input order: the manifests and
the report are the same bytes whatever the number of workers. Workers are sent file names
and send back prepared lines (a few hundred bytes per file), never big objects.

Other inputs (a .zip, a COCO file, JSON Lines) are read by one parser in one pass, and are
converted in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

from .convert import convert_annotation, error_rejection
from .manifest import ManifestAssembler, ManifestLines, Prepared
from .records import AnnotationError, Rejection
from .sources import AnnotationSource, Item, LocalImages, folder_names, read_folder_file

CHUNK = 256  # files per task: enough to make a round trip between processes cheap per file
IN_FLIGHT = 4  # chunks per worker submitted ahead of assembly: workers never wait, results never pile up

Outcome = tuple[tuple[Rejection, ...], Prepared | None, bool]
"""What one input item becomes: its rejections, its line (if any), and whether it is an image."""


def default_jobs() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Converter:
    """The per-item work, the same in the main process and in workers."""

    images: LocalImages
    lines: ManifestLines
    source_path: str  # names an unreadable input in the report when the error names nothing better

    def convert(self, item: Item) -> Outcome:
        annotation, created = item
        if isinstance(annotation, Rejection):
            # A dropped COCO annotation (item set) is not an image of its own.
            return (annotation,), None, annotation.item is None
        if isinstance(annotation, AnnotationError):
            return (error_rejection(annotation, self.source_path),), None, True
        converted = convert_annotation(annotation, self.images, created=created)
        prepared = None if converted.record is None else self.lines.prepare(converted.record)
        return tuple(converted.rejections), prepared, True


def convert_into(
    assembler: ManifestAssembler,
    source: AnnotationSource,
    images: LocalImages,
    *,
    jobs: int | None = None,
    on_image: Callable[[], None] = lambda: None,
    chunk: int | None = None,
) -> None:
    """Convert every item of ``source`` into ``assembler``, with up to ``jobs`` worker processes
    for a folder (default: one per CPU); ``on_image`` is called once per input image."""
    converter = Converter(images, assembler.lines, str(source.path))
    for rejections, prepared, is_image in _converted(source, converter, jobs or default_jobs(), chunk or CHUNK):
        for rejection in rejections:
            assembler.reject(rejection)
        if prepared is not None:
            assembler.accept(prepared)
        if is_image:
            on_image()


def _converted(source: AnnotationSource, converter: Converter, jobs: int, chunk: int) -> Iterator[Outcome]:
    if source.kind != "folder":
        return map(converter.convert, source)
    folder = str(source.path)
    names = folder_names(folder)
    chunks = deque(names[i : i + chunk] for i in range(0, len(names), chunk))
    del names
    jobs = min(jobs, len(chunks))  # a small folder is not worth starting processes for
    if jobs <= 1:
        return (converter.convert(read_folder_file(folder, name)) for batch in _taken(chunks) for name in batch)
    return _in_workers(folder, chunks, converter, jobs)


def _taken(chunks: deque[list[str]]) -> Iterator[list[str]]:
    """Each chunk, dropped from the queue as it is taken: names need not last to the end."""
    while chunks:
        yield chunks.popleft()


def _in_workers(folder: str, chunks: deque[list[str]], converter: Converter, jobs: int) -> Iterator[Outcome]:
    # Forked workers start in milliseconds with every module already imported; elsewhere
    # (macOS, Windows) the platform's own start method is the safe one.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(folder, converter)) as pool:
        pending: deque = deque()  # futures of chunks, in input order
        for batch in _taken(chunks):
            pending.append(pool.submit(_convert_files, batch))
            if len(pending) >= IN_FLIGHT * jobs:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


_worker: tuple[str, Converter] | None = None  # a worker process's folder and converter


def _start_worker(folder: str, converter: Converter) -> None:
    global _worker
    _worker = folder, converter
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle


def _convert_files(names: list[str]) -> list[Outcome]:
    assert _worker is not None
    folder, converter = _worker
    return [converter.convert(read_folder_file(folder, name)) for name in names]
