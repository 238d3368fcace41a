"""Benchmark: assembly at DeepFashion2's per-file layout, with S3's latency, distributed vs sequential.

DeepFashion2 ships one JSON per image, so a dataset of N images leaves N fragments and N
reports in the artifacts bucket. Every S3 request here pays ``--latency`` seconds (default
0.015: a small GET from a Lambda), injected before moto (in-process) answers it. In one run:

* sequential: today's assembly before it was distributed, one reader: every fragment, then
  every report, one GET at a time (``assemble_in_process`` with one thread and one batch:
  the same requests the single Assemble Lambda made), at ``--baseline-images`` (default
  2,000; its time is linear in N, so it is projected from there);
* distributed: the state machine's steps at ``--images`` (default 20,000): the Distributed
  Map's children (``write_shard``, batches of ``--batch-size`` fragments, ``--threads``
  requests in flight each), timed one by one, then the merge (``merge_shards``);
* merge at full scale: shards for ``--merge-images`` (default 391,000, the train set) built
  from generated records without S3, put into moto, then ``merge_shards`` timed with latency.

The state-machine time is projected for 34k and 391k images from what was measured: the
S3 listing (one LIST per 1,000 keys, ``--list-latency`` each, in the ItemReader), waves of
children (ceil(children / max concurrency) x the slowest child, plus ``--child-overhead`` s
per wave for a child execution and its Lambda to start), and the merge (measured at 391k).
Each phase runs in its own subprocess, so its peak memory (VmHWM, which includes moto's copy
of the data: an upper bound for the Lambda) is its own.

    .venv/bin/python bench/bench_assembly.py                      # 20,000 images, merge at 391,000
    .venv/bin/python bench/bench_assembly.py --images 2000 --baseline-images 500 --merge-images 20000   # quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lambdas"))  # workflow/ is not an installed package

from fashion_pipeline import layout  # noqa: E402
from fashion_pipeline.labels import CATEGORY_NAMES, LabelCatalogue  # noqa: E402
from fashion_pipeline.manifest import ManifestLines  # noqa: E402
from fashion_pipeline.records import Box, Record  # noqa: E402
from fashion_pipeline.shards import ShardWriter, fragment_batch  # noqa: E402

RESULTS = HERE / "results" / "assembly.json"
DATASET, DATASET_BUCKET, ARTIFACTS_BUCKET, RUN_PREFIX = "bench", "dataset-bucket", "artifacts-bucket", "runs/bench/1/"
LAMBDA_TIMEOUT_S, LAMBDA_MEMORY_MB = 900, 1024  # the assembly functions' (cdk.json assemblerMemoryMb)
RUNTIME_MB = 0.0  # RSS of Python, boto3 and the assembly code, measured as a phase starts
TARGET_S = 600  # 391k images from "assembly starts" to "manifests written"
MB = 1024 * 1024


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (the peak since _reset_hwm), in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def _hwm_mb() -> float:
    return _status_mb("VmHWM")


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


class UploadMark:
    """An S3 client that notes the memory peak when the first output upload starts. moto keeps
    what is uploaded in this process, which a Lambda would not hold; and the RSS the phase
    starts from includes moto's copy of the inputs. A Lambda's own peak is therefore the
    runtime's RSS (Python, boto3, the code) plus the peak above the start, before uploads."""

    def __init__(self, s3) -> None:
        self._s3, self.mark = s3, None

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def upload_file(self, *args, **kwargs):
        self.mark = self.mark or _hwm_mb()
        return self._s3.upload_file(*args, **kwargs)

    def own_peak(self, start_rss: float) -> float:
        """The Lambda's peak: the runtime, plus what the phase added before its first upload."""
        return RUNTIME_MB + (self.mark or _hwm_mb()) - start_rss


