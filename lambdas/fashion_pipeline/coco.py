"""COCO object-detection files, including DeepFashion2's ``deepfashion2_to_coco.py`` output, streamed.

COCO boxes are ``[x, y, width, height]``; they are turned into ``[x1, y1, x2, y2]`` here so
that every reader hands the same box shape to the conversion rules. Category names come
from the file's own ``categories``: for DeepFashion2 they are the catalogue's snake_case
names; for any other COCO dataset they become that dataset's catalogue.

Reading. A COCO file can be several GB (DeepFashion2's train set), so it is never held whole:
``CocoStream.open`` reads it once with ijson's C backend (``yajl2_c``) and writes what the
conversion needs of each image and annotation to a spool, an SQLite database in a temporary
directory, as it goes. ijson's builder makes the top-level object (``items(file, "")``, with a
``map_type`` that notes the first object made: the document); every time the parser asks for
the next 64 KB of the file, the entries its ``images``, ``annotations`` and ``categories``
lists have finished since are taken out of them (ijson's ``items``, ``map_type`` and
``use_float``: https://github.com/ICRAR/ijson#options). Memory holds the entry being parsed, one
buffer and SQLite's page cache (SQLITE_CACHE_KIB), whatever the size of the file and wherever
``images`` stands in it (before or after ``annotations``): annotations are joined to their
images on disk, once the whole file is read.

API::

    stream = CocoStream.open(path, source="coco.json")  # raises NotCoco; directory= for the spool
    len(stream)                        # number of "images" entries
    stream.items(start=0, stop=None)   # ImageAnnotation | AnnotationError | Rejection, in order
    stream.categories, stream.category_names, stream.problem   # problem: why it cannot be read
    stream.close()                     # or ``with``; the spool goes with the stream otherwise

Order. Exactly the order of the former whole-document reader, so the manifests and the report
are the same bytes: annotations that refer to no image first (``orphan_annotation``, in file
order), then one error per ``images`` entry that is not an object, then the images by
(file name, id) as text, ties in file order; each image's boxes in file order; its ``pair_id``
the least, as text, of its annotations' ``pair_id``. A duplicated top-level key counts once,
the last one, as with ``json.loads``.

Ranges (to split one large file over several invocations): ``len(stream)`` is the number of
``images`` entries; ``stream.items(start, stop)`` yields the items of entries ``start`` up to
``stop`` of that order, and the file-level ones (the orphans, or why the file cannot be read)
with the first range only: ``0..n`` with n > 0, or ``0..0`` for a file without images.
Consecutive ranges ``0..a, a..b, ..., z..len`` (each but that one non-empty) together yield
``stream.items()`` exactly. A range costs reading only its own rows of the spool.

Values. ``file_name`` is normalised and checked (``records.normalise_image_name``: ``./a.jpg``
is ``a.jpg``; a name that leaves the images folder is rejected, ``image_outside_images``).
Image ids and ``image_id`` join as integers or strings only (``1`` and ``"1"`` differ, as in
JSON; ``true``, ``1.0``, lists and objects join nothing and are reported: ``invalid_id`` for an
image, ``orphan_annotation`` for an annotation). A ``pair_id`` must be a number or a string
(``invalid_pair_id``); a ``category_id`` that is not a catalogue id gives ``unknown_category``.

Limits. The file must be strict JSON (RFC 8259, https://www.rfc-editor.org/rfc/rfc8259): NaN
and Infinity, which ``json.loads`` accepts, are not JSON numbers (section 6) and make the whole
file ``invalid_json``, as does any syntax error (reported with its place in the file; nothing of
a broken file is converted). UTF-8, with or without a byte order mark, and UTF-16/32 are read
(section 8.1; ``json.loads`` accepts the same). The C parser turns an unpaired surrogate
escape (``"\\ud800"``) into ``?`` or fails on it, so such escapes are replaced before it sees
them, by ``records.NOT_TEXT``, and a name holding one is reported (``invalid_file_name``,
``invalid_category_name``) rather than written. Numbers beyond 64-bit integers or doubles
(``1e400``) make the file be read again with exact numbers (ijson's ``use_float=False``,
slower), so that they are read as ``json.loads`` reads them. One entry (an image, an
annotation) is held whole while it is parsed.
"""

from __future__ import annotations

