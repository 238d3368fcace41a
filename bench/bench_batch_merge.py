"""Benchmark: the batch job's merge at its real layout, with S3's latency, concurrent vs one GET at a time.

A batch detection job of N images leaves N / 100 parts (one per Map child of ``BATCH_SIZE``
images) under ``batch/<job>/parts/<run>/``, named by ``batch.detection.part_key``; the merge
(``batch.handler.merge``) concatenates them into ``results.jsonl`` and tallies them. Every S3
request here pays ``--latency`` seconds (default 0.015: a small GET from a Lambda), injected
before moto (in-process) answers it, as ``bench_assembly.py`` does. Per size, in one run:

* **concurrent**: the shipped handler, ``merge(event, context)``, unchanged: 32 GETs in flight
  (``batch.merge``), the tally's order check (one key held);
* **sequential**: the merge before it (kept here as ``sequential_merge``): one GET at a time,
  and a set of every key to find duplicates, on the same parts.

Parts hold lines as ``garments_line`` writes them (0-2 garments of ``Garment.to_dict``, float
boxes as Rekognition returns them, 2% error lines): ~350 bytes a line. Each (variant, size)
runs in its own subprocess, so its peak memory (VmHWM) is its own. moto holds the parts in this
process, which a Lambda would not: a Lambda's own peak is the runtime's RSS (Python, boto3, the
handler), plus the peak above the RSS the merge starts from, until it uploads results.jsonl
(moto then copies the upload into memory; a Lambda streams it from /tmp).

Wall and CPU time run from the handler's call to the start of results.jsonl's upload: moto's
upload time (reported apart) measures no network, so the upload is modelled at ``--put-mb-per-s``
(an assumption). The merge function has 1,024 MB and 15 minutes (``infrastructure/batch.py``),
and at 1,024 MB a fraction of a vCPU: "At 1,769 MB, a function has the equivalent of one vCPU"
(Lambda developer guide, "Configure Lambda function memory",
https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). So a size's Lambda
time is the larger of its wall time and its CPU time (this process's, moto's share included: an
upper bound) scaled by 1,769 / 1,024, plus the modelled upload; it is projected linearly in N.

    .venv/bin/python bench/bench_batch_merge.py                        # 20,000 and 100,000 images
    .venv/bin/python bench/bench_batch_merge.py --sizes 2000 5000      # quick
    .venv/bin/python bench/bench_batch_merge.py --sizes 2000000 --variants concurrent   # the limit itself (~10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lambdas"))  # batch/ is not an installed package

from bench_assembly import Latency  # noqa: E402  (counts S3 requests and makes each one wait)
from fashion_pipeline import layout  # noqa: E402
from fashion_pipeline.batch import BATCH_SIZE, MAX_IMAGES, Tally, completeness, error_line, garments_line  # noqa: E402
from fashion_pipeline.detections import Garment, PixelBox, RatioBox  # noqa: E402
from fashion_pipeline.labels import CATEGORY_NAMES  # noqa: E402

RESULTS = HERE / "results" / "batch_merge.json"
ARTIFACTS_BUCKET, JOB, RUN_ID = "artifacts-bucket", "bench", "run-1"
LAMBDA_TIMEOUT_S, LAMBDA_MEMORY_MB = 900, 1024  # the merge function's (infrastructure/batch.py)
ONE_VCPU_MB = 1769  # Lambda's memory at one vCPU (configuration-memory.html)
PROJECTED = (34_000, 391_000, MAX_IMAGES)
RUNTIME_MB = 0.0  # RSS of Python, boto3 and the handler, measured as a phase starts
LABELS = sorted(CATEGORY_NAMES.values())


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (the peak since _reset_hwm), in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class UploadMark:
    """Notes the memory peak, the time and the CPU time when the results' upload starts: moto
    copies the upload into this process, where a Lambda streams it from its file, and its time
    here is not the network's (the upload is modelled, see lambda_s)."""

    def __init__(self) -> None:
        self.mark: float | None = None
        self.at = self.cpu = 0.0

    def __call__(self, **_: object) -> None:
        if self.mark is None:
            self.mark, self.at, self.cpu = _status_mb("VmHWM"), time.perf_counter(), time.process_time()