def record(n: int) -> tuple[str, bytes, bytes]:
    """Image n's fragment key, fragment and report, as the converter writes them for one file."""
    rng = random.Random(n)
    width, height = rng.randint(300, 1200), rng.randint(300, 1200)
    boxes = []
    for _ in range(rng.randint(1, 3)):
        w, h = rng.randint(20, width), rng.randint(20, height)
        boxes.append(Box(rng.choice(list(CATEGORY_NAMES.values())), rng.randint(0, width - w), rng.randint(0, height - h), w, h))
    path = f"{n:06d}.json"
    item = Record(f"annotations/{DATASET}/{path}", f"s3://{DATASET_BUCKET}/images/{DATASET}/{n:06d}.jpg", width, height, 3,
                  str((n + 1) // 2), tuple(boxes), "2024-01-01T00:00:00")
    fragment_key, _ = layout.output_keys(DATASET, path)
    report = {"source": f"s3://{DATASET_BUCKET}/annotations/{DATASET}/{path}", "records": 1, "rejections": {}, "rejected": []}
    return fragment_key, (json.dumps(item.to_dict(), ensure_ascii=False) + "\n").encode(), json.dumps(report, indent=1).encode()


class Latency:
    """Counts S3 requests and makes each one wait, as a Lambda's would."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.requests = seconds, 0

    def __call__(self, **_: object) -> None:
        self.requests += 1
        if self.seconds:
            time.sleep(self.seconds)


def _s3(latency: Latency, pool: int):
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=pool))
    s3.meta.events.register_first("before-send.s3", latency)
    return s3


def _store(objects) -> None:
    """Objects straight into moto's backend: putting 40k objects through boto3 would take minutes."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for bucket in (DATASET_BUCKET, ARTIFACTS_BUCKET):
        backend.create_bucket(bucket, "us-east-1")
    for key, body in objects:
        backend.put_object(ARTIFACTS_BUCKET, key, body)


def _run_options() -> dict:
    return dict(dataset=DATASET, dataset_bucket=DATASET_BUCKET, artifacts_bucket=ARTIFACTS_BUCKET, catalogue=LabelCatalogue(), seed=0, job_name="bench")


def _accounted(s3) -> int:
    """Images in a manifest or in the report (down-sampling past the 250,000-line cap included)."""
    summary = json.loads(s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=RUN_PREFIX + "summary.json")["Body"].read())
    return summary["lines_out"] + summary["rejections"]["images"]


def phase_sequential(images: int, latency_s: float) -> dict:  # its memory is not the point: one reader is too slow
    from moto import mock_aws

    from workflow.assembly import assemble_in_process

    with mock_aws():
        _store((key, body) for n in range(images) for key, body in _pair(n))
        latency = Latency(latency_s)
        s3 = _s3(latency, 4)
        _reset_hwm()
        started = time.perf_counter()
        result = assemble_in_process(s3, batch_size=images, concurrency=1, prefix=RUN_PREFIX, test_fraction=0.2, **_run_options())
        wall = time.perf_counter() - started
    return {"images": images, "wall_s": wall, "requests": latency.requests, "peak_mb": _hwm_mb(), "lines": sum(result["images"].values())}


def _pair(n: int):
    fragment_key, fragment, report = record(n)
    yield fragment_key, fragment
    yield layout.report_key_of(fragment_key), report


def phase_distributed(images: int, latency_s: float, batch_size: int, threads: int) -> dict:
    from moto import mock_aws

    from workflow.assembly import merge_shards, write_shard

    with mock_aws():
        _store((key, body) for n in range(images) for key, body in _pair(n))
        plain = _s3(Latency(0), 4)
        items = [item for page in plain.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACTS_BUCKET, Prefix=layout.fragments_prefix(DATASET))
                 for item in page["Contents"]]
        latency = Latency(latency_s)
        children = []
        child_peak = 0.0
        for start in range(0, len(items), batch_size):
            s3 = UploadMark(_s3(latency, threads + 4))
            start_rss = _rss_mb()
            _reset_hwm()
            before, started = latency.requests, time.perf_counter()
            write_shard(s3, items=items[start : start + batch_size], run_prefix=RUN_PREFIX, concurrency=threads, **_run_options())
            children.append({"fragments": len(items[start : start + batch_size]), "wall_s": time.perf_counter() - started, "requests": latency.requests - before})
            child_peak = max(child_peak, s3.own_peak(start_rss))
        s3 = UploadMark(_s3(latency, threads + 4))
        start_rss = _rss_mb()
        before, started = latency.requests, time.perf_counter()
        _reset_hwm()
        result = merge_shards(s3, prefix=RUN_PREFIX, test_fraction=0.2, concurrency=threads, **_run_options())
        merge = {"wall_s": time.perf_counter() - started, "requests": latency.requests - before, "peak_mb": s3.own_peak(start_rss)}
        accounted = _accounted(plain)
    return {"images": images, "children": children, "child_peak_mb": child_peak, "merge": merge, "lines": sum(result["images"].values()),
            "accounted": accounted, "problems": result["problems"], "runtime_mb": RUNTIME_MB}


