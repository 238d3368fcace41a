"""Converter probing: sequential vs bounded-concurrency ranged GETs against moto S3.

One converter batch (a .zip of per-image DeepFashion2 files) is converted with
``convert_object`` at several probe concurrencies, interleaved, with a fixed latency added to
every S3 GetObject: in-process moto answers in about a millisecond, which would hide the
network round trip that the thread pool exists to overlap.

    .venv/bin/python bench/bench_probe.py [--images 1000] [--latency-ms 20]
        [--concurrency 1 8 32 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lambdas"))  # the Lambda bundle's layout, as in tests/

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto import mock_aws  # noqa: E402

from converter.ingest import convert_object  # noqa: E402
from fashion_pipeline_tools.sample import add_app_segments, generate  # noqa: E402

BUCKET, ARTIFACTS, DATASET = "bench-dataset", "bench-artifacts", "bench"
KEY = f"annotations/{DATASET}/batch.zip"
POOL = 20  # distinct rendered images; rendering 1,000 would dominate setup time
FAR_HEADER_BYTES = 150_000  # XMP in front of the frame header, as cameras and editors write


class GetLatency:
    """A before-send hook that sleeps like a network round trip and counts every GetObject.

    Registered on the event ``before-send.s3.GetObject``, it runs before moto's generic
    ``before-send`` stub; returning None lets the chain go on to moto, which answers.
    The count is every GetObject of the call: the batch download (one GET) and the GETs of
    missing candidates (a .png is looked for as .jpg and .jpeg first), which the converter's
    RequestLog does not record because they raise.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self._lock = seconds, 0, threading.Lock()

    def __call__(self, **_: object) -> None:
        with self._lock:
            self.calls += 1
        if self.seconds:
            time.sleep(self.seconds)


def build_batch(s3, images: int, workdir: Path) -> dict[str, int]:
    """Upload ``images`` images and one .zip of their annotations; return the format mix.

    Every 4th image is a PNG (as in ``sample.generate``); every 10th (n % 10 == 5, never a
    PNG) is a JPEG with its frame header ~150 KB in. Each annotation is its pool image's own,
    so boxes always fit the real image size.
    """
    pool = generate(workdir, images=POOL, far_header_every=0, png_every=4, seed=11)
    stems = sorted(p.stem for p in pool.images.iterdir())
    pool_images = {p.stem: (p.suffix, p.read_bytes()) for p in pool.images.iterdir()}
    far_cache: dict[str, bytes] = {}
    mix = {"jpeg": 0, "jpeg_far_header": 0, "png": 0}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(1, images + 1):
            stem = stems[(n - 1) % len(stems)]
            suffix, data = pool_images[stem]
            kind = "png" if suffix == ".png" else "jpeg"
            if kind == "jpeg" and n % 10 == 5:
                data = far_cache.setdefault(stem, add_app_segments(data, FAR_HEADER_BYTES))
                kind = "jpeg_far_header"
            mix[kind] += 1
            s3.put_object(Bucket=BUCKET, Key=f"images/{DATASET}/{n:06d}{suffix}", Body=data)
            zf.writestr(f"{n:06d}.json", (pool.annotations / f"{stem}.json").read_bytes())
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive.getvalue())
    return mix


def run_once(s3, hook: GetLatency, concurrency: int) -> dict[str, float]:
    before = hook.calls
    start = time.perf_counter()
    result = convert_object(s3, bucket=BUCKET, key=KEY, artifacts_bucket=ARTIFACTS, concurrency=concurrency)
    seconds = time.perf_counter() - start
    if result.rejections:  # a benchmark that silently converts nothing measures nothing
        raise RuntimeError(f"unexpected rejections: {result.rejections}")
    return {"seconds": seconds, "records": result.records, "requests": result.probe_requests,
            "bytes": result.probe_bytes, "gets": hook.calls - before}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "probe.json")
    args = parser.parse_args(argv)
    levels = sorted(set(args.concurrency))

    with mock_aws(), tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        # As the Lambda handler does: one pooled connection per probing thread, so threads
        # never queue for a connection (botocore's default pool is 10).
        s3 = boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=max(levels) + 4))
        for bucket in (BUCKET, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        mix = build_batch(s3, args.images, Path(tmp))

        hook = GetLatency(args.latency_ms / 1000)
        s3.meta.events.register("before-send.s3.GetObject", hook)
        # Check that the hook really delays moto's answer (and does not replace it).
        start = time.perf_counter()
        body = s3.get_object(Bucket=BUCKET, Key=f"images/{DATASET}/000001.jpg", Range="bytes=0-1")["Body"].read()
        single_get_ms = (time.perf_counter() - start) * 1000
        if body != b"\xff\xd8" or single_get_ms < args.latency_ms:
            raise RuntimeError(f"latency hook not applied: {body!r} in {single_get_ms:.1f} ms")

        runs: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
        for repeat in range(args.repeats):
            for c in levels:  # interleaved, so drift (thermal, GC, other load) hits every level alike
                runs[c].append(run_once(s3, hook, c))
                print(f"  repeat {repeat + 1}/{args.repeats} concurrency {c:>3}: {runs[c][-1]['seconds']:.2f} s", file=sys.stderr)

    rows = []
    for c in levels:
        last = runs[c][-1]  # requests and bytes are the same every run; only time varies
        median = statistics.median(r["seconds"] for r in runs[c])
        rows.append({
            "concurrency": c, "median_s": median, "runs_s": [r["seconds"] for r in runs[c]],
            "images_per_s": last["records"] / median, "records": last["records"],
            "logged_gets_per_image": last["requests"] / last["records"],
            "all_gets_per_image": last["gets"] / last["records"],
            "bytes_per_image": last["bytes"] / last["records"],
        })
    baseline = next((r["median_s"] for r in rows if r["concurrency"] == 1), None)
    for row in rows:
        row["speedup_vs_sequential"] = baseline / row["median_s"] if baseline else None

    print(f"\nConverter probing: {args.images} annotations in one .zip, {mix}, "
          f"{args.latency_ms:g} ms per GetObject (single GET measured {single_get_ms:.1f} ms), "
          f"median of {args.repeats}\n")
    print("| concurrency | median s | images/s | speed-up | GETs/image (logged) | GETs/image (incl. 404) | bytes/image |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        speedup = f"{r['speedup_vs_sequential']:.1f}x" if r["speedup_vs_sequential"] else "-"
        print(f"| {r['concurrency']} | {r['median_s']:.2f} | {r['images_per_s']:.0f} | {speedup} | "
              f"{r['logged_gets_per_image']:.2f} | {r['all_gets_per_image']:.2f} | {r['bytes_per_image']:,.0f} |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "probe", "images": args.images, "latency_ms": args.latency_ms, "repeats": args.repeats,
        "mix": mix, "single_get_ms": single_get_ms, "python": sys.version.split()[0], "rows": rows,
    }, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
