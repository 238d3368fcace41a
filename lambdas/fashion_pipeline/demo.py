"""``make demo``: generate the sample dataset (with one input per failure) and convert it."""

from __future__ import annotations

import sys
from pathlib import Path

from .cli import main as cli


def main() -> int:
    out = Path("demo-output")
    sample = out / "sample"
    print("== generating a DeepFashion2-format sample set (40 images + planted defects)")
    if cli(["sample", str(sample), "--images", "40", "--defects"]):
        return 1
    print("\n== converting it into Rekognition Custom Labels manifests")
    code = cli([
        "convert", str(sample / "annos"), "--images", str(sample / "image"),
        "--image-uri", "s3://my-dataset-bucket/images/demo/", "--out", str(out / "manifests"),
    ])
    if code == 0:
        print(f"\nmanifests and report.json are in {out / 'manifests'}/")
    return code


if __name__ == "__main__":
    sys.exit(main())