import codecs
import itertools
import json
import marshal
import os
import re
import sqlite3
import tempfile
import warnings
from decimal import Decimal
from typing import IO, Any, Callable, Iterator

import ijson

from .records import (
    NOT_TEXT,
    NOT_TEXT_DETAIL,
    AnnotationError,
    ImageAnnotation,
    Rejection,
    SourceBox,
    is_text,
    normalise_image_name,
    pair_id_problem,
)


def _backend() -> Any:
    """ijson's C backend (yajl2_c), which the wheels for Linux (x86_64 and aarch64) ship; ijson's
    best available backend otherwise, with a warning: the pure-Python one is many times slower.
    Backends: https://github.com/ICRAR/ijson#backends"""
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:
        warnings.warn(
            f"ijson's C backend (yajl2_c) is not available; COCO files are read with the {ijson.backend_name!r} backend, which is slower",
            RuntimeWarning,
            stacklevel=2,
        )
        return ijson.get_backend(ijson.backend_name)


BACKEND = _backend()
READ_SIZE = 1 << 16  # bytes the parser asks for at a time (ijson's buf_size)
ROWS_PER_INSERT = 512  # spooled rows written together
SQLITE_CACHE_KIB = 2048  # the spool's page cache (SQLite's default size): all it holds in memory, sorts included


class NotCoco(AnnotationError):
    """The file is not a COCO document (its reason and detail say why): read it as something else."""


# An escaped backslash, or the escape of a UTF-16 surrogate (U+D800 to U+DFFF). Matched from left
# to right, escaped backslashes are consumed first, so every surrogate match is a real escape.
_ESCAPE = re.compile(rb"\\(?:\\|u[dD][89a-fA-F][0-9a-fA-F]{2})")
_LOW_ESCAPE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
# A surrogate encoded as if it were a character (CESU-8): json.loads(bytes) decodes it with
# "surrogatepass", yajl refuses it as invalid UTF-8. Three bytes, like NOT_TEXT's encoding.
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf][\x80-\xbf]")
_NOT_TEXT_ESCAPE = b"\\u" + f"{ord(NOT_TEXT):04x}".encode()
_NOT_TEXT_BYTES = NOT_TEXT.encode()
_HOLD = 12  # bytes held back at the end of a read: a surrogate pair's two escapes


class _Reader:
    """The file as the parser reads it, with the spool filled in between two reads.

    ``read`` is called by the parser each time it has parsed everything it was given, so the
    entries finished so far are complete objects and can be taken out of their lists.
    """

    def __init__(self, handle: IO[bytes], on_read: Callable[[], None]) -> None:
        self._handle = handle
        self._on_read = on_read
        self._carry = b""
        self._decoder: Any = None  # UTF-16/32 -> UTF-8
        self._started = False
        self._ended = False
        self.offset = 0  # bytes of the file handed to the parser so far
        self.last = 0  # bytes of the last read
        self.failure: BaseException | None = None  # an error of the spool, not of the file

    def read(self, size: int) -> bytes:
        if size == 0:  # ijson's check that the file gives bytes (compat.bytes_reader)
            return b""
        try:
            self._on_read()
        except BaseException as exc:  # re-raised by CocoStream.open: not a JSON error
            self.failure = exc
            raise
        while not self._ended:
            raw = self._handle.read(size)
            if not self._started:
                raw = self._start(raw)
            data = raw
            if self._decoder is not None:
                data = self._decoder.decode(raw, final=not raw).encode("utf-8", "surrogatepass")
            self._ended = not raw
            out = self._guard(data, final=self._ended)
            if out:
                self.offset += len(out)
                self.last = len(out)
                return out
        return b""

    def _start(self, data: bytes) -> bytes:
        """Skip a UTF-8 byte order mark, or read UTF-16/32 as UTF-8 (json.loads accepts the same:
        https://docs.python.org/3/library/json.html#json.loads)."""
        while len(data) < 4 and (more := self._handle.read(4)):
            data += more
        self._started = True
        encoding = json.detect_encoding(data)
        if encoding == "utf-8-sig":
            return data[3:]
        if encoding != "utf-8":
            self._decoder = codecs.getincrementaldecoder(encoding)("surrogatepass")
        return data

    def _guard(self, data: bytes, *, final: bool) -> bytes:
        """``data`` with every unpaired surrogate, escaped or raw, replaced by NOT_TEXT (same length).

        The tail that may be the start of an escape continued in the next read is held back.
        """
        data = self._carry + data
        self._carry = b""
        has_escape, has_raw = b"\\" in data, b"\xed" in data
        if not has_escape and not has_raw:  # the usual case: nothing to look at
            return data
        end = len(data)
        out = bytearray(data)
        if has_raw:
            for match in _RAW_SURROGATE.finditer(data):
                out[match.start() : match.end()] = _NOT_TEXT_BYTES
            if not final:
                tail = data.rfind(b"\xed", max(0, end - 2))
                if tail >= 0 and not _RAW_SURROGATE.match(data, tail):
                    end = tail  # a raw sequence cut by the read
        if has_escape:
            position, limit = 0, len(data) if final else len(data) - _HOLD
            while (match := _ESCAPE.search(data, position)) is not None:
                start = match.start()
                if start > limit:  # the escape or its pair may continue in the next read
                    end = min(end, start)
                    break
                position = match.end()
                if position - start == 2:  # an escaped backslash
                    continue
                if data[start + 3 : start + 4] in b"89abAB":  # a high surrogate: fine if a low one follows
                    pair = _LOW_ESCAPE.match(data, position)
                    if pair is not None:
                        position = pair.end()
                        continue
                out[start:position] = _NOT_TEXT_ESCAPE
            else:
                if not final:  # an escape cut by the read: from its backslash on, to the next read
                    tail = data.find(b"\\", max(position, limit))
                    if tail >= 0:
                        end = min(end, tail)
        self._carry = data[end:]
        return bytes(out[:end])


