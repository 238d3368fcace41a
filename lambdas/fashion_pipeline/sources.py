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

from .coco import CocoStream, NotCoco
from .convert import OpenedImage
from .deepfashion2 import iter_jsonl, parse_file
from .images import ImageError
from .labels import CANONICAL_NAMES
from .records import AnnotationError, ImageAnnotation, Rejection, is_text, normalise_image_name

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


# A DeepFashion2 annotation describes one image in a few KB; a .json file this large that is not
# COCO is reported, not parsed whole (which would take several times its size in memory).
MAX_SINGLE_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class AnnotationSource:
    """An iterable of annotations with a known count, for progress and for the report."""

    path: Path
    kind: str  # "folder", "zip", "coco", "jsonl", "file"
    total: int
    name: str  # how reports name it: the file name, or the S3 key it was downloaded from
    categories: frozenset[str] | None = None  # a COCO file's own catalogue, when it has one
    names: FolderListing | None = None  # a folder's file names, in the order they are converted
    coco: CocoStream | None = None  # a COCO file's spool, for ranges of its images (CocoStream.items)
    annotation_files: int | None = None  # a folder's or archive's .json files (the rest is reported)
    problem: AnnotationError | None = None  # a "file" that is reported as it is, unparsed

    def __iter__(self) -> Iterator[Item]:
        if self.kind == "folder":
            assert self.names is not None
            folder = str(self.path)
            for name in self.names:
                yield read_folder_file(folder, name)
        elif self.kind == "zip":
            yield from _iter_zip(self.path, self.name)
        elif self.kind == "coco":
            yield from self.items()
        elif self.kind == "jsonl":
            created = iso_timestamp(self.path.stat().st_mtime)
            with self.path.open("rb") as handle:
                for item in iter_jsonl(handle, source=self.name):
                    yield item, created
        elif self.problem is not None:
            yield self.problem, iso_timestamp(self.path.stat().st_mtime)
        else:
            stem = os.path.basename(self.name).rsplit(".", 1)[0]
            yield _parse_one(self.name, stem, self.path.read_bytes()), iso_timestamp(self.path.stat().st_mtime)

    def items(self, start: int = 0, stop: int | None = None) -> Iterator[Item]:
        """A COCO file's items for its image entries ``start`` up to ``stop`` (CocoStream.items:
        consecutive ranges from 0 give the whole file, file-level items in the range from 0)."""
        if self.coco is None:
            raise TypeError(f"{self.name}: only a COCO file is read by ranges of images, not a {self.kind}")
        created = iso_timestamp(self.path.stat().st_mtime)
        for item in self.coco.items(start, stop):
            yield item, created


