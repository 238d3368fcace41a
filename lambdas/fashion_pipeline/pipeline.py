"""Local conversion, spread over worker processes.

Per annotation file, the work is: read and parse it, find and probe its image, apply the
rules and format its manifest line. Files are independent of each other and this is nearly
all of a conversion's time, so workers do it for chunks of a folder's files while the main
process hands the results to ``ManifestAssembler.accept`` in input order: the manifests and
the report are the same bytes whatever the number of workers.

Workers are forked, so they start in a millisecond with the file names and every module
already in memory, and take the chunks in turn (worker k has chunks k, k + jobs, ...): the
main process reads each worker's pipe in the same turn, so results arrive in input order
with no bookkeeping, and a worker that runs ahead blocks on its full pipe instead of piling
results up in memory. ``concurrent.futures`` would do the same with a feeder thread, queues
and 35 ms more start-up, which is a tenth of a small conversion. Without ``os.fork``
(Windows), conversion runs in this process.

Other inputs (a .zip, a COCO file, JSON Lines) are read by one parser in one pass, and are
converted in this process.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import traceback
from dataclasses import dataclass
from itertools import islice
from typing import BinaryIO, Callable, Iterable, Iterator

from .convert import convert_annotation, error_rejection
from .manifest import Batch, ManifestAssembler, ManifestLines
from .records import AnnotationError, Rejection
from .sources import AnnotationSource, FolderListing, Item, LocalImages, read_folder_file

CHUNK = 256  # files per batch: enough to make a round trip between processes cheap per file
PIPE_BYTES = 1 << 20  # how far a worker may run ahead of the main process (about 8 batches)


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its traceback."""


def default_jobs() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Converter:
    """The per-item work, the same in the main process and in workers."""

    images: LocalImages
    lines: ManifestLines
    source_path: str  # names an unreadable input in the report when the error names nothing better

    def convert(self, items: Iterable[Item]) -> Batch:
        """A stretch of input items, converted and packed for the assembler."""
        batch = self.lines.builder()
        for annotation, created in items:
            if isinstance(annotation, Rejection):  # a dropped COCO annotation (item set) is no image
                batch.reject(annotation)
            elif isinstance(annotation, AnnotationError):
                batch.reject(error_rejection(annotation, self.source_path))
            else:
                converted = convert_annotation(annotation, self.images, created=created)
                for rejection in converted.rejections:
                    batch.reject(rejection)
                if converted.record is not None:
                    batch.add(self.lines.prepare(converted.record))
        return batch.build()


def convert_into(
    assembler: ManifestAssembler,
    source: AnnotationSource,
    images: LocalImages,
    *,
    jobs: int | None = None,
    on_images: Callable[[int], None] = lambda count: None,
    chunk: int | None = None,
) -> None:
    """Convert every item of ``source`` into ``assembler``, with up to ``jobs`` worker processes
    for a folder (default: one per CPU); ``on_images`` is told how many input images are done."""
    converter = Converter(images, assembler.lines, str(source.path))
    for batch in _batches(source, converter, jobs or default_jobs(), chunk or CHUNK):
        assembler.accept(batch)
        on_images(batch.images)


def _batches(source: AnnotationSource, converter: Converter, jobs: int, chunk: int) -> Iterator[Batch]:
    if source.kind != "folder":
        return _in_this_process(source, converter, chunk)
    folder = str(source.path)
    names = source.names
    assert names is not None
    jobs = min(jobs, -(-len(names) // chunk))  # a small folder is not worth starting processes for
    if jobs <= 1 or not hasattr(os, "fork"):
        return _in_this_process((read_folder_file(folder, name) for name in names), converter, chunk)
    return _in_workers(folder, names, chunk, converter, jobs)


def _in_this_process(items: Iterable[Item], converter: Converter, chunk: int) -> Iterator[Batch]:
    # The same batches as workers make, so the output does not depend on the number of jobs.
    items = iter(items)
    while block := list(islice(items, chunk)):
        yield converter.convert(block)


def _in_workers(folder: str, names: FolderListing, chunk: int, converter: Converter, jobs: int) -> Iterator[Batch]:
    sys.stdout.flush()  # a child must not inherit, and later print, half-written output
    sys.stderr.flush()
    # Everything alive now (modules, the listing) lives as long as the workers: frozen, the
    # workers' collections never walk it (a fifth of their time otherwise) and never write
    # to its pages, which the workers then keep sharing with this process.
    gc.freeze()
    workers: list[tuple[int, BinaryIO]] = []  # (pid, reader of its pipe)
    try:
        for k in range(jobs):
            read_end, write_end = os.pipe()
            _grow_pipe(write_end)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
                os.close(read_end)
                for _, reader in workers:  # the earlier workers' pipes are the main process's
                    reader.close()
                _work(folder, islice(names.chunks(chunk), k, None, jobs), converter, write_end)
            os.close(write_end)
            workers.append((pid, os.fdopen(read_end, "rb", buffering=1 << 16)))
        for number in range(-(-len(names) // chunk)):
            pid, reader = workers[number % jobs]
            try:
                status, payload = pickle.load(reader)
            except EOFError:
                raise WorkerError(f"worker process {pid} ended without its results (killed, or out of memory?)") from None
            if status != "ok":
                raise WorkerError(f"worker process {pid} failed:\n{payload}")
            yield payload
    finally:
        for pid, reader in workers:
            reader.close()
            try:
                os.kill(pid, signal.SIGTERM)  # no-op for a worker that is done, which is the usual case
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


def _grow_pipe(fd: int) -> None:
    """Let a worker run up to PIPE_BYTES ahead (Linux; elsewhere the default size stands)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # no fcntl, no F_SETPIPE_SZ, or above the system's limit
        pass


def _work(folder: str, chunks: Iterable[list[str]], converter: Converter, fd: int) -> None:  # pragma: no cover - in a child
    """A worker's life: convert its chunks, send each one's batch, and exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    code = 0
    with os.fdopen(fd, "wb", buffering=PIPE_BYTES) as out:
        try:
            for names in chunks:
                batch = converter.convert(read_folder_file(folder, name) for name in names)
                pickle.dump(("ok", batch), out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
        except BrokenPipeError:
            code = 1  # the main process stopped reading: it is handling an error of its own
        except BaseException:
            pickle.dump(("error", traceback.format_exc()), out, protocol=pickle.HIGHEST_PROTOCOL)
            code = 1
    os._exit(code)  # not sys.exit: nothing of the parent's (atexit, buffers) may run twice