def _number(value: Any) -> Any:
    """A value read with exact numbers, with the floats json.loads would have made (ints stay)."""
    if type(value) is Decimal:
        return float(value)
    if type(value) is list:
        return [_number(v) for v in value]
    if type(value) is dict:
        return {k: _number(v) for k, v in value.items()}
    return value


def _join_key(value: Any) -> bytes | None:
    """What an image id and an annotation's image_id join on: integers and strings only."""
    kind = type(value)
    if kind is int:
        return b"i" + str(value).encode()
    if kind is str:
        return b"s" + value.encode("utf-8", "surrogatepass")
    return None


def _category_key(value: Any) -> Any:
    """A category id as the categories dict holds it; None for one that names no category."""
    if value is None or isinstance(value, (bool, list, dict)):  # True would equal the id 1
        return None
    return value


class _Spool:
    """What the conversion needs of the file's entries, on disk, filled as the file is read."""

    SCHEMA = """
        CREATE TABLE images (seq INTEGER PRIMARY KEY, name BLOB, id BLOB, key BLOB, data BLOB);
        CREATE TABLE annotations (seq INTEGER PRIMARY KEY, key BLOB, data BLOB);
    """

    def __init__(self, directory: str) -> None:
        # check_same_thread=False: a stream may be read in another thread than the one that
        # opened it (one at a time: it is not for concurrent use).
        self.db = sqlite3.connect(os.path.join(directory, "spool.sqlite"), isolation_level=None, check_same_thread=False)
        # Nothing here must survive a crash: no journal, no syncing. Sorts and indexes spill
        # to files past the page cache, so memory stays flat (https://www.sqlite.org/pragma.html).
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE", f"cache_size = -{SQLITE_CACHE_KIB}"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(self.SCHEMA)
        self.db.execute("BEGIN")
        self.exact = False
        self.reset()

    def reset(self, key: str | None = None) -> None:
        """Forget one top-level list (it appeared again: the last one counts), or everything."""
        if key in (None, "images"):
            self.db.execute("DELETE FROM images")
            self.images: list[tuple[bytes, bytes, bytes | None, bytes]] = []
            self.image_seq = 0
            self.not_objects = 0  # images entries that are not objects
        if key in (None, "annotations"):
            self.db.execute("DELETE FROM annotations")
            self.annotations: list[tuple[bytes | None, bytes]] = []
            self.annotation_seq = 0
        if key in (None, "categories"):
            self.categories: dict[Any, str] = {}

    def add(self, key: str, entries: list[Any]) -> None:
        if key == "images":
            self._add_images(entries)
        elif key == "annotations":
            self._add_annotations(entries)
        elif key == "categories":
            for category in entries:
                if isinstance(category, dict) and "id" in category and isinstance(category.get("name"), str):
                    category_id = _category_key(_number(category["id"]) if self.exact else category["id"])
                    if category_id is not None:
                        self.categories[category_id] = category["name"]

    def _add_images(self, entries: list[Any]) -> None:
        rows = self.images
        for image in entries:
            if type(image) is not dict:
                self.not_objects += 1
                continue
            image_id, file_name = image.get("id"), image.get("file_name", "")
            if self.exact:
                image_id, file_name = _number(image_id), _number(file_name)
            # The former reader's order: str(file_name), then str(id) (the name normalised here).
            name = str(file_name)
            if type(file_name) is str and file_name:
                try:
                    name = normalise_image_name(file_name)
                except AnnotationError:
                    pass
            rows.append((
                name.encode("utf-8", "surrogatepass"), str(image_id).encode("utf-8", "surrogatepass"),
                _join_key(image_id), marshal.dumps((image_id, file_name)),
            ))  # fmt: skip
            if len(rows) >= ROWS_PER_INSERT:
                self.flush()

    def _add_annotations(self, entries: list[Any]) -> None:
        rows = self.annotations
        for annotation in entries:
            index = self.annotation_seq
            self.annotation_seq += 1
            if type(annotation) is not dict:
                rows.append((None, marshal.dumps((False, None, index, None, None, None, None))))
                continue
            get = annotation.get
            fields = ["id" in annotation, get("id"), index, get("image_id"), get("category_id"), get("bbox"), get("pair_id")]
            if self.exact:
                fields = _number(fields)
            rows.append((_join_key(fields[3]), marshal.dumps(tuple(fields))))
            if len(rows) >= ROWS_PER_INSERT:
                self.flush()

    def flush(self) -> None:
        if self.images:
            start = self.image_seq
            self.db.executemany(
                "INSERT INTO images (seq, name, id, key, data) VALUES (?, ?, ?, ?, ?)",
                [(start + n, *row) for n, row in enumerate(self.images)],
            )
            self.image_seq += len(self.images)
            self.images.clear()
        if self.annotations:
            start = self.annotation_seq - len(self.annotations)
            self.db.executemany("INSERT INTO annotations (seq, key, data) VALUES (?, ?, ?)", [(start + n, *row) for n, row in enumerate(self.annotations)])
            self.annotations.clear()

    def finish(self) -> None:
        """Rank the images in conversion order, and index the annotations by image."""
        self.flush()
        for statement in (
            "CREATE TABLE ranked (rank INTEGER PRIMARY KEY, image INTEGER)",
            # BLOBs compare as bytes, and UTF-8 bytes in the order of their code points: Python's str order.
            "INSERT INTO ranked (rank, image) SELECT row_number() OVER (ORDER BY name, id, seq) - 1, seq FROM images",
            "CREATE INDEX annotations_by_image ON annotations (key, seq)",
            "CREATE INDEX images_by_key ON images (key)",
            "COMMIT",
        ):
            self.db.execute(statement)


