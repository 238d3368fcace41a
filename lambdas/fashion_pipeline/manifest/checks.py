"""Checks of finished manifests against Rekognition's rules, before any money is spent."""

from __future__ import annotations

from typing import Any

from ..labels import MAX_LABEL_CHARS
from .quotas import MAX_IMAGES_BY_REGION, MAX_LABELS_PER_MANIFEST, MAX_LINES_PER_MANIFEST, MAX_MANIFEST_BYTES, MIN_LABELS


def manifest_problems(
    summary: dict[str, Any], *, image_prefix: str | None = None, outside: int = 0, region: str | None = None
) -> list[str]:
    """Reasons Rekognition would refuse these manifests, caught before any money is spent.

    ``region`` picks the image caps of MAX_IMAGES_BY_REGION (None, or a region not listed: the
    caps of most regions)."""
    problems = []
    train_labels = set(summary["train"]["boxes"])
    test_labels = set(summary["test"]["boxes"])
    if summary["train"]["images"] == 0:
        problems.append("the training manifest is empty: no image passed the rules (see the report)")
    elif len(train_labels) < MIN_LABELS:
        problems.append(f"the training manifest has {len(train_labels)} labels; Rekognition needs at least {MIN_LABELS}")
    # A test fraction of 0 asks for no test set (Rekognition can split one off the training set).
    if summary["test"]["images"] == 0 and summary["test_fraction"]["requested"]:
        problems.append("the test manifest is empty: add images (more pair ids) or raise the test fraction")
    if test_labels - train_labels:
        problems.append(f"labels in test but not in train: {sorted(test_labels - train_labels)}")
    caps = MAX_IMAGES_BY_REGION.get(region, MAX_IMAGES_BY_REGION[None])
    for side, cap in zip(("train", "test"), caps):
        counts = summary[side]
        if counts["images"] > MAX_LINES_PER_MANIFEST:
            problems.append(f"the {side} manifest has {counts['images']} lines; the limit is {MAX_LINES_PER_MANIFEST}")
        elif counts["images"] > cap:
            problems.append(f"the {side} manifest has {counts['images']} images; Rekognition accepts at most {cap} in {region}")
        if counts["bytes"] > MAX_MANIFEST_BYTES:
            problems.append(f"the {side} manifest has {counts['bytes']} bytes; the limit is {MAX_MANIFEST_BYTES}")
        if len(counts["boxes"]) > MAX_LABELS_PER_MANIFEST:
            problems.append(
                f"the {side} manifest has {len(counts['boxes'])} labels; Rekognition accepts at most {MAX_LABELS_PER_MANIFEST}"
                " per manifest (merge or exclude some with a label mapping)"
            )
    too_long = sorted(label for label in train_labels | test_labels if len(label) > MAX_LABEL_CHARS)
    if too_long:
        problems.append(f"label names longer than {MAX_LABEL_CHARS} characters: {too_long}")
    if outside:
        problems.append(f"{outside} records point at images outside {image_prefix}")
    return problems
