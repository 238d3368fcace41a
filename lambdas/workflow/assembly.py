"""Assemble a dataset's fragments from S3 into train/test manifests under a run prefix.

Two steps, as the state machine runs them (``infrastructure/training_flow.py``):

* ``write_shard``: a Distributed Map child. Its batch names some of the dataset's fragments
  (the Map's S3 ItemReader lists ``fragments/<dataset>/``, its ItemBatcher groups them); it
  reads each fragment and the report beside it, many requests at a time, and writes one shard
  under ``runs/<dataset>/<run>/shards/`` (see ``fashion_pipeline.shards``).
* ``merge_shards``: reads every shard of the run and writes ``train.manifest``,
  ``test.manifest``, ``summary.json`` and ``report.json`` beside them.

With one annotation object per image (DeepFashion2's layout) reading is two small GETs per
image, ~15 ms each from a Lambda: 391k images read one at a time would take over 3 hours,
which is why the reading is spread over children and, within one, over threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

from fashion_pipeline import layout
from fashion_pipeline.labels import LabelCatalogue
from fashion_pipeline.manifest import ManifestAssembler, ManifestLines, manifest_problems, write_report
from fashion_pipeline.ordered import PER_THREAD, in_order
from fashion_pipeline.shards import Shard, ShardWriter, fragment_batch, merge_into, report_rejections

DEFAULT_CONCURRENCY = 32  # requests in flight per child
WINDOW_BYTES = 256 * 1024 * 1024  # fragment bytes a child holds in memory at once


class ManifestValidationError(Exception):
    """The assembled manifests break Rekognition's rules: training would fail or mislead."""


