"""The report of one trained model version, from its DescribeProjectVersions description.

The entry point the CLI and the report Lambda share: they do the AWS calls and hand in an
``open_object(bucket, key)`` that returns a readable stream (a file, or botocore's
StreamingBody: ``s3.get_object(Bucket=b, Key=k)["Body"]``); the test images of the gallery are
read through it too, by their ``source-ref``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from fashion_pipeline.evaluation import Evaluation, load_evaluation
from .render import MAX_GALLERY_IMAGES, render_comparison, render_report


def image_reader(open_object: Callable[[str, str], BinaryIO]) -> Callable[[str], bytes]:
    def read(source_ref: str) -> bytes:
        if not source_ref.startswith("s3://") or "/" not in source_ref[5:]:
            raise LookupError(f"{source_ref} is not an s3:// URI")
        bucket, key = source_ref[5:].split("/", 1)
        return open_object(bucket, key).read()

    return read


def build_report(
    description: Mapping[str, Any],
    open_object: Callable[[str, str], BinaryIO],
    out_dir: str | Path,
    *,
    compare_with: Mapping[str, Any] | Evaluation | None = None,
    with_images: bool = True,
    max_images: int = MAX_GALLERY_IMAGES,
) -> tuple[Evaluation, list[Path]]:
    """Evaluate ``description``'s version and write its report (and, given another version's
    description or its loaded Evaluation, ``compare.html`` against it, linked from
    ``index.html``) into ``out_dir``; the evaluation and the files, ``index.html`` first.

    ``open_object`` raising LookupError or OSError for an image leaves it out of the gallery
    (said on the page); for the summary or a manifest it propagates."""
    before = None
    if compare_with is not None:
        before = compare_with if isinstance(compare_with, Evaluation) else load_evaluation(compare_with, open_object)
    evaluation = load_evaluation(description, open_object)
    images = image_reader(open_object) if with_images else None
    files = render_report(evaluation, images, out_dir, max_images=max_images,
                          compared_with=before.version if before is not None else None)  # fmt: skip
    if before is not None:
        files += render_comparison(before, evaluation, out_dir)
    return evaluation, files
