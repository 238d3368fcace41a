"""Assemble a dataset's fragments from S3 into train/test manifests under a run prefix."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from fashion_pipeline.labels import LabelCatalogue
from fashion_pipeline.manifest import ManifestAssembler, manifest_problems, write_report
from fashion_pipeline.records import Record, Rejection


class ManifestValidationError(Exception):
    """The assembled manifests break Rekognition's rules: training would fail or mislead."""


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return sorted(keys)  # order-independent of listing, so runs are reproducible


def assemble_dataset(
    s3: Any,
    *,
    dataset: str,
    dataset_bucket: str,
    artifacts_bucket: str,
    prefix: str,
    catalogue: LabelCatalogue,
    test_fraction: float,
    seed: int,
    job_name: str,
    region: str | None = None,
) -> dict[str, Any]:
    """Stream every fragment of ``dataset``; write manifests, summary and report under ``prefix``.

    Memory stays flat (see ManifestAssembler: records are spooled to /tmp); records stream from S3
    line by line and manifests are written to /tmp, then uploaded. ``region`` is where Rekognition
    trains, whose image caps the manifests are checked against (see manifest_problems).
    """
    image_prefix = f"s3://{dataset_bucket}/images/{dataset}/"
    outside = 0
    fragments = _keys(s3, artifacts_bucket, f"fragments/{dataset}/")
    reports = _keys(s3, artifacts_bucket, f"reports/{dataset}/")
    with tempfile.TemporaryDirectory(prefix="assemble-") as workdir:
        with ManifestAssembler(catalogue, test_fraction=test_fraction, seed=seed, job_name=job_name, workdir=workdir) as assembler:
            for key in fragments:
                body = s3.get_object(Bucket=artifacts_bucket, Key=key)["Body"]
                for line in body.iter_lines():
                    if not line.strip():
                        continue
                    record = Record.from_dict(json.loads(line))
                    if not record.image_uri.startswith(image_prefix):
                        outside += 1
                        assembler.reject(Rejection(record.source, record.image_name, "image_outside_dataset", f"{record.image_uri} is not under {image_prefix}"))
                        continue
                    assembler.add(record)
            # What conversion already left out is carried into this run's report.
            for key in reports:
                report = json.loads(s3.get_object(Bucket=artifacts_bucket, Key=key)["Body"].read())
                for entry in report.get("rejected", []):
                    assembler.reject(Rejection.from_dict(entry))
            paths = {name: os.path.join(workdir, name) for name in ("train.manifest", "test.manifest", "report.json")}
            with open(paths["train.manifest"], "wb") as train, open(paths["test.manifest"], "wb") as test:
                summary = assembler.finish(train, test)
            summary["fragments"] = len(fragments)
            summary["problems"] = manifest_problems(summary, image_prefix=image_prefix, outside=outside, region=region)
            with open(paths["report.json"], "w", encoding="utf-8") as report_file:
                write_report(report_file, summary, assembler.iter_rejections())
            for name, path in paths.items():
                content_type = "application/json" if name.endswith(".json") else "application/x-ndjson"
                s3.upload_file(path, artifacts_bucket, prefix + name, ExtraArgs={"ContentType": content_type})
    s3.put_object(Bucket=artifacts_bucket, Key=prefix + "summary.json", Body=json.dumps(summary, indent=2).encode(), ContentType="application/json")
    return {
        "train_manifest": prefix + "train.manifest",
        "test_manifest": prefix + "test.manifest",
        "images": {"train": summary["train"]["images"], "test": summary["test"]["images"]},
        "labels": len(set(summary["train"]["boxes"])),
        "rejections": summary["rejections"]["images"],
        "problems": summary["problems"],
    }