def shard_key(run_prefix: str, fragment_keys: list[str]) -> str:
    """One name per batch of keys, so a retried child overwrites its own shard."""
    digest = hashlib.blake2b("\n".join(sorted(fragment_keys)).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return f"{layout.shards_prefix(run_prefix)}{digest}.shard"


def write_shard(
    s3: Any,
    *,
    items: list[dict[str, Any]],
    dataset: str,
    dataset_bucket: str,
    artifacts_bucket: str,
    run_prefix: str,
    catalogue: LabelCatalogue,
    seed: int,
    job_name: str,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> dict[str, Any]:
    """Read the fragments ``items`` name (ItemReader entries: ``Key``, ``Size``) and the report
    beside each; write their shard. Returns counts and the shard's key."""
    keys = sorted(item["Key"] for item in items)
    sizes = {item["Key"]: int(item.get("Size") or 0) for item in items}
    lines = ManifestLines(catalogue, job_name=job_name, seed=seed)
    prefix = layout.image_prefix(dataset_bucket, dataset)
    key = shard_key(run_prefix, keys)
    records = outside = 0
    reports: list[tuple[str, bytes]] = []
    with tempfile.TemporaryDirectory(prefix="shard-") as workdir:
        path = os.path.join(workdir, "shard")
        with open(path, "wb") as out, ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            writer = ShardWriter(out, fragments=keys, reports=[layout.report_key_of(k) for k in keys])
            for fragment_key, fragment, report_key, report in _fetch_all(pool, s3, artifacts_bucket, keys, sizes, concurrency):
                batch, out_of_prefix = fragment_batch(lines, fragment_key, fragment, prefix)
                writer.fragment(fragment_key, batch, out_of_prefix)
                records += batch.records
                outside += out_of_prefix
                if report is not None:  # reports are small: kept until the fragments are written
                    reports.append((report_key, report))
            for report_key, report in sorted(reports):
                writer.report(report_key, report_rejections(report))
        s3.upload_file(path, artifacts_bucket, key, ExtraArgs={"ContentType": "application/octet-stream"})
    return {"shard": key, "fragments": len(keys), "reports": len(reports), "records": records, "outside": outside}


def _fetch_all(pool: ThreadPoolExecutor, s3: Any, bucket: str, keys: list[str], sizes: dict[str, int],
               concurrency: int) -> Iterator[tuple[str, bytes, str, bytes | None]]:
    """(fragment key, body, report key, report body or None) in key order, fetched ahead by a
    few jobs per thread, holding at most WINDOW_BYTES of fragments (see ordered.in_order)."""
    jobs = ((pool.submit(_fetch_pair, s3, bucket, key), sizes.get(key, 0)) for key in keys)
    return in_order(jobs, window=max(1, concurrency) * PER_THREAD, max_weight=WINDOW_BYTES)


def _fetch_pair(s3: Any, bucket: str, fragment_key: str) -> tuple[str, bytes, str, bytes | None]:
    report_key = layout.report_key_of(fragment_key)
    return fragment_key, _get(s3, bucket, fragment_key), report_key, _get_if_present(s3, bucket, report_key)


def _get(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _get_if_present(s3: Any, bucket: str, key: str) -> bytes | None:
    """A fragment's report. The converter writes the fragment, then its report; a fragment
    whose conversion is still under way (or was interrupted, and will be retried) has none yet."""
    try:
        return _get(s3, bucket, key)
    except s3.exceptions.NoSuchKey:
        return None


def _listed(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every object under ``prefix``, as ListObjectsV2 describes them."""
    return [entry for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix) for entry in page.get("Contents", [])]


def merge_shards(
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
    concurrency: int = DEFAULT_CONCURRENCY,
) -> dict[str, Any]:
    """Merge the run's shards; write manifests, summary and report under ``prefix``.

    Memory stays flat (see ManifestAssembler: records are spooled to /tmp). ``region`` is where
    Rekognition trains, whose image caps the manifests are checked against (manifest_problems).
    """
    image_prefix = layout.image_prefix(dataset_bucket, dataset)
    listed = _listed(s3, artifacts_bucket, layout.shards_prefix(prefix))
    with tempfile.TemporaryDirectory(prefix="assemble-") as workdir:
        paths = [os.path.join(workdir, f"{index}.shard") for index in range(len(listed))]
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            list(pool.map(lambda entry, path: s3.download_file(artifacts_bucket, entry["Key"], path), listed, paths))
        # Newer shards win a key both hold (see fashion_pipeline.shards).
        shards = [Shard.open(path, (entry["LastModified"], entry["Key"])) for entry, path in zip(listed, paths)]
        with ManifestAssembler(catalogue, test_fraction=test_fraction, seed=seed, job_name=job_name, workdir=workdir) as assembler:
            counts = merge_into(assembler, shards)
            outputs = {name: os.path.join(workdir, name) for name in ("train.manifest", "test.manifest", "report.json")}
            with open(outputs["train.manifest"], "wb") as train, open(outputs["test.manifest"], "wb") as test:
                summary = assembler.finish(train, test)
            summary["fragments"] = counts.fragments
            summary["problems"] = manifest_problems(summary, image_prefix=image_prefix, outside=counts.outside, region=region)
            with open(outputs["report.json"], "w", encoding="utf-8") as report_file:
                write_report(report_file, summary, assembler.iter_rejections())
            for name, path in outputs.items():
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
        "shards": len(shards),
    }


def assemble_in_process(s3: Any, *, batch_size: int = 1000, concurrency: int = DEFAULT_CONCURRENCY, **run: Any) -> dict[str, Any]:
    """Both steps in this process, the batches one after the other: what the state machine does
    with its Distributed Map, for tests and for the benchmark's sequential baseline. ``run``
    holds ``merge_shards``'s keyword arguments."""
    keys = _listed(s3, run["artifacts_bucket"], layout.fragments_prefix(run["dataset"]))
    for start in range(0, len(keys), batch_size):
        write_shard(
            s3, items=keys[start : start + batch_size], dataset=run["dataset"], dataset_bucket=run["dataset_bucket"],
            artifacts_bucket=run["artifacts_bucket"], run_prefix=run["prefix"], catalogue=run["catalogue"], seed=run["seed"],
            job_name=run["job_name"], concurrency=concurrency,
        )
    return merge_shards(s3, concurrency=concurrency, **run)
