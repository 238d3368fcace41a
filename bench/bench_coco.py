"""Benchmark: ``fashion-pipeline convert`` of one DeepFashion2 COCO file, streamed against whole-document.

For each size N (default 20,000 and 80,000 images) a COCO file is written as DeepFashion2's
``deepfashion2_to_coco.py`` writes it (``info``, ``licenses``, ``images``, ``annotations``,
``categories``; per annotation ``area``, ``bbox``, ``category_id``, ``id``, ``pair_id``, ``image_id``,
``iscrowd``, ``style``, ``num_keypoints``, 294x3 ``keypoints``, ``segmentation``), from the cached
``bench/dataset.py`` set of N images (whose files it names), in two orders: ``images`` first (as
that script writes it) and ``annotations`` first (the order a streaming reader finds hardest).
Each is converted with

    fashion-pipeline convert COCO --images IMAGES --image-uri s3://bench-bucket/images/ --out OUT

by two variants, each in a fresh process of its own, alternating ``--repeat`` times:

* ``whole``: the former reader, ``json.loads`` of the whole document (``WholeDocument`` below, the
  code ``fashion_pipeline/coco.py`` had before it streamed), put in place of ``CocoStream``;
* ``stream``: the shipped ``CocoStream`` (ijson's C backend, an SQLite spool on disk).

Reported per run: wall time of the conversion (``cli.main``), the part of it spent reading the
file (``open_source``: parse and spool), and the process's peak resident memory (``VmHWM`` from
``/proc/self/status``, imports included). The four outputs of one size (two variants, two
orders) must be the same bytes: the manifests, and the report but for its timing.

Targets: stream peak below 300 MB at 20,000 images, and flat in N (at most 10% growth from the
smallest to the largest size).

    .venv/bin/python bench/bench_coco.py                          # 20,000 and 80,000 images
    .venv/bin/python bench/bench_coco.py --sizes 2000 --repeat 1  # a quick run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dataset import CACHE, ROOT, bench_set  # noqa: E402

RESULTS = HERE / "results" / "coco.json"
OUT = ROOT / "build" / "bench-out" / "coco"
IMAGE_URI = "s3://bench-bucket/images/"
ORDERS = ("images-first", "annotations-first")
VARIANTS = ("whole", "stream")
MAX_PEAK_MB = 300.0
MAX_PEAK_GROWTH = 0.10
COCO_VERSION = 1  # bump when the file's layout changes, so cached files are rebuilt
KEYPOINTS = 294  # DeepFashion2's COCO keypoint vector: every category's landmarks, 3 values each
# Offsets of each category's landmarks in that vector (deepfashion2_to_coco.py).
KEYPOINT_OFFSETS = [0, 25, 58, 89, 128, 143, 158, 168, 182, 190, 219, 256, 275, 294]
SEGMENTATION_POINTS = 80  # points per polygon: DeepFashion2 outlines garments in dozens (and the file then weighs what its 20,000-image one does)


# --- the COCO file -----------------------------------------------------------------------------


def _outline(polygon: list[int], points: int) -> list[int]:
    """The garment's polygon with points added along its edges, as a hand-drawn outline has."""
    corners = list(zip(polygon[0::2], polygon[1::2]))
    out: list[int] = []
    per_edge = max(1, points // len(corners))
    for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1]):
        for step in range(per_edge):
            out += [x1 + (x2 - x1) * step // per_edge, y1 + (y2 - y1) * step // per_edge]
    return out


def _entries(count: int) -> tuple[list[str], Iterator[str]]:
    """The images entries (a list: small) and the annotations entries (a generator), as JSON text."""
    from fashion_pipeline.images import probe_file

    data = bench_set(count, log=lambda m: print(m, file=sys.stderr, flush=True))
    dumps = json.JSONEncoder().encode  # json.dump's default layout, as the script writes
    images, sizes = [], {}
    for number in range(1, count + 1):
        stem = f"{number:06d}"
        name = f"{stem}.png" if (data.images / f"{stem}.png").exists() else f"{stem}.jpg"
        info, _ = probe_file(data.images / name)
        sizes[number] = (info.width, info.height)
        images.append(dumps({"coco_url": "", "date_captured": "", "file_name": name, "flickr_url": "", "id": number, "license": 0,
                             "width": info.width, "height": info.height}))

    def annotations() -> Iterator[str]:
        next_id = 1
        for number in range(1, count + 1):
            annotation = json.loads((data.annotations / f"{number:06d}.json").read_bytes())
            for key in sorted((k for k in annotation if k.startswith("item")), key=lambda k: int(k[4:])):
                item = annotation[key]
                x1, y1, x2, y2 = item["bounding_box"]
                category = item["category_id"]
                points = [0] * (KEYPOINTS * 3)
                start = KEYPOINT_OFFSETS[category - 1] * 3
                points[start : start + len(item["landmarks"])] = item["landmarks"]
                yield dumps({
                    "area": (x2 - x1) * (y2 - y1), "bbox": [x1, y1, x2 - x1, y2 - y1], "category_id": category, "id": next_id,
                    "pair_id": annotation["pair_id"], "image_id": number, "iscrowd": 0, "style": item["style"],
                    "num_keypoints": sum(1 for v in item["landmarks"][2::3] if v > 0), "keypoints": points,
                    "segmentation": [_outline(polygon, SEGMENTATION_POINTS) for polygon in item["segmentation"]],
                })  # fmt: skip
                next_id += 1

    return images, annotations()


def coco_files(count: int, log) -> dict[str, Path]:
    """The two COCO files of ``count`` images (cached beside the data set), by order."""
    from fashion_pipeline.labels import CATEGORY_NAMES

    folder = CACHE / "coco" / str(count)
    marker = folder / ".complete"
    paths = {order: folder / f"{order}.json" for order in ORDERS}
    params = {"version": COCO_VERSION, "count": count, "segmentation_points": SEGMENTATION_POINTS}
    try:
        if json.loads(marker.read_text()) == params and all(p.exists() for p in paths.values()):
            return _same_date(paths)
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"writing the COCO files of {count:,} images in {folder} ...")
    images, annotations = _entries(count)
    categories = json.dumps([
        {"id": cid, "name": name, "supercategory": "clothes", "keypoints": [str(i) for i in range(1, KEYPOINTS + 1)], "skeleton": []}
        for cid, name in sorted(CATEGORY_NAMES.items())
    ])  # fmt: skip
    part = folder / "annotations.part"
    with open(part, "w", encoding="utf-8") as out:  # streamed: the generator holds no more than the files do
        for n, entry in enumerate(annotations):
            out.write(", " * (n > 0) + entry)
    images_text = ", ".join(images)
    for order, path in paths.items():
        with open(path, "w", encoding="utf-8") as out, open(part, encoding="utf-8") as annotations_text:
            out.write('{"info": {}, "licenses": [], ')
            first, second = ("images", "annotations") if order == "images-first" else ("annotations", "images")
            for key in (first, second):
                out.write(f'"{key}": [')
                if key == "images":
                    out.write(images_text)
                else:
                    shutil.copyfileobj(annotations_text, out)
                out.write("], ")
            out.write(f'"categories": {categories}}}')
    part.unlink()
    os.sync()
    marker.write_text(json.dumps(params))
    return _same_date(paths)


