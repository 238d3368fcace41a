"""A fast, deterministic DeepFashion2-format data set of N images, for benchmarks.

Annotations are full DeepFashion2 files (every field of the format, via
``fashion_pipeline_tools.sample._garment``); images are byte copies from a small pool of real
pre-rendered JPEGs and PNGs (16 sizes between 320 and 800 px), so 100,000 images take
seconds rather than the minutes rendering each one would. Every annotation's boxes fit the
size of the image file written beside it. About 1 in 4 images is a PNG and 1 in 10 JPEGs
carries 150 KB of XMP (APP1) segments in front of its frame header.

Sets are cached under ``build/bench-data/<N>/`` (``annos/`` and ``image/``) and reused when a
previous run finished writing them (a ``.complete`` marker with the same parameters).

    .venv/bin/python bench/dataset.py 20000
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from fashion_pipeline.labels import CATEGORY_NAMES
from fashion_pipeline_tools.sample import _garment, add_app_segments, render

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "bench-data"
VERSION = 1  # bump when the layout or content changes, so stale caches are rebuilt

POOL_SIZE = 16
SIZE_RANGE = (320, 800)
PNG_EVERY = 4  # every 4th image is a PNG
XMP_EVERY = 10  # every 10th JPEG has its frame header behind 150 KB of XMP
XMP_BYTES = 150_000


@dataclass(frozen=True)
class PoolImage:
    width: int
    height: int
    jpg: bytes
    jpg_xmp: bytes
    png: bytes


@dataclass(frozen=True)
class BenchSet:
    root: Path
    annotations: Path
    images: Path
    count: int


def image_pool(seed: int = 7) -> list[PoolImage]:
    """16 real images (rendered garments on a plain background) in JPEG, JPEG+XMP and PNG."""
    rng = random.Random(seed * 1_000_003 + 1)
    categories = sorted(CATEGORY_NAMES)
    pool = []
    for index in range(POOL_SIZE):
        width, height = rng.randint(*SIZE_RANGE), rng.randint(*SIZE_RANGE)
        annotation = {"source": "shop", "pair_id": index + 1}
        for n, category in enumerate([categories[index % len(categories)]] + rng.sample(categories, 2)):
            annotation[f"item{n + 1}"] = _garment(rng, category, width, height, n)
        jpg = render(annotation, width, height, fmt="jpg", rng=random.Random(index))
        png = render(annotation, width, height, fmt="png", rng=random.Random(index))
        pool.append(PoolImage(width, height, jpg, add_app_segments(jpg, XMP_BYTES), png))
    return pool


def _params(count: int, seed: int) -> dict:
    return {
        "version": VERSION, "count": count, "seed": seed, "pool": POOL_SIZE, "size_range": list(SIZE_RANGE),
        "png_every": PNG_EVERY, "xmp_every": XMP_EVERY, "xmp_bytes": XMP_BYTES,
    }


def generate(root: str | os.PathLike[str], count: int, *, seed: int = 7) -> BenchSet:
    """Write ``count`` annotation files to ``root/annos`` and their images to ``root/image``."""
    root = Path(root)
    annos, images = root / "annos", root / "image"
    annos.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    annos_dir, images_dir = str(annos), str(images)
    pool = image_pool(seed)
    rng = random.Random(seed)
    categories = sorted(CATEGORY_NAMES)
    jpegs = 0
    dumps = json.JSONEncoder(separators=(", ", ": ")).encode  # json.dumps' default layout
    for number in range(1, count + 1):
        stem = f"{number:06d}"
        picture = pool[rng.randrange(POOL_SIZE)]
        width, height = picture.width, picture.height
        annotation: dict = {"source": "shop" if number % 2 else "user", "pair_id": (number + 1) // 2}
        first = categories[(number - 1) % len(categories)]  # every category, even in small sets
        chosen = [first] + rng.sample(categories, rng.randint(0, 2))
        for index, category in enumerate(chosen):
            annotation[f"item{index + 1}"] = _garment(rng, category, width, height, index)
        if number % PNG_EVERY == 0:
            name, data = f"{stem}.png", picture.png
        else:
            jpegs += 1
            name, data = f"{stem}.jpg", picture.jpg_xmp if jpegs % XMP_EVERY == 0 else picture.jpg
        with open(os.path.join(images_dir, name), "wb") as handle:
            handle.write(data)
        with open(os.path.join(annos_dir, f"{stem}.json"), "w", encoding="utf-8") as handle:
            handle.write(dumps(annotation))
    return BenchSet(root, annos, images, count)


def bench_set(count: int, *, seed: int = 7, cache: Path = CACHE, log=None) -> BenchSet:
    """The cached set of ``count`` images, generated first when missing or incomplete."""
    root = cache / str(count)
    marker = root / ".complete"
    params = _params(count, seed)
    try:
        if json.loads(marker.read_text()) == params:
            return BenchSet(root, root / "annos", root / "image", count)
    except (OSError, ValueError):
        pass
    if root.exists():
        shutil.rmtree(root)
    if log:
        log(f"generating {count:,} images in {root} ...")
    result = generate(root, count, seed=seed)
    os.sync()  # write back now, not during the timed runs
    marker.write_text(json.dumps(params))
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = bench_set(args.count, seed=args.seed, log=lambda m: print(m, file=sys.stderr))
    print(f"{result.count:,} images: {result.annotations} {result.images} ({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