def job_key(n: int) -> str:
    return f"images/bench/batch/{n:07d}.jpg"


def result_line(n: int, rng: random.Random) -> dict:
    """Image n's line as the detect child writes it: garments_line of shape_answer's answer."""
    if rng.random() < 0.02:
        return error_line(job_key(n), "image_corrupt", "the header does not parse as a JPEG or PNG")
    width, height = rng.randint(300, 1600), rng.randint(300, 1600)
    garments = []
    for _ in range(rng.choice((0, 1, 1, 2, 2))):
        left, top = rng.random() * 0.5, rng.random() * 0.5
        w, h = rng.uniform(0.05, 1 - left), rng.uniform(0.05, 1 - top)
        pixels = PixelBox(int(left * width), int(top * height), int(w * width), int(h * height))
        garments.append(Garment(rng.choice(LABELS), rng.uniform(50, 99.99), RatioBox(left, top, w, h), pixels).to_dict())
    return garments_line(job_key(n), {"image": {"width": width, "height": height, "format": "JPEG"}, "garments": garments})


def job():
    from batch.events import Job

    return Job(action="run", key=f"batch/{JOB}.json", job=JOB, execution=f"arn:aws:states:us-east-1:123456789012:execution:batch:{RUN_ID}",
               run_id=RUN_ID, received_at="2026-12-01T10:00:00Z", dataset_bucket="dataset-bucket", artifacts_bucket=ARTIFACTS_BUCKET)


def store_parts(images: int) -> tuple[int, list[int]]:
    """The parts of ``images`` images, named by part_key, straight into moto's backend (putting
    20,000 objects through boto3 would take minutes); (bytes, batch sizes)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from batch.detection import part_key

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(ARTIFACTS_BUCKET, "us-east-1")
    rng, the_job, total, sizes = random.Random(0), job(), 0, []
    for start in range(0, images, BATCH_SIZE):
        numbers = range(start, min(images, start + BATCH_SIZE))
        body = "".join(json.dumps(result_line(n, rng), separators=(",", ":")) + "\n" for n in numbers).encode()
        backend.put_object(ARTIFACTS_BUCKET, part_key(the_job, job_key(start)), body)
        total, sizes = total + len(body), [*sizes, len(numbers)]
    return total, sizes


class KeySetTally(Tally):
    """The tally before the order check: a set of every key, to find duplicates."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()
        self.set_duplicates = 0

    def add(self, line) -> None:
        key = line["key"]
        if key in self.keys:
            self.set_duplicates += 1
        self.keys.add(key)
        super().add(line)


def sequential_merge(s3, listed: int) -> dict:
    """The merge's reading before bounded concurrency (git history of batch/handler.py): the parts
    one GET at a time, each line tallied with the key set, then the one PUT."""
    prefix = layout.batch_parts_prefix(JOB, RUN_ID)
    tally = KeySetTally()
    with tempfile.TemporaryFile() as results:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACTS_BUCKET, Prefix=prefix):
            for part in page.get("Contents", []):
                body = s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=part["Key"])["Body"]
                for raw in body.iter_lines():
                    if raw.strip():
                        tally.add(json.loads(raw))
                        results.write(raw.rstrip(b"\r\n") + b"\n")
        problem = completeness(tally, listed)
        if problem or tally.set_duplicates:
            raise SystemExit(f"sequential merge: {problem}")
        results.seek(0)
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=layout.batch_results_key(JOB), Body=results, ContentType="application/x-ndjson")
    return tally.to_dict()