def phase_merge(images: int, latency_s: float, batch_size: int, threads: int) -> dict:
    """Shards of ``images`` records, written by the children's code without S3, then merged."""
    from moto import mock_aws

    from workflow.assembly import merge_shards, shard_key

    lines = ManifestLines(LabelCatalogue(), job_name="bench", seed=0)
    prefix = layout.image_prefix(DATASET_BUCKET, DATASET)
    started = time.perf_counter()
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        shards = []
        for start in range(0, images, batch_size):
            pairs = [record(n) for n in range(start, min(images, start + batch_size))]
            keys = [key for key, _, _ in pairs]
            path = os.path.join(tmp, "shard")
            with open(path, "wb") as out:
                writer = ShardWriter(out, fragments=keys, reports=[layout.report_key_of(k) for k in keys])
                for key, fragment, _ in pairs:
                    writer.fragment(key, *fragment_batch(lines, key, fragment, prefix))
                for key, _, report in sorted(pairs, key=lambda p: layout.report_key_of(p[0])):
                    writer.report(layout.report_key_of(key), json.loads(report)["rejected"])
            shards.append((shard_key(RUN_PREFIX, keys), Path(path).read_bytes()))
        _store(shards)
        del shards
        built_s = time.perf_counter() - started
        latency = Latency(latency_s)
        s3 = UploadMark(_s3(latency, threads + 4))
        start_rss = _rss_mb()
        _reset_hwm()
        started = time.perf_counter()
        result = merge_shards(s3, prefix=RUN_PREFIX, test_fraction=0.2, concurrency=threads, **_run_options())
        wall = time.perf_counter() - started
        peak = s3.own_peak(start_rss)
        accounted = _accounted(s3)
    return {"images": images, "wall_s": wall, "requests": latency.requests, "peak_mb": peak, "shards_built_s": built_s,
            "lines": sum(result["images"].values()), "accounted": accounted, "problems": result["problems"]}


