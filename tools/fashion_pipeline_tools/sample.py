"""A small deterministic generator of DeepFashion2-format data: real images, full annotations.

Real DeepFashion2 is licence-gated, so tests, the demo and the benchmarks use this instead.
Layout as in the dataset: ``annos/000001.json`` beside ``image/000001.jpg``. Each image has
a plain background and one to three garments drawn as polygons; the annotation carries
every field of the dataset's format (source, pair_id, and per item category_name,
category_id, style, bounding_box, landmarks, segmentation, scale, occlusion, zoom_in,
viewpoint). Shop and user photos come in pairs sharing a ``pair_id``.
"""

from __future__ import annotations

import io
import json
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

from fashion_pipeline.images import ImageError, probe_file
from fashion_pipeline.labels import CATEGORY_NAMES

# The dataset's own spelling, which the catalogue deliberately does not use.
DATASET_NAMES = {
    1: "short sleeve top", 2: "long sleeve top", 3: "short sleeve outwear", 4: "long sleeve outwear",
    5: "vest", 6: "sling", 7: "shorts", 8: "trousers", 9: "skirt", 10: "short sleeve dress",
    11: "long sleeve dress", 12: "vest dress", 13: "sling dress",
}
LANDMARKS = {1: 25, 2: 33, 3: 31, 4: 39, 5: 15, 6: 15, 7: 10, 8: 14, 9: 8, 10: 29, 11: 37, 12: 19, 13: 19}
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


def add_app_segments(jpeg: bytes, payload_bytes: int) -> bytes:
    """Insert APP1 (XMP) segments of ``payload_bytes`` after SOI: the frame header moves far in."""
    segments = []
    remaining = payload_bytes
    while remaining > 0:
        chunk = min(remaining, 65533 - len(XMP_HEADER))
        body = XMP_HEADER + b" " * chunk
        segments.append(b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body)
        remaining -= chunk
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


@dataclass
class SampleSet:
    root: Path
    annotations: Path
    images: Path
    files: list[str] = field(default_factory=list)  # annotation file names written
    defects: dict[str, str] = field(default_factory=dict)  # file name -> expected reason