def phase(variant: str, images: int, latency_s: float) -> dict:
    """One merge of ``images`` images' parts, in this (fresh) process."""
    import boto3
    from moto import mock_aws

    from batch import handler
    from fashion_pipeline_tools.local.lambda_runtime import LambdaContext

    with mock_aws():
        built = time.perf_counter()
        part_bytes, sizes = store_parts(images)
        built_s = time.perf_counter() - built
        latency, mark = Latency(latency_s), UploadMark()
        clients = [handler.client("s3")] if variant == "concurrent" else [boto3.client("s3", region_name="us-east-1")]
        for s3 in clients:
            s3.meta.events.register_first("before-send.s3", latency)
            s3.meta.events.register("before-call.s3.PutObject", mark)
        start_rss = _status_mb("VmRSS")
        _reset_hwm()
        cpu, started = time.process_time(), time.perf_counter()
        if variant == "concurrent":
            event = {"state": {"job": job().model_dump(), "batches": [{"n": n} for n in sizes]}}
            context = LambdaContext("merge", LAMBDA_MEMORY_MB, "arn:aws:lambda:us-east-1:123456789012:function:merge", LAMBDA_TIMEOUT_S)
            summary = handler.merge(event, context)
        else:
            summary = sequential_merge(clients[0], sum(sizes))
        wall, upload_s = mark.at - started, time.perf_counter() - mark.at
        cpu = mark.cpu - cpu
        peak = RUNTIME_MB + (mark.mark or _status_mb("VmHWM")) - start_rss
        check = boto3.client("s3", region_name="us-east-1")
        head = check.head_object(Bucket=ARTIFACTS_BUCKET, Key=layout.batch_results_key(JOB))
        first = check.get_object(Bucket=ARTIFACTS_BUCKET, Key=layout.batch_results_key(JOB), Range="bytes=0-2047")["Body"].read()
    if summary["images"] != images or head["ContentLength"] != part_bytes or json.loads(first.split(b"\n")[0])["key"] != job_key(0):
        raise SystemExit(f"{variant} at {images}: {summary['images']} lines, {head['ContentLength']} of {part_bytes} bytes, first {first[:80]!r}")
    return {"variant": variant, "images": images, "parts": len(sizes), "part_bytes": part_bytes, "wall_s": wall, "cpu_s": cpu,
            "moto_upload_s": upload_s, "requests": latency.requests, "peak_mb": peak, "runtime_mb": RUNTIME_MB, "parts_built_s": built_s}