def _same_date(paths: dict[str, Path]) -> dict[str, Path]:
    """One modification time for both files: it is every manifest line's creation-date."""
    for path in paths.values():
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return paths


# --- the former reader (the baseline) ------------------------------------------------------------


class WholeDocument:
    """``fashion_pipeline.coco.CocoFile`` as it was before streaming (json.loads of the whole
    document), behind CocoStream's interface, so that ``convert`` runs unchanged around it."""

    def __init__(self, data: bytes, *, source: str) -> None:
        from fashion_pipeline.records import AnnotationError, Rejection

        self.source = source
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AnnotationError("invalid_json", f"not valid JSON: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("images"), list) or not isinstance(document.get("annotations"), list):
            raise AnnotationError("not_an_annotation", "not a COCO file: 'images' and 'annotations' lists expected")
        self.categories: dict[Any, str] = {}
        for category in document.get("categories") or []:
            if isinstance(category, dict) and "id" in category and isinstance(category.get("name"), str):
                self.categories[category["id"]] = category["name"]
        self._images = document["images"]
        self._by_image: dict[Any, list[dict[str, Any]]] = {}
        self.orphans: list[Any] = []
        image_ids = {image.get("id") for image in self._images if isinstance(image, dict)}
        for index, annotation in enumerate(document["annotations"]):
            image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
            if image_id not in image_ids:
                label = annotation.get("id", index) if isinstance(annotation, dict) else index
                self.orphans.append(
                    Rejection(source, None, "orphan_annotation", f"annotation {label} refers to no image (image_id {image_id!r})", f"annotation {label}")
                )
                continue
            self._by_image.setdefault(image_id, []).append(annotation)

    @classmethod
    def open(cls, path: Any, *, source: str, directory: str | None = None) -> "WholeDocument":
        from fashion_pipeline.coco import NotCoco
        from fashion_pipeline.records import AnnotationError

        try:
            return cls(Path(path).read_bytes(), source=source)
        except AnnotationError as exc:
            raise NotCoco(exc.reason, exc.detail) from None

    @property
    def category_names(self) -> frozenset[str]:
        return frozenset(self.categories.values())

    def __len__(self) -> int:
        return len(self._images)

    def items(self, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        from fashion_pipeline.records import AnnotationError, ImageAnnotation, SourceBox

        yield from self.orphans
        ordered = sorted(
            (image for image in self._images if isinstance(image, dict)),
            key=lambda image: (str(image.get("file_name", "")), str(image.get("id"))),
        )
        for _ in range(len(self._images) - len(ordered)):
            yield AnnotationError("not_an_annotation", "an 'images' entry is not an object", self.source)
        for image in ordered:
            file_name = image.get("file_name")
            where = f"{self.source}#image{image.get('id')}"
            if not isinstance(file_name, str) or not file_name:
                yield AnnotationError("not_an_annotation", f"image {image.get('id')!r} has no file_name", where)
                continue
            annotations = self._by_image.get(image.get("id"), [])
            pair_ids = {a.get("pair_id") for a in annotations if a.get("pair_id") is not None}
            boxes = []
            for index, annotation in enumerate(annotations):
                bbox = xyxy = annotation.get("bbox")
                if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
                    x, y, w, h = bbox
                    xyxy = [x, y, x + w, y + h]
                category_id = annotation.get("category_id")
                boxes.append(SourceBox(f"annotation {annotation.get('id', index)}", self.categories.get(category_id), category_id, xyxy))
            yield ImageAnnotation(where, (file_name,), str(min(pair_ids, key=str)) if pair_ids else None, boxes)


# --- one measured run (a child process) -------------------------------------------------------------


def _hwm_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def child(variant: str, coco: str, images: str, out: str) -> dict:
    from fashion_pipeline import sources
    from fashion_pipeline_tools import cli

    if variant == "whole":
        sources.CocoStream = WholeDocument  # open_source looks the reader up here
    opened = {}

    def timed_open_source(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        source = sources.open_source(*args, **kwargs)
        opened["read_s"] = time.perf_counter() - started
        return source

    cli.open_source = timed_open_source
    started = time.perf_counter()
    code = cli.main(["convert", coco, "--images", images, "--image-uri", IMAGE_URI, "--out", out, "--json"])
    wall = time.perf_counter() - started
    return {"code": code, "wall_s": wall, "read_s": opened["read_s"], "peak_mb": _hwm_mb()}


def spawn(variant: str, coco: Path, images: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--child", json.dumps([variant, str(coco), str(images), str(out)])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{variant} on {coco} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] not in (0, 3):
        raise SystemExit(f"convert exited {result['code']} for {variant} on {coco}")
    result["output"] = digest(out)
    return result


def digest(out: Path) -> dict:
    """What must be the same bytes for every variant and order: the manifests, and the report
    without its timing and input names."""
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    for key in ("seconds", "input"):
        summary.pop(key, None)
    return {
        "train": hashlib.sha256((out / "train.manifest").read_bytes()).hexdigest()[:16],
        "test": hashlib.sha256((out / "test.manifest").read_bytes()).hexdigest()[:16],
        "report": hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()[:16],
        "lines_out": summary["lines_out"],
    }


def measure(count: int, repeat: int, log) -> dict:
    paths = coco_files(count, log)
    images = bench_set(count, log=log).images
    result: dict[str, Any] = {"images": count, "load_average_1min": round(os.getloadavg()[0], 2), "orders": {}}
    outputs = set()
    for order, path in paths.items():
        runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
        for attempt in range(repeat):
            for variant in VARIANTS:  # interleaved, so that drift in the machine's speed hits both
                run = spawn(variant, path, images, OUT / f"{count}-{order}-{variant}")
                outputs.add(json.dumps(run.pop("output"), sort_keys=True))
                runs[variant].append({k: round(v, 3) for k, v in run.items() if k != "code"})
                log(f"  {count:>7,} {order:<17} {variant:<6} run {attempt + 1}: {run['wall_s']:7.2f} s"
                    f" (reading {run['read_s']:6.2f} s)  peak {run['peak_mb']:7.1f} MB")
        result["orders"][order] = {
            "file_mb": round(path.stat().st_size / 1e6, 1),
            **{variant: {"wall_s": statistics.median(r["wall_s"] for r in samples), "read_s": statistics.median(r["read_s"] for r in samples),
                         "peak_mb": max(r["peak_mb"] for r in samples), "runs": samples} for variant, samples in runs.items()},
        }  # fmt: skip
    if len(outputs) != 1:
        raise SystemExit(f"the outputs differ between variants or orders at {count:,} images: {sorted(outputs)}")
    result["output"] = json.loads(outputs.pop())
    return result


def table(results: list[dict]) -> str:
    rows = [
        "| images | order | file MB | whole s | whole read s | whole peak MB | stream s | stream read s | stream peak MB |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for order, o in r["orders"].items():
            w, s = o["whole"], o["stream"]
            rows.append(f"| {r['images']:,} | {order} | {o['file_mb']:.0f} | {w['wall_s']:.2f} | {w['read_s']:.2f} | {w['peak_mb']:.0f} "
                        f"| {s['wall_s']:.2f} | {s['read_s']:.2f} | {s['peak_mb']:.0f} |")
    return "\n".join(rows)


def verdict(results: list[dict]) -> dict:
    peaks = [max(o["stream"]["peak_mb"] for o in r["orders"].values()) for r in results]
    at_20k = [p for r, p in zip(results, peaks) if r["images"] >= 20_000][:1]
    growth = (peaks[-1] - peaks[0]) / peaks[0] if len(peaks) > 1 else 0.0
    return {
        "stream_peak_mb_by_size": dict(zip((r["images"] for r in results), peaks)),
        "below_300mb_at_20k": bool(at_20k) and at_20k[0] < MAX_PEAK_MB,
        "peak_growth_smallest_to_largest": round(growth, 3),
        "flat": len(peaks) < 2 or growth <= MAX_PEAK_GROWTH,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="convert of a COCO file: streamed (ijson + spool) vs whole-document json.loads")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[20_000, 80_000],
                        help="comma-separated image counts (default: 20000,80000)")
    parser.add_argument("--repeat", type=int, default=2, help="measured runs of each variant per size and order")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sizes = sorted(set(args.sizes))
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f} before the benchmark; other work on this machine will skew the times")
    results = [measure(n, args.repeat, log) for n in sizes]
    summary = verdict(results)
    print(table(results))
    print()
    print(f"stream peak < {MAX_PEAK_MB:g} MB at 20,000: {'yes' if summary['below_300mb_at_20k'] else 'NO (or not measured)'}; "
          f"growth {sizes[0]:,} -> {sizes[-1]:,}: {summary['peak_growth_smallest_to_largest']:+.1%} ({'flat' if summary['flat'] else 'GROWING'}); "
          "outputs identical across variants and orders: yes")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "benchmark": "coco",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeat": args.repeat,
        "targets": {"max_peak_mb_at_20k": MAX_PEAK_MB, "max_peak_growth": MAX_PEAK_GROWTH},
        "verdict": summary,
        "results": results,
    }, indent=2) + "\n")
    log(f"wrote {args.results}")
    return 0 if summary["flat"] and (summary["below_300mb_at_20k"] or sizes[-1] < 20_000) else 1


if __name__ == "__main__":
    sys.exit(main())