def open_source(path: str | os.PathLike[str], name: str | None = None) -> AnnotationSource:
    """Recognise what ``path`` holds; ``name`` (default: the file name) is what reports say."""
    path = Path(path)
    name = name or path.name
    if path.is_dir():
        names = folder_names(str(path))
        return AnnotationSource(path, "folder", len(names), name, names=names, annotation_files=names.annotation_files)
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [info.filename for info in archive.infolist() if not info.is_dir()]
        return AnnotationSource(path, "zip", len(members), name, annotation_files=sum(1 for m in members if m.lower().endswith(".json")))
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open("rb") as handle:
            return AnnotationSource(path, "jsonl", sum(1 for line in handle if line.strip()), name)
    if path.suffix.lower() == ".json":
        try:
            coco = CocoStream.open(path, source=name)
        except NotCoco as exc:
            # Not COCO: a single DeepFashion2 file, whose own problems the report will name.
            size = path.stat().st_size
            if size <= MAX_SINGLE_FILE_BYTES:
                return AnnotationSource(path, "file", 1, name)
            detail = f"{exc.detail}; at {size:,} bytes it is no DeepFashion2 annotation either (one image's, a few KB)"
            return AnnotationSource(path, "file", 1, name, problem=AnnotationError(exc.reason, detail, name))
        categories = coco.category_names
        return AnnotationSource(path, "coco", len(coco), name, None if categories <= CANONICAL_NAMES else categories, coco=coco)
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

    Names are relative to the folder, with '/' between subfolders. They are kept in blocks
    joined by NUL, which no file name contains: about 12 bytes a file, where a list of str takes
    70, so a folder of a million files costs 12 MB, not 70.
    """

    BLOCK = 1024  # names per block

    def __init__(self, names: Iterable[str], annotation_files: int = 0) -> None:
        self.annotation_files = annotation_files  # names ending in .json
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


# A listed name that is not a file to read starts with "/", which no relative name does, then a
# letter for what it is; read_folder_file reports it.
_NOT_A_FILE = "/o"  # not a regular file: a FIFO, a socket, a device, a link to nothing
_UNREADABLE_FOLDER = "/d"  # a subfolder that cannot be listed
_FOLDER_AGAIN = "/c"  # a link to a folder listed already (a cycle): not followed again


def folder_names(folder: str) -> FolderListing:
    """The names of a folder's files, subfolders included, in the order they are converted
    (sorted, relative to ``folder`` with '/' separators: the keys ``aws s3 sync`` gives them).

    ``aws s3 sync`` copies a folder recursively and follows links unless told not to
    (``--follow-symlinks``, the default: https://docs.aws.amazon.com/cli/latest/reference/s3/sync.html);
    so does this, but it lists a folder once, so that a link to an enclosing folder ends. What
    is not a regular file is listed too, to be reported (read_folder_file).
    A merge sort, so that memory holds at most LISTING_RUN names as str at any time: runs of
    that many are sorted and written to temporary files, then merged.
    """
    runs: list[IO[str]] = []
    batch: list[str] = []
    annotation_files = 0
    root = os.stat(folder)
    seen = {(root.st_dev, root.st_ino)}
    pending = [("", folder)]  # (prefix of the names in it, path) of the folders still to list
    try:
        while pending:
            prefix, path = pending.pop()
            try:
                entries = os.scandir(path)
            except OSError as exc:
                if not prefix:
                    raise InputError(f"{folder}: cannot list the folder ({exc.strerror})") from None
                batch.append(_UNREADABLE_FOLDER + prefix[:-1])
                continue
            with entries:
                for entry in entries:
                    name = prefix + entry.name
                    try:
                        if entry.is_file():
                            if name[-5:].lower() == ".json":
                                annotation_files += 1
                        elif entry.is_dir():
                            stat = entry.stat()
                            if (stat.st_dev, stat.st_ino) in seen:
                                name = _FOLDER_AGAIN + name
                            else:
                                seen.add((stat.st_dev, stat.st_ino))
                                pending.append((name + "/", entry.path))
                                continue
                        else:
                            name = _NOT_A_FILE + name
                    except OSError:  # gone meanwhile, or a link that cannot be followed
                        name = _NOT_A_FILE + name
                    batch.append(name)
                    if len(batch) >= LISTING_RUN:
                        runs.append(_spill_run(batch))
        batch.sort()
        if not runs:
            return FolderListing(batch, annotation_files)
        return FolderListing(heapq.merge(*map(_read_run, runs), batch), annotation_files)
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


_NOT_FILES = {
    _NOT_A_FILE: "not a regular file (a FIFO, a socket, a device, or a link to nothing)",
    _UNREADABLE_FOLDER: "a subfolder that cannot be listed",
    _FOLDER_AGAIN: "a link to a folder that is listed already (not followed again)",
}


def read_folder_file(folder: str, name: str) -> Item:
    """One file of an annotation folder: its annotation (or why there is none) and its date.

    The image is looked for by the file's base name, wherever the file is in the folder, as
    the converter looks for it under the dataset's images prefix.
    """
    if name[0] == "/":  # listed to be reported, not read (folder_names)
        kind, name = name[:2], name[2:]
        return Rejection(name, None, "unsupported_file", _NOT_FILES[kind]), _mtime(folder + os.sep + name)
    path = folder + os.sep + name  # a name from scandir needs none of os.path.join's cases
    if not name.lower().endswith(".json"):
        return _unsupported(name), _mtime(path)
    if not is_text(name):  # os.fsdecode of bytes that are not UTF-8: no report or manifest could hold it
        return Rejection(name, None, "invalid_file_name", "the file name is not valid UTF-8"), _mtime(path)
    try:
        data, mtime = _read_file(path)
    except OSError as exc:  # removed since the listing, or unreadable
        return AnnotationError("unreadable_file", f"cannot be read: {exc.strerror}", name), _mtime(path)
    return _parse_one(name, name[name.rfind("/") + 1 : -5], data), iso_timestamp(mtime)


def _mtime(path: str) -> str:
    for stat in (os.stat, os.lstat):  # a link to nothing has a date of its own only
        try:
            return iso_timestamp(stat(path).st_mtime)
        except OSError:
            pass
    return iso_timestamp(0)


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
        # Opening is the existence test, and every read is served by that one handle. No name
        # leaves the folder (normalise_image_name, the rule S3ImageStore applies too), checked
        # as each candidate is tried; O_NONBLOCK, so that a FIFO cannot hang the open (it does
        # nothing to a regular file).
        for name in candidates:
            try:
                name = normalise_image_name(name)
            except AnnotationError as exc:
                raise ImageError(exc.reason, exc.detail) from None
            try:
                fd = os.open(self._prefix + name, os.O_RDONLY | os.O_NONBLOCK)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:  # permissions, a name too long, a loop of links
                raise ImageError("image_unreadable", f"{name} cannot be opened in {self.folder}: {exc.strerror}") from None
            try:
                size = os.lseek(fd, 0, os.SEEK_END)  # the size, without building a stat result; pread ignores the offset
            except OSError:
                os.close(fd)
                raise ImageError("image_missing", f"{name} in {self.folder} is not a regular file") from None
            return OpenedImage(name, self.image_uri + name, size, functools.partial(self._read_at, fd, name), functools.partial(os.close, fd))
        return None

    def _read_at(self, fd: int, name: str, offset: int, length: int) -> bytes:
        try:
            return os.pread(fd, length, offset)
        except IsADirectoryError:  # a folder opens like a file, and fails only when read
            raise ImageError("image_missing", f"{name} in {self.folder} is a folder, not an image") from None


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