def spawn(**kwargs) -> dict:
    command = [sys.executable, __file__, "--phase-args", json.dumps(kwargs)]
    # Without this botocore wraps the PUT's body for its CRC32 trailer (httpchecksum.AwsChunkedWrapper),
    # and moto, in process, reads that wrapper whole, which grows one bytes object chunk by chunk:
    # quadratic, ~400 s for 725 MB, where a socket reads it 8 KB at a time. The PUT is not timed.
    environment = {**os.environ, "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{kwargs} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def lambda_s(m: dict, put_mb_per_s: float) -> float:
    """A measurement's time in the merge Lambda: its wall time until the upload, or its CPU at
    1,024 MB's share of a vCPU if that is longer, plus the upload of results.jsonl at the assumed
    rate (module docstring)."""
    return max(m["wall_s"], m["cpu_s"] * ONE_VCPU_MB / LAMBDA_MEMORY_MB) + m["part_bytes"] / 1e6 / put_mb_per_s


def project(n: int, runs: list[dict], put_mb_per_s: float) -> dict:
    """Seconds and MB at n images, linear in n from the largest sizes measured (memory: the slope
    between the two largest, none when one size was measured)."""
    runs = sorted(runs, key=lambda m: m["images"])
    big = runs[-1]
    seconds = lambda_s(big, put_mb_per_s) * n / big["images"]
    slope = (big["peak_mb"] - runs[-2]["peak_mb"]) / (big["images"] - runs[-2]["images"]) if len(runs) > 1 else 0.0
    peak = big["peak_mb"] + max(slope, 0.0) * (n - big["images"])
    return {"images": n, "lambda_s": round(seconds, 1), "peak_mb": round(peak), "timeout_share": round(seconds / LAMBDA_TIMEOUT_S, 3),
            "memory_share": round(peak / LAMBDA_MEMORY_MB, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The batch merge at its real layout with S3 latency: 32 GETs in flight vs one at a time")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000], help="images per job (default 20000 100000)")
    parser.add_argument("--variants", nargs="+", choices=("sequential", "concurrent"), default=["sequential", "concurrent"])
    parser.add_argument("--latency", type=float, default=0.015, help="seconds added to every S3 request (default 0.015)")
    parser.add_argument("--put-mb-per-s", type=float, default=50.0, help="assumed MB/s of the results' PUT from a Lambda (default 50)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--phase-args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase_args:
        global RUNTIME_MB
        import boto3  # noqa: F401  (what a Lambda has loaded before the handler runs)
        import batch.handler  # noqa: F401

        RUNTIME_MB = _status_mb("VmRSS")
        print(json.dumps(phase(**json.loads(args.phase_args))))
        return 0
    log = lambda message: print(message, file=sys.stderr, flush=True)
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f}; other work on this machine will skew the figures")
    measured: list[dict] = []
    for images in sorted(args.sizes):
        for variant in args.variants:
            log(f"{variant}, {images:,} images ...")
            measured.append(spawn(variant=variant, images=images, latency_s=args.latency))
    print(f"S3 latency {args.latency * 1000:.0f} ms per request; {BATCH_SIZE} images a part; the merge Lambda has {LAMBDA_MEMORY_MB} MB "
          f"({LAMBDA_MEMORY_MB / ONE_VCPU_MB:.2f} vCPU) and {LAMBDA_TIMEOUT_S} s.\n")
    print("| variant | images | parts | MB of lines | wall s | CPU s | S3 requests | peak RSS MB | upload s (moto) | Lambda s (est.) |\n"
          "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for m in measured:
        print(f"| {m['variant']} | {m['images']:,} | {m['parts']:,} | {m['part_bytes'] / 1e6:.1f} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
              f"{m['requests']:,} | {m['peak_mb']:.0f} | {m['moto_upload_s']:.1f} | {lambda_s(m, args.put_mb_per_s):.1f} |")
    for variant in args.variants:
        same = [m for m in measured if m["variant"] == variant]
        if len(args.variants) == 2 and variant == "concurrent":
            for m in same:
                base = next(b for b in measured if b["variant"] == "sequential" and b["images"] == m["images"])
                log(f"{m['images']:,} images: concurrent {m['wall_s']:.1f} s vs sequential {base['wall_s']:.1f} s "
                    f"({base['wall_s'] / m['wall_s']:.1f}x)")
    projections = {v: [project(n, [m for m in measured if m["variant"] == v], args.put_mb_per_s) for n in PROJECTED] for v in args.variants}
    print(f"\n| projected (Lambda) | {' | '.join(f'{v} s | {v} MB' for v in args.variants)} |\n|---|{'--:|--:|' * len(args.variants)}")
    for i, n in enumerate(PROJECTED):
        cells = " | ".join(f"{projections[v][i]['lambda_s']:,} | {projections[v][i]['peak_mb']:,}" for v in args.variants)
        print(f"| {n:,} images | {cells} |")
    verdict = {}
    if "concurrent" in projections:
        limit = projections["concurrent"][-1]
        verdict = {"2M_within_half_timeout": limit["lambda_s"] <= LAMBDA_TIMEOUT_S / 2, "2M_within_half_memory": limit["peak_mb"] <= LAMBDA_MEMORY_MB / 2}
        print(f"\ntargets at {MAX_IMAGES:,} images (half the timeout, half the memory): {verdict}. Peak RSS: the runtime's "
              f"({measured[0]['runtime_mb']:.0f} MB: Python, boto3, the handler) plus the merge's peak above its start until it uploads "
              f"(moto holds the parts in this process; a Lambda would not). The upload is assumed at {args.put_mb_per_s:g} MB/s.")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "benchmark": "batch_merge", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "arguments": {k: str(v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()[0]}, "measured": measured,
        "projections": projections, "targets": verdict,
    }, indent=2) + "\n")
    log(f"wrote {args.results}")
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