def _garment(rng: random.Random, category: int, width: int, height: int, index: int) -> dict:
    bw = rng.randint(max(16, width // 5), max(20, width * 3 // 4))
    bh = rng.randint(max(16, height // 5), max(20, height * 3 // 4))
    x1 = rng.randint(0, width - bw)
    y1 = rng.randint(0, height - bh)
    x2, y2 = x1 + bw, y1 + bh
    polygon = [x1 + bw // 2, y1, x2, y1 + bh // 3, x2 - bw // 6, y2, x1 + bw // 6, y2, x1, y1 + bh // 3]
    landmarks = []
    for _ in range(LANDMARKS[category]):
        landmarks += [rng.randint(x1, x2), rng.randint(y1, y2), rng.choice((1, 2, 2))]
    return {
        "segmentation": [polygon],
        "scale": rng.randint(1, 3),
        "viewpoint": rng.randint(1, 3),
        "zoom_in": rng.randint(1, 3),
        "landmarks": landmarks,
        "style": index + 1 if rng.random() < 0.7 else 0,
        "bounding_box": [x1, y1, x2, y2],
        "category_id": category,
        "occlusion": rng.randint(1, 3),
        "category_name": DATASET_NAMES[category],
    }


def _colour(category: int, shade: int) -> tuple[int, int, int]:
    rng = random.Random(category * 7919)
    return tuple(max(0, min(255, rng.randint(40, 215) + shade)) for _ in range(3))  # type: ignore[return-value]


def render(annotation: dict, width: int, height: int, *, fmt: str, rng: random.Random) -> bytes:
    from PIL import Image, ImageDraw  # only the generator needs Pillow

    background = tuple(rng.randint(200, 250) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for key in sorted(k for k in annotation if k.startswith("item")):
        item = annotation[key]
        draw.polygon(item["segmentation"][0], fill=_colour(item["category_id"], rng.randint(-20, 20)))
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG")
    else:
        image.save(out, "JPEG", quality=85)
    return out.getvalue()


def generate(
    root: str | Path,
    *,
    images: int = 40,
    seed: int = 7,
    defects: bool = False,
    far_header_every: int = 10,
    png_every: int = 4,
    size_range: tuple[int, int] = (320, 720),
) -> SampleSet:
    """Write ``images`` annotated images (and, with ``defects``, one of each known fault)."""
    root = Path(root)
    sample = SampleSet(root, root / "annos", root / "image")
    sample.annotations.mkdir(parents=True, exist_ok=True)
    sample.images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    categories = sorted(CATEGORY_NAMES)
    for number in range(1, images + 1):
        stem = f"{number:06d}"
        width, height = rng.randint(*size_range), rng.randint(*size_range)
        annotation: dict = {"source": "shop" if number % 2 else "user", "pair_id": (number + 1) // 2}
        # Cycle through every category so even small sets cover the whole catalogue.
        first = categories[(number - 1) % len(categories)]
        chosen = [first] + rng.sample(categories, rng.randint(0, 2))
        for index, category in enumerate(chosen):
            annotation[f"item{index + 1}"] = _garment(rng, category, width, height, index)
        fmt = "png" if png_every and number % png_every == 0 else "jpg"
        data = render(annotation, width, height, fmt=fmt, rng=rng)
        if fmt == "jpg" and far_header_every and number % far_header_every == 0:
            data = add_app_segments(data, 150_000)
        (sample.images / f"{stem}.{fmt}").write_bytes(data)
        (sample.annotations / f"{stem}.json").write_text(json.dumps(annotation))
        sample.files.append(f"{stem}.json")
    if defects:
        _write_defects(sample, rng, start=images + 1)
    return sample


def _write_defects(sample: SampleSet, rng: random.Random, start: int) -> None:
    """One input per failure the report must explain (the file name says which)."""

    def base(number: int, width: int = 400, height: int = 400, items: int = 1) -> dict:
        annotation: dict = {"source": "user", "pair_id": 10_000 + number}
        for index in range(items):
            annotation[f"item{index + 1}"] = _garment(rng, 1 + index % 13, width, height, index)
        return annotation

    def write(number: int, reason: str, annotation: dict | None, image: bytes | None, ext: str = "jpg", raw: str | None = None) -> None:
        stem = f"{number:06d}"
        if image is not None:
            (sample.images / f"{stem}.{ext}").write_bytes(image)
        text = raw if raw is not None else json.dumps(annotation)
        (sample.annotations / f"{stem}.json").write_text(text)
        sample.files.append(f"{stem}.json")
        sample.defects[f"{stem}.json"] = reason

    n = start
    write(n, "invalid_json", None, None, raw='{"source": "shop", "item1": {')
    n += 1
    write(n, "image_missing", base(n), None)
    n += 1
    small = base(n, 40, 40)
    small["item1"]["bounding_box"] = [2, 2, 30, 30]
    write(n, "image_dimensions", small, render(small, 40, 40, fmt="jpg", rng=rng))
    n += 1
    gif = base(n)
    write(n, "image_unsupported_format", gif, b"GIF89a" + bytes(64))
    n += 1
    crowded = base(n, 600, 600, items=51)
    write(n, "too_many_boxes", crowded, render(crowded, 600, 600, fmt="jpg", rng=rng))
    n += 1
    no_boxes = base(n)
    no_boxes["item1"]["category_id"] = 99
    write(n, "no_valid_boxes", no_boxes, render(no_boxes, 400, 400, fmt="jpg", rng=rng))
    n += 1
    # The image survives; its second box is dropped (1 px wide) and its first is clipped.
    partial = base(n, items=2)
    partial["item1"]["bounding_box"] = [300, 300, 480, 460]
    partial["item2"]["bounding_box"] = [10, 10, 11, 200]
    write(n, "box_too_small", partial, render(partial, 400, 400, fmt="jpg", rng=rng))
    (sample.annotations / "README.txt").write_text("not an annotation\n")
    sample.files.append("README.txt")
    sample.defects["README.txt"] = "unsupported_file"


# Offsets of each category's landmarks in the 294-point COCO keypoint vector.
_KEYPOINT_OFFSETS = [0, 25, 58, 89, 128, 143, 158, 168, 182, 190, 219, 256, 275, 294]


def to_coco(sample: SampleSet) -> dict:
    """The sample as DeepFashion2's ``deepfashion2_to_coco.py`` writes it.

    Snake_case category names, empty ``date_captured``, ``bbox`` as [x, y, w, h], and 294x3
    keypoints per annotation. Defect files that are not valid annotations are skipped.
    """
    images, annotations = [], []
    for number, name in enumerate(sorted(sample.files), start=1):
        try:
            annotation = json.loads((sample.annotations / name).read_text())
        except ValueError:
            continue
        stem = name[:-5]
        found = [p for p in (sample.images / f"{stem}.jpg", sample.images / f"{stem}.png") if p.exists()]
        file_name = found[0].name if found else f"{stem}.jpg"
        try:
            width, height = _size(found[0]) if found else (0, 0)
        except ImageError:
            width, height = 0, 0
        images.append({"coco_url": "", "date_captured": "", "file_name": file_name, "flickr_url": "", "id": number, "license": 0, "width": width, "height": height})
        for key in sorted((k for k in annotation if k.startswith("item")), key=lambda k: int(k[4:])):
            item = annotation[key]
            x1, y1, x2, y2 = item["bounding_box"]
            category = item["category_id"]
            points = [0] * (294 * 3)
            if category in LANDMARKS:
                start = _KEYPOINT_OFFSETS[category - 1]
                points[start * 3 : start * 3 + len(item["landmarks"])] = item["landmarks"]
            annotations.append({
                "area": (x2 - x1) * (y2 - y1), "bbox": [x1, y1, x2 - x1, y2 - y1], "category_id": category,
                "id": len(annotations) + 1, "pair_id": annotation["pair_id"], "image_id": number, "iscrowd": 0,
                "style": item["style"], "num_keypoints": sum(1 for v in item["landmarks"][2::3] if v > 0),
                "keypoints": points, "segmentation": item["segmentation"],
            })
    categories = [
        {"id": cid, "name": name, "supercategory": "clothes", "keypoints": [str(i) for i in range(1, 295)], "skeleton": []}
        for cid, name in sorted(CATEGORY_NAMES.items())
    ]
    return {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def _size(path: Path) -> tuple[int, int]:
    info, _ = probe_file(path)
    return info.width, info.height