class CocoStream:
    """A COCO file read once into a spool on disk, then iterated in conversion order (see the
    module docstring), whole or by ranges of image entries."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.categories: dict[Any, str] = {}
        self.problem: AnnotationError | None = None  # why a COCO file cannot be read at all
        self._images = 0
        self._not_objects = 0
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._db: sqlite3.Connection | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, source: str, directory: str | None = None) -> "CocoStream":
        """Read the COCO file at ``path`` into a spool (in a temporary directory under
        ``directory``, default the system's). ``source`` is how reports name the file.

        Raises NotCoco when the file is not a COCO document (a top-level object with ``images``
        and ``annotations`` lists). A COCO file that is not valid JSON gives a stream with
        ``problem`` set, and no images.
        """
        stream = cls(source)
        with open(path, "rb") as handle:
            start = handle.read(4096)
            stripped = start[3:] if start.startswith(codecs.BOM_UTF8) else start
            encoding = json.detect_encoding(start)
            if encoding not in ("utf-8", "utf-8-sig"):
                stripped = start.decode(encoding, "replace").lstrip("\ufeff").encode()
            if not stripped.lstrip(b" \t\r\n").startswith(b"{"):
                raise NotCoco("not_an_annotation", "not a COCO file: 'images' and 'annotations' lists expected")
            for exact in (False, True):
                handle.seek(0)
                stream._close()
                stream._directory = tempfile.TemporaryDirectory(prefix="coco-", dir=directory)
                spool = _Spool(stream._directory.name)
                spool.exact = exact
                try:
                    document = stream._read(handle, spool)
                except _Overflow:
                    spool.db.close()
                    continue  # a number beyond doubles or 64-bit integers: again, with exact numbers
                except _Broken as broken:
                    spool.db.close()
                    stream._close()
                    if not broken.coco:
                        raise NotCoco("invalid_json", broken.detail) from None
                    stream.problem = AnnotationError("invalid_json", broken.detail, source)
                    return stream
                break
        if not (type(document.get("images")) is list and type(document.get("annotations")) is list):
            spool.db.close()
            stream._close()
            raise NotCoco("not_an_annotation", "not a COCO file: 'images' and 'annotations' lists expected")
        spool.finish()
        stream._db = spool.db
        stream.categories = spool.categories
        stream._not_objects = spool.not_objects
        stream._images = spool.not_objects + spool.image_seq
        return stream

    def _read(self, handle: IO[bytes], spool: _Spool) -> dict[str, Any]:
        """One pass of the parser over the file, filling ``spool``; the top-level object, with
        its lists emptied."""
        document: dict[str, Any] | None = None
        lists: dict[str, list[Any]] = {}  # the top-level lists being drained, by key

        def new_map() -> dict[str, Any]:
            nonlocal document
            made: dict[str, Any] = {}
            if document is None:
                document = made  # the first object the parser makes is the top-level one
            return made

        def drain(final: bool = False) -> None:
            if document is None:
                return
            for key, value in document.items():
                if type(value) is not list:
                    continue
                if lists.get(key) is not value:  # the key again: json.loads keeps the last one
                    lists[key] = value
                    spool.reset(key)
                if len(value) > 1 or (final and value):
                    done = value[:] if final else value[:-1]  # the last entry may be unfinished
                    del value[: len(done)]
                    spool.add(key, done)

        reader = _Reader(handle, drain)
        try:
            for _ in BACKEND.items(reader, "", map_type=new_map, use_float=not spool.exact, buf_size=READ_SIZE):
                pass  # the one top-level value; a second one is an error of the parser's
        except (ijson.JSONError, ValueError) as exc:
            if reader.failure is not None:
                raise reader.failure
            message = self._message(exc, reader)
            if not spool.exact and "overflow" in message:
                raise _Overflow() from None
            # Whether the file had shown itself a COCO file, by a top-level images or annotations list.
            coco = any(key in lists or (document is not None and type(document.get(key)) is list) for key in ("images", "annotations"))
            raise _Broken(message, coco) from None
        assert document is not None  # the file starts with "{"
        drain(final=True)
        return document

    @staticmethod
    def _message(exc: BaseException, reader: _Reader) -> str:
        """The parser's error as one line, with where in the file it is."""
        text = exc.args[0] if exc.args else str(exc)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "backslashreplace")
        lines = [line.strip() for line in str(text).splitlines() if line.strip()]
        message = lines[0] if lines else type(exc).__name__
        context = lines[1] if len(lines) > 1 and not lines[1].startswith("(right here)") else ""
        start = reader.offset - reader.last
        where = f"bytes {start:,}-{reader.offset:,}" if reader.offset else "the start"
        detail = f"not valid JSON, in {where} of the file: {message}" + (f" at {context[:80]!r}" if context else "")
        if re.search(r"\b-?(NaN|Infinity)\b", context):
            detail += " (NaN and Infinity are not JSON numbers: RFC 8259, section 6)"
        return detail

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def close(self) -> None:
        """Remove the spool (also done when the stream is garbage collected)."""
        self._close()

    def __enter__(self) -> "CocoStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def category_names(self) -> frozenset[str]:
        return frozenset(name for name in self.categories.values() if is_text(name))

    def __len__(self) -> int:
        return self._images

    def __iter__(self) -> Iterator[ImageAnnotation | AnnotationError | Rejection]:
        return self.items()

    def items(self, start: int = 0, stop: int | None = None) -> Iterator[ImageAnnotation | AnnotationError | Rejection]:
        """The items of image entries ``start`` up to ``stop`` (default: the end), in conversion
        order; the file-level ones (orphan annotations, or ``problem``) with the first range,
        ``0..n`` (n > 0, or n = 0 when there are no images)."""
        stop = self._images if stop is None else min(stop, self._images)
        if start < 0 or stop < start:
            raise ValueError(f"image range {start}..{stop} is not within 0..{self._images}")
        if start == 0 and (stop > 0 or self._images == 0):  # the first range (an empty 0..0 is not, unless there are no images)
            if self.problem is not None:
                yield self.problem
            yield from self._orphans()
        for _ in range(start, min(stop, self._not_objects)):
            yield AnnotationError("not_an_annotation", "an 'images' entry is not an object", self.source)
        first, last = max(start - self._not_objects, 0), stop - self._not_objects
        if last > first:
            yield from self._images_ranked(first, last)

    def _orphans(self) -> Iterator[Rejection]:
        if self._db is None:
            return
        rows = self._db.execute(
            "SELECT data FROM annotations WHERE key IS NULL OR key NOT IN (SELECT key FROM images WHERE key IS NOT NULL) ORDER BY seq"
        )
        for (data,) in rows:
            has_id, annotation_id, index, image_id, *_ = marshal.loads(data)
            label = annotation_id if has_id else index
            yield Rejection(self.source, None, "orphan_annotation", f"annotation {label} refers to no image (image_id {image_id!r})", f"annotation {label}")

    def _images_ranked(self, first: int, last: int) -> Iterator[ImageAnnotation | AnnotationError]:
        assert self._db is not None
        rows = self._db.execute(
            """SELECT r.rank, i.data, a.data FROM ranked AS r JOIN images AS i ON i.seq = r.image
               LEFT JOIN annotations AS a ON a.key = i.key
               WHERE r.rank >= ? AND r.rank < ? ORDER BY r.rank, a.seq""",
            (first, last),
        )
        for _, group in itertools.groupby(rows, key=lambda row: row[0]):
            group = list(group)
            image_id, file_name = marshal.loads(group[0][1])
            annotations = [marshal.loads(row[2]) for row in group if row[2] is not None]
            yield self._image(image_id, file_name, annotations)

    def _image(self, image_id: Any, file_name: Any, annotations: list[tuple[Any, ...]]) -> ImageAnnotation | AnnotationError:
        where = f"{self.source}#image{image_id}"
        if not isinstance(file_name, str) or not file_name:
            return AnnotationError("not_an_annotation", f"image {image_id!r} has no file_name", where)
        if _join_key(image_id) is None:
            return AnnotationError("invalid_id", f"image id {image_id!r} is not an integer or a string", where)
        try:
            name = normalise_image_name(file_name)
        except AnnotationError as exc:
            exc.source = where
            return exc
        pair_ids = set()
        boxes = []
        for index, (has_id, annotation_id, _, _, category_id, bbox, pair_id) in enumerate(annotations):
            item = f"annotation {annotation_id if has_id else index}"
            if pair_id is not None:
                problem = pair_id_problem(pair_id)
                if problem is not None:  # the image's split group is unknown: it cannot be placed
                    return AnnotationError("invalid_pair_id", f"{item}: {problem}", where)
                pair_ids.add(str(pair_id))  # the least as text, as the former reader chose it
            boxes.append(self._box(item, category_id, bbox))
        return ImageAnnotation(source=where, image_candidates=(name,), pair_id=min(pair_ids) if pair_ids else None, boxes=boxes)

    def _box(self, item: str, category_id: Any, bbox: Any) -> SourceBox:
        xyxy: Any = bbox
        if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            x, y, w, h = bbox
            xyxy = [x, y, x + w, y + h]
        key = _category_key(category_id)
        name = self.categories.get(key) if key is not None else None
        if name is not None and not is_text(name):
            return SourceBox(item, None, category_id, xyxy, ("invalid_category_name", f"category {category_id!r} has a name that is {NOT_TEXT_DETAIL}"))
        return SourceBox(item, name, category_id, xyxy)


class _Overflow(Exception):
    """A number the fast pass cannot hold (beyond 64-bit integers or doubles)."""


class _Broken(Exception):
    """The file is not valid JSON; ``coco`` when it had shown top-level images or annotations lists."""

    def __init__(self, detail: str, coco: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.coco = coco
