"""The report function's work (``evaluation_report.build.build_report``) as the test set grows:
wall time and peak RSS, each size in a fresh process.

    .venv/bin/python bench/bench_report.py --sizes 10000 50000 100000

A synthetic evaluation manifest snapshot (3 ground-truth boxes and 3 classified predictions per
image, 11 labels, the format Custom Labels writes), streamed from a file as the function streams
it from S3; the training manifest is the same file (its boxes counted for the distribution);
every gallery image is a 4,096 x 3,072 px JPEG, the largest side Custom Labels accepts. The
gallery holds 24 images, as the function does (infrastructure/evaluation_report.py).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["short_sleeved_shirt", "long_sleeved_shirt", "short_sleeved_outwear", "long_sleeved_outwear", "vest", "shorts",
          "trousers", "skirt", "short_sleeved_dress", "long_sleeved_dress", "vest_dress"]  # fmt: skip


def snapshot_line(index: int) -> str:
    classes = {str(k): name for k, name in enumerate(LABELS)}
    size = [{"width": 800, "height": 600, "depth": 3}]
    truths = [{"class_id": (index + j) % 11, "left": 10 + 30 * j, "top": 10, "width": 100, "height": 120} for j in range(3)]
    predictions = [{**box, "left": box["left"] + 2} for box in truths]

    def details(hit: bool) -> dict:
        return {"version": 1, "is-true-positive": hit, "is-false-positive": not hit, "is-false-negative": False,
                "is-true-negative": False, "is-present-in-ground-truth": hit}  # fmt: skip

    return json.dumps({
        "source-ref": f"s3://images/ds/{index:06d}.jpg",
        "bbox": {"annotations": truths, "image_size": size},
        "bbox-metadata": {"type": "groundtruth/object-detection", "class-map": classes, "objects": [{"confidence": 1}] * 3,
                          "job-name": "labeling-job/bbox"},
        "eval": {"annotations": predictions, "image_size": size},
        "eval-metadata": {"type": "groundtruth/object-detection", "class-map": classes, "job-name": "rekognition-custom-labels-evaluation-job",
                          "objects": [{"confidence": 0.9, "rekognition-custom-labels-evaluation-details": details(j != 1)} for j in range(3)]},
    })  # fmt: skip


def measure(images: int) -> dict:
    """In this process: build the report of ``images`` test images; its seconds and peak RSS."""
    import resource
    import time

    sys.path.insert(0, str(ROOT / "lambdas"))
    from PIL import Image

    from evaluation_report.build import build_report

    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "snapshot.manifest"
        with manifest.open("w") as out:
            for index in range(images):
                out.write(snapshot_line(index) + "\n")
        photo = io.BytesIO()
        Image.new("RGB", (4096, 3072), (120, 140, 160)).save(photo, "JPEG", quality=90)
        summary = json.dumps({
            "AggregatedEvaluationResults": {"Precision": 0.67, "Recall": 0.67, "F1Score": 0.67},
            "LabelEvaluationResults": [{"Label": name, "NumberOfTestingImages": images // 11,
                                        "Metrics": {"Precision": 0.67, "Recall": 0.67, "F1Score": 0.67, "Threshold": 0.5}} for name in LABELS],
        }).encode()  # fmt: skip

        def open_object(bucket: str, key: str):
            if bucket == "images":
                return io.BytesIO(photo.getvalue())
            return manifest.open("rb") if key.endswith(".manifest") else io.BytesIO(summary)

        def s3(key: str) -> dict:
            return {"S3Object": {"Bucket": "out", "Name": key}}

        description = {
            "ProjectVersionArn": "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v1/1",
            "EvaluationResult": {"Summary": s3("summary.json")},
            "TestingDataResult": {"Output": {"Assets": [{"GroundTruthManifest": s3("test.manifest")}]}},
            "TrainingDataResult": {"Output": {"Assets": [{"GroundTruthManifest": s3("train.manifest")}]}},
        }
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        _, files = build_report(description, open_object, Path(folder) / "report", max_images=24)
        seconds = time.perf_counter() - started
        size = manifest.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"images": images, "snapshot_mb": round(size / 1e6, 1), "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak / 1024), "rss_before_mb": round(before / 1024), "files": len(files)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000], help="test images per report")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process's size
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return 0
    print("images  snapshot  seconds  peak RSS (before)")
    for size in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--one", str(size)], capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.splitlines()[-1])
        print(f"{row['images']:>6}  {row['snapshot_mb']:>6} MB  {row['seconds']:>6} s  {row['peak_rss_mb']} MB ({row['rss_before_mb']} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
