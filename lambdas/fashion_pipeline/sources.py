"""Local inputs for the CLI: a folder or .zip of DeepFashion2 files, a COCO file, JSON Lines."""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from .coco import CocoFile
from .convert import OpenedImage
from .deepfashion2 import iter_jsonl, parse_file
from .labels import CANONICAL_NAMES
from .records import AnnotationError, ImageAnnotation, Rejection

Item = tuple[ImageAnnotation | AnnotationError | Rejection, str]
"""What a source yields: an annotation (or why there is none) and its creation date."""


def iso_timestamp(seconds: float) -> str:
    return _iso_second(int(seconds))


@functools.lru_cache(maxsize=1024)
def _iso_second(second: int) -> str:
    # Annotation files are written in bursts, so thousands share a second: format each once.
    return dt.datetime.fromtimestamp(second, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class InputError(Exception):
    """The ANNOTATIONS argument itself is unusable (not a per-file problem)."""


@dataclass
class AnnotationSource:
    """An iterable of annotations with a known count, for progress and for the report."""

    path: Path
    kind: str  # "folder", "zip", "coco", "jsonl", "file"
    total: int
    name: str  # how reports name it: the file name, or the S3 key it was downloaded from
    categories: frozenset[str] | None = None  # a COCO file's own catalogue, when it has one
    names: FolderListing | None = None  # a folder's file names, in the order they are converted
    _coco: CocoFile | None = None

    def __iter__(self) -> Iterator[Item]:
        if self.kind == "folder":
            assert self.names is not None
            folder = str(self.path)
            for name in self.names:
                yield read_folder_file(folder, name)
        elif self.kind == "zip":
            yield from _iter_zip(self.path, self.name)
        elif self.kind == "coco":
            created = iso_timestamp(self.path.stat().st_mtime)
            assert self._coco is not None
            for orphan in self._coco.orphans:
                yield orphan, created
            for item in self._coco:
                yield item, created
        elif self.kind == "jsonl":
            created = iso_timestamp(self.path.stat().st_mtime)
            with self.path.open("rb") as handle:
                for item in iter_jsonl(handle, source=self.name):
                    yield item, created
        else:
            stem = os.path.basename(self.name).rsplit(".", 1)[0]
            yield _parse_one(self.name, stem, self.path.read_bytes()), iso_timestamp(self.path.stat().st_mtime)


def open_source(path: str | os.PathLike[str], name: str | None = None) -> AnnotationSource:
    """Recognise what ``path`` holds; ``name`` (default: the file name) is what reports say."""
    path = Path(path)
    name = name or path.name
    if path.is_dir():
        names = folder_names(str(path))
        return AnnotationSource(path, "folder", len(names), name, names=names)
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return AnnotationSource(path, "zip", sum(1 for info in archive.infolist() if not info.is_dir()), name)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open("rb") as handle:
            return AnnotationSource(path, "jsonl", sum(1 for line in handle if line.strip()), name)
    if path.suffix.lower() == ".json":
        data = path.read_bytes()
        try:
            coco = CocoFile(data, source=name)
        except AnnotationError:
            # Not COCO: a single DeepFashion2 file, whose own problems the report will name.
            return AnnotationSource(path, "file", 1, name)
        categories = coco.category_names
        return AnnotationSource(path, "coco", len(coco), name, None if categories <= CANONICAL_NAMES else categories, _coco=coco)
    raise InputError(f"{path}: expected a folder, a .zip, a COCO .json or a .jsonl file")


def _parse_one(source: str, stem: str, data: bytes) -> ImageAnnotation | AnnotationError:
    try:
        return parse_file(data, source=source, stem=stem)
    except AnnotationError as exc:
        exc.source = source
        return exc


def _unsupported(source: str) -> Rejection:
    return Rejection(source, None, "unsupported_file", "not a .json annotation file")


class FolderListing:
    """A folder's file names, in the order they are converted (sorted), held compactly.

    Names are kept in blocks joined by NUL, which no file name contains: about 12 bytes a
    file, where a list of str takes 70, so a folder of a million files costs 12 MB, not 70.
    """

    BLOCK = 1024  # names per block

    def __init__(self, names: Iterable[str]) -> None:
        self._blocks: list[str] = []
        self._count = 0
        block: list[str] = []
        for name in names:
            block.append(name)
            if len(block) == self.BLOCK:
                self._add(block)
        self._add(block)

    def _add(self, block: list[str]) -> None:
        if block:
            self._blocks.append("\0".join(block))
            self._count += len(block)
            block.clear()

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        for block in self._blocks:
            yield from block.split("\0")

    def slice(self, start: int, stop: int) -> list[str]:
        """The names from position ``start`` up to ``stop``."""
        names: list[str] = []
        for block in self._blocks[start // self.BLOCK : -(-stop // self.BLOCK)]:
            names += block.split("\0")
        offset = start - start // self.BLOCK * self.BLOCK
        return names[offset : offset + stop - start]


LISTING_RUN = 1 << 15  # names sorted in memory at once while listing a folder (about 2 MB)


def folder_names(folder: str) -> FolderListing:
    """The names of a folder's files, in the order they are converted (sorted).

    A merge sort, so that memory holds at most LISTING_RUN names as str at any time: runs of
    that many are sorted and written to temporary files, then merged.
    """
    runs: list[IO[str]] = []
    batch: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file():
                    batch.append(entry.name)
                    if len(batch) >= LISTING_RUN:
                        runs.append(_spill_run(batch))
        batch.sort()
        if not runs:
            return FolderListing(batch)
        return FolderListing(heapq.merge(*map(_read_run, runs), batch))
    finally:
        for run in runs:
            run.close()


def _spill_run(names: list[str]) -> IO[str]:
    names.sort()
    # NUL ends each name: the one character no file name holds. surrogateescape carries the
    # bytes of a name that is not valid UTF-8 through unchanged.
    run = tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogateescape", newline="")
    run.write("\0".join(names) + "\0")
    names.clear()
    return run


def _read_run(run: IO[str]) -> Iterator[str]:
    run.seek(0)
    tail = ""
    while piece := run.read(1 << 16):
        names = (tail + piece).split("\0")
        tail = names.pop()
        yield from names


def read_folder_file(folder: str, name: str) -> Item:
    """One file of an annotation folder: its annotation (or why there is none) and its date."""
    path = folder + os.sep + name  # a name from scandir needs none of os.path.join's cases
    if not name.lower().endswith(".json"):
        return _unsupported(name), iso_timestamp(os.stat(path).st_mtime)
    data, mtime = _read_file(path)
    return _parse_one(name, name[:-5], data), iso_timestamp(mtime)


def _read_file(path: str) -> tuple[bytes, float]:
    """A file's bytes and modification time, from one open (raw os calls: this runs per file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        stat = os.fstat(fd)
        data = os.read(fd, stat.st_size + 1)  # one read, and more only if the file has grown
        while len(data) > stat.st_size and (more := os.read(fd, 1 << 16)):
            data += more
        return data, stat.st_mtime
    finally:
        os.close(fd)


def _iter_zip(archive_path: Path, name: str) -> Iterator[Item]:
    with zipfile.ZipFile(archive_path) as archive:
        for info in sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename):
            source = f"{name}/{info.filename}"
            created = dt.datetime(*info.date_time).strftime("%Y-%m-%dT%H:%M:%S")
            if not info.filename.lower().endswith(".json"):
                yield _unsupported(source), created
                continue
            stem = os.path.basename(info.filename)[:-5]
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError) as exc:
                yield AnnotationError("invalid_archive_member", f"cannot be read from the archive: {exc}", source), created
                continue
            yield _parse_one(source, stem, data), created


class LocalImages:
    """Images in a local folder, published under an ``s3://bucket/prefix/`` URI."""

    def __init__(self, folder: str | os.PathLike[str], image_uri: str) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: images folder not found")
        self.image_uri = normalise_image_uri(image_uri)
        self._prefix = os.path.join(self.folder, "")  # joined by hand below: this runs per image

    def describe(self) -> str:
        return str(self.folder)

    def open(self, candidates: tuple[str, ...]) -> OpenedImage | None:
        # Opening is the existence test, and every read is served by that one handle.
        for name in candidates:
            try:
                fd = os.open(self._prefix + name, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError):
                continue

            def read_at(offset: int, length: int, fd: int = fd) -> bytes:
                return os.pread(fd, length, offset)

            size = os.lseek(fd, 0, os.SEEK_END)  # the size, without building a stat result; pread ignores the offset
            return OpenedImage(name, self.image_uri + name, size, read_at, functools.partial(os.close, fd))
        return None


def normalise_image_uri(uri: str) -> str:
    if not uri.startswith("s3://") or len(uri.split("/", 3)[2]) < 3:
        raise InputError(f"--image-uri {uri!r}: expected s3://BUCKET/PREFIX/")
    return uri if uri.endswith("/") else uri + "/"


def load_labels(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """A --labels file: a JSON object mapping category names to labels (null excludes)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the label mapping ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the label mapping must be a JSON object of category -> label or null")
    return data