def spawn(phase: str, **kwargs) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--phase-args", json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def project(n: int, *, sequential: dict, distributed: dict, merge: dict, batch_size: int, max_concurrency: int,
            list_latency: float, child_overhead: float) -> dict:
    """State-machine seconds for n images, from the measured costs (see the module docstring)."""
    per_image_seq = sequential["wall_s"] / sequential["images"]
    slowest_child = max(c["wall_s"] for c in distributed["children"] if c["fragments"] == batch_size) if any(
        c["fragments"] == batch_size for c in distributed["children"]) else max(c["wall_s"] for c in distributed["children"])
    children = math.ceil(n / batch_size)
    waves = math.ceil(children / max_concurrency)
    listing = math.ceil(n / 1000) * list_latency
    merge_s = merge["wall_s"] * n / merge["images"]
    total = listing + waves * (slowest_child + child_overhead) + merge_s
    return {"images": n, "sequential_s": round(per_image_seq * n, 1), "children": children, "waves": waves, "listing_s": round(listing, 1),
            "children_s": round(waves * (slowest_child + child_overhead), 1), "merge_s": round(merge_s, 1), "distributed_s": round(total, 1),
            "within_target": total <= TARGET_S, "merge_within_half_timeout": merge_s <= LAMBDA_TIMEOUT_S / 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Assembly at the per-file layout with S3 latency: Distributed Map vs one reader")
    parser.add_argument("--images", type=int, default=20_000, help="images measured through the distributed steps (default 20000)")
    parser.add_argument("--baseline-images", type=int, default=2_000, help="images measured through the sequential reader (default 2000)")
    parser.add_argument("--merge-images", type=int, default=391_000, help="images the merge is measured at (default 391000)")
    parser.add_argument("--latency", type=float, default=0.015, help="seconds added to every S3 request (default 0.015)")
    parser.add_argument("--list-latency", type=float, default=0.1, help="seconds per 1,000-key LIST page of the ItemReader (default 0.1)")
    parser.add_argument("--child-overhead", type=float, default=1.0, help="seconds to start a child execution and its Lambda, per wave (default 1)")
    parser.add_argument("--batch-size", type=int, default=1000, help="fragments per child (cdk.json assemblyBatchSize)")
    parser.add_argument("--max-concurrency", type=int, default=40, help="children at once (cdk.json assemblyMaxConcurrency)")
    parser.add_argument("--threads", type=int, default=32, help="S3 requests in flight per Lambda (workflow/handler.py)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--phase", choices=("sequential", "distributed", "merge"), help=argparse.SUPPRESS)
    parser.add_argument("--phase-args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        global RUNTIME_MB
        import boto3  # noqa: F401  (what a Lambda has loaded before the handler runs)
        import workflow.assembly  # noqa: F401

        RUNTIME_MB = _rss_mb()
        print(json.dumps(globals()[f"phase_{args.phase}"](**json.loads(args.phase_args))))
        return 0
    log = lambda message: print(message, file=sys.stderr, flush=True)
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f}; other work on this machine will skew the figures")
    common = {"latency_s": args.latency}
    log(f"sequential reader, {args.baseline_images:,} images ...")
    sequential = spawn("sequential", images=args.baseline_images, **common)
    log(f"distributed steps, {args.images:,} images ...")
    distributed = spawn("distributed", images=args.images, batch_size=args.batch_size, threads=args.threads, **common)
    log(f"merge, {args.merge_images:,} images ...")
    merge = spawn("merge", images=args.merge_images, batch_size=args.batch_size, threads=args.threads, **common)
    for name, phase in (("distributed", distributed), ("merge", merge)):
        if phase["problems"] or phase["accounted"] != phase["images"]:
            raise SystemExit(f"{name}: {phase['accounted']} images accounted for of {phase['images']}; problems {phase['problems']}")
    children = distributed["children"]
    child_requests = sum(c["requests"] for c in children)
    print(f"S3 latency {args.latency * 1000:.0f} ms per request; batches of {args.batch_size}, {args.threads} requests in flight per Lambda, "
          f"{args.max_concurrency} children at once.\n")
    print("| measured | images | wall s | S3 requests | requests/image | peak RSS MB |\n|---|--:|--:|--:|--:|--:|")
    print(f"| sequential reader (one Lambda) | {sequential['images']:,} | {sequential['wall_s']:.1f} | {sequential['requests']:,} | "
          f"{sequential['requests'] / sequential['images']:.2f} | {sequential['peak_mb']:.0f} |")
    print(f"| children, {len(children)} of them (each) | {args.images:,} | {min(c['wall_s'] for c in children):.2f}–{max(c['wall_s'] for c in children):.2f} | "
          f"{child_requests:,} | {child_requests / args.images:.2f} | {distributed['child_peak_mb']:.0f} |")
    print(f"| merge | {args.images:,} | {distributed['merge']['wall_s']:.1f} | {distributed['merge']['requests']:,} | "
          f"{distributed['merge']['requests'] / args.images:.3f} | {distributed['merge']['peak_mb']:.0f} |")
    print(f"| merge | {merge['images']:,} | {merge['wall_s']:.1f} | {merge['requests']:,} | {merge['requests'] / merge['images']:.3f} | {merge['peak_mb']:.0f} |")
    if merge["lines"] < merge["images"]:
        print(f"\nAt {merge['images']:,} images the train side is down-sampled to the 250,000-line cap ({merge['lines']:,} lines written); "
              "every image is in a manifest or in the report.")
    projections = [project(n, sequential=sequential, distributed=distributed, merge=merge, batch_size=args.batch_size,
                           max_concurrency=args.max_concurrency, list_latency=args.list_latency, child_overhead=args.child_overhead)
                   for n in (args.images, 34_000, 391_000)]
    print(f"\n| projected | children | waves | listing s | children s | merge s | **distributed s** | sequential s |\n|---|--:|--:|--:|--:|--:|--:|--:|")
    for p in projections:
        print(f"| {p['images']:,} images | {p['children']} | {p['waves']} | {p['listing_s']} | {p['children_s']} | {p['merge_s']} | "
              f"**{p['distributed_s']}** | {p['sequential_s']} |")
    worst_child = max(c["wall_s"] for c in children)
    verdict = {
        "391k_within_10_minutes": projections[-1]["within_target"],
        "child_within_half_timeout": worst_child <= LAMBDA_TIMEOUT_S / 2,
        "merge_within_half_timeout": merge["wall_s"] <= LAMBDA_TIMEOUT_S / 2,
        "memory_within_half": max(distributed["child_peak_mb"], merge["peak_mb"]) <= LAMBDA_MEMORY_MB / 2,
    }
    print(f"\ntargets: {verdict}. Peak RSS: the runtime's ({distributed['runtime_mb']:.0f} MB: Python, boto3, the code) plus the "
          "phase's peak above its start until it uploads its outputs (moto holds inputs and uploads in this process; a Lambda would not).")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "benchmark": "assembly", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "arguments": {k: str(v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "sequential": sequential, "distributed": distributed,
        "merge": merge, "projections": projections, "targets": verdict,
    }, indent=2) + "\n")
    log(f"wrote {args.results}")
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
