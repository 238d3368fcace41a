"""Local conversion, spread over worker processes.

Per annotation file, the work is: read and parse it, find and probe its image, apply the
rules and format its manifest line. Files are independent of each other and this is nearly
all of a conversion's time, so workers do it for chunks of a folder's files while the main
process hands the results to ``ManifestAssembler.accept`` in input order: the manifests and
the report are the same bytes whatever the number of workers.

Workers are forked, so they start in a millisecond with the file names and every module
already in memory. The main process hands out chunk numbers through one pipe per worker, a
new one to whichever worker sends a batch back, so a faster worker (or one with a core to
itself) does more, and puts batches back in input order; at most WINDOW of them wait.
``concurrent.futures`` would do the same with a feeder thread, queues and 35 ms more
start-up, which is a tenth of a small conversion. Without ``os.fork`` (Windows), conversion
runs in this process.

Other inputs (a .zip, a COCO file, JSON Lines) are read by one parser in one pass, and are
converted in this process.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import sys
import traceback
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from .convert import convert_annotation, error_rejection
from .manifest import Batch, ManifestAssembler, ManifestLines
from .records import AnnotationError, Rejection
from .sources import AnnotationSource, FolderListing, Item, LocalImages, read_folder_file

CHUNK = 256  # files per batch: enough to make a round trip between processes cheap per file
WINDOW = 8  # batches a worker may be given ahead of the one whose turn it is
PIPE_BYTES = 1 << 20  # a result pipe holds a whole batch, so a worker need not wait to send it


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
    count = -(-len(names) // chunk)
    workers: list[_Worker] = []
    try:
        # Everything alive now (modules, the listing) lives as long as the workers: frozen
        # before the fork, the workers' collections never walk it (a fifth of their time
        # otherwise) and never write to its pages, which they keep sharing with this process.
        gc.freeze()
        try:
            for _ in range(jobs):
                workers.append(_Worker.start(folder, names, chunk, converter, workers))
        finally:
            gc.unfreeze()  # only the workers need it, and this process may live on (tests)
        by_fd = {worker.results: worker for worker in workers}
        poller = select.poll()
        for worker in workers:
            poller.register(worker.results, select.POLLIN)
        ready: dict[int, Batch] = {}  # batches that came before their turn
        assigned = 0
        for number in range(count):
            # Each worker has up to two chunks to go, within WINDOW chunks of the one whose
            # turn it is: a worker that runs faster is given more, and memory holds at most
            # WINDOW batches however unequal the workers are.
            for worker in sorted(workers, key=lambda w: w.queued):
                while worker.queued < 2 and assigned < min(count, number + WINDOW):
                    worker.assign(assigned)
                    assigned += 1
            while number not in ready:
                for fd, _ in poller.poll():
                    done, batch = by_fd[fd].receive()
                    ready[done] = batch
            yield ready.pop(number)
    finally:
        for worker in workers:
            worker.stop()


class _Worker:
    """A forked worker process: chunk numbers go in through one pipe, batches come out of another."""

    def __init__(self, pid: int, tasks: int, results: int) -> None:
        self.pid = pid
        self.tasks = tasks  # write end
        self.results = results  # read end
        self.queued = 0

    @classmethod
    def start(cls, folder: str, names: FolderListing, chunk: int, converter: Converter, others: list[_Worker]) -> _Worker:
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        _grow_pipe(result_write)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
            try:
                for fd in (task_write, result_read, *(fd for other in others for fd in (other.tasks, other.results))):
                    os.close(fd)
                _work(folder, names, chunk, converter, task_read, result_write)
            finally:
                os._exit(1)  # whatever happens, a child never returns into the parent's code
        os.close(task_read)
        os.close(result_write)
        return cls(pid, task_write, result_read)

    def assign(self, number: int) -> None:
        os.write(self.tasks, number.to_bytes(4, "little"))  # 4 bytes: a write a pipe never splits
        self.queued += 1

    def receive(self) -> tuple[int, Batch]:
        """The next message: (chunk number, its batch). Raises WorkerError for a failure."""
        header = _read_exactly(self.results, 8)
        message = pickle.loads(_read_exactly(self.results, int.from_bytes(header, "little")))
        if message[0] != "ok":
            raise WorkerError(f"worker process {self.pid} failed:\n{message[1]}")
        self.queued -= 1
        return message[1], message[2]

    def stop(self) -> None:
        for fd in (self.tasks, self.results):
            os.close(fd)  # a worker waiting for a chunk sees the end of its pipe and exits
        try:
            os.kill(self.pid, signal.SIGTERM)  # no-op for a worker that is done, the usual case
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)


def _read_exactly(fd: int, size: int) -> bytes:
    data = os.read(fd, size)
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise WorkerError("a worker process ended without its results (killed, or out of memory?)")
        data += more
    return data


def _grow_pipe(fd: int) -> None:
    """Make the pipe PIPE_BYTES long (Linux; elsewhere the default size stands)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # no fcntl, no F_SETPIPE_SZ, or above the system's limit
        pass


def _work(folder: str, names: FolderListing, chunk: int, converter: Converter, tasks: int, results: int) -> None:  # pragma: no cover - in a child
    """A worker's life: convert the chunks it is given, send each one's batch, and exit when
    its task pipe ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    code = 0
    try:
        while task := os.read(tasks, 4):
            number = int.from_bytes(task, "little")
            batch = converter.convert(read_folder_file(folder, name) for name in names.slice(number * chunk, (number + 1) * chunk))
            _send(results, ("ok", number, batch))
    except BrokenPipeError:
        code = 1  # the main process stopped reading: it is handling an error of its own
    except BaseException:
        try:
            _send(results, ("error", traceback.format_exc()))
        except OSError:
            pass
        code = 1
    os._exit(code)  # not sys.exit: nothing of the parent's (atexit, buffers) may run twice


def _send(fd: int, message: tuple[Any, ...]) -> None:  # pragma: no cover - in a child
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = len(data).to_bytes(8, "little") + data
    while data:
        data = data[os.write(fd, data):]
