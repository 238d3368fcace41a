"""Benchmark: the Assemble Lambda (``workflow.assembly.assemble_dataset``) against a read-only floor.

N seeded DeepFashion2-like records (default 250,000, the manifest line cap), as the converter
stores them (fragments of 1,000 records plus a report each), sit in an in-process moto S3:

* floor: list, get_object and iter_lines every fragment and report into one local file:
  the S3 reading no assembler can avoid, with no parsing at all;
* assemble: ``assemble_dataset`` as the Lambda calls it (parse, split, cap, write, upload).

Each run is a fresh subprocess (so its peak memory is one variant's) that puts the data into
moto, untimed, then times only the measured phase. The variants alternate ``--repeat`` times;
one more traced run of each gives the tracemalloc peak (tracing slows allocation-heavy code).

    .venv/bin/python bench/bench_assembly.py                   # 250,000 records
    .venv/bin/python bench/bench_assembly.py --records 20000   # a quick run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lambdas"))  # workflow/ and converter/ are not installed packages

from converter.ingest import output_keys  # noqa: E402  (the converter's own fragment/report keys)
from fashion_pipeline.labels import CATEGORY_NAMES, LabelCatalogue  # noqa: E402
from fashion_pipeline.records import Box, Record  # noqa: E402
from workflow.assembly import assemble_dataset  # noqa: E402

RESULTS = HERE / "results" / "assembly.json"
DATASET, DATASET_BUCKET, ARTIFACTS_BUCKET, RUN_PREFIX = "bench", "dataset-bucket", "artifacts-bucket", "runs/bench/"
PER_FRAGMENT, SEED = 1000, 0
VARIANTS = ("floor", "assemble")
MB = 1024 * 1024


def _proc_mb(field: str) -> float:
    """VmRSS or VmHWM: unlike ru_maxrss, VmHWM can be reset, and never holds the pre-exec
    high-water mark of the process that spawned this one."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def _reset_peaks() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS: the peak read later is the measured phase's
    if tracemalloc.is_tracing():
        tracemalloc.reset_peak()


def _peaks() -> dict:
    return {"hwm_mb": _proc_mb("VmHWM"), "traced_mb": tracemalloc.get_traced_memory()[1] / MB if tracemalloc.is_tracing() else None}


def fragments(records: int):
    """Yield (key, bytes) of each fragment and its report; seeded per fragment."""
    categories = list(CATEGORY_NAMES.values())
    for index in range((records + PER_FRAGMENT - 1) // PER_FRAGMENT):
        rng, path, lines = random.Random(f"{SEED}:{index}"), f"batch-{index:03d}.zip", []
        for n in range(index * PER_FRAGMENT + 1, min(records, (index + 1) * PER_FRAGMENT) + 1):
            width, height = rng.randint(300, 1200), rng.randint(300, 1200)
            boxes = []
            for _ in range(rng.randint(1, 3)):
                w, h = rng.randint(20, width), rng.randint(20, height)
                boxes.append(Box(rng.choice(categories), rng.randint(0, width - w), rng.randint(0, height - h), w, h))
            created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + rng.randint(0, 365 * 86400)))
            record = Record(f"annotations/{DATASET}/{path}/{n:07d}.json", f"s3://{DATASET_BUCKET}/images/{DATASET}/{n:07d}.jpg",
                            width, height, 3, str((n + 1) // 2), tuple(boxes), created)  # pair_id shared by 2 images
            lines.append(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")  # exactly as ingest writes them
        fragment_key, report_key = output_keys(DATASET, path)
        report = {"source": f"s3://{DATASET_BUCKET}/annotations/{DATASET}/{path}", "fragment": f"s3://{ARTIFACTS_BUCKET}/{fragment_key}",
                  "records": len(lines), "rejections": {}, "rejected": []}
        yield fragment_key, "".join(lines).encode()
        yield report_key, json.dumps(report, indent=1).encode()


def floor(s3, workdir: str) -> dict:
    lines = size = 0
    with open(os.path.join(workdir, "concatenated.jsonl"), "wb") as out:
        for prefix in (f"fragments/{DATASET}/", f"reports/{DATASET}/"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACTS_BUCKET, Prefix=prefix):
                for obj in page.get("Contents", []):
                    for line in s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=obj["Key"])["Body"].iter_lines():
                        out.write(line + b"\n")
                        lines, size = lines + 1, size + len(line) + 1
    return {"lines": lines, "bytes": size}


class _MarkUpload:
    """The S3 client, noting the memory peaks when assemble_dataset starts uploading its outputs:
    moto keeps uploads in this process (and joins a multipart upload in one bytearray), so
    memory after that point is partly moto's, which the Lambda would not hold."""

    def __init__(self, s3) -> None:
        self._s3, self.mark = s3, None

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def upload_file(self, *args, **kwargs):
        self.mark = self.mark or _peaks()
        return self._s3.upload_file(*args, **kwargs)


def assemble(s3, workdir: str) -> dict:  # workdir unused: assemble_dataset makes its own under TMPDIR
    client = _MarkUpload(s3)
    result = assemble_dataset(client, dataset=DATASET, dataset_bucket=DATASET_BUCKET, artifacts_bucket=ARTIFACTS_BUCKET, prefix=RUN_PREFIX,
                              catalogue=LabelCatalogue(), test_fraction=0.2, seed=0, job_name="bench")
    return {"result": result, "before_upload": client.mark}


def child(variant: str, data: Path, trace: bool) -> dict:
    runtime_mb = _proc_mb("VmRSS")  # Python + boto3 + the assembly code: about what the Lambda starts with
    from moto import mock_aws

    with mock_aws(), tempfile.TemporaryDirectory(prefix="bench-assembly-") as workdir:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
        started, stored = time.perf_counter(), 0
        for path in sorted(data.rglob("*.json*")):  # one object in memory at a time
            key, body = path.relative_to(data).as_posix(), path.read_bytes()
            s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=body, ContentType="application/x-ndjson" if key.endswith("l") else "application/json")
            stored += len(body) if key.startswith("fragments/") else 0
        upload_s = time.perf_counter() - started
        del body
        gc.collect()
        rss_before = _proc_mb("VmRSS")  # includes moto's copy of the fragments
        if trace:
            tracemalloc.start()  # started here, it counts only what the measured phase allocates
        _reset_peaks()
        started = time.perf_counter()
        out = (assemble if variant == "assemble" else floor)(s3, workdir)
        wall = time.perf_counter() - started
        peaks = _peaks()
        tracemalloc.stop()
        if variant == "assemble":
            out["summary"] = json.loads(s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=RUN_PREFIX + "summary.json")["Body"].read())
    return {"wall_s": wall, "upload_s": upload_s, "fragment_bytes": stored, "runtime_rss_mb": runtime_mb, "rss_before_mb": rss_before,
            "peak_rss_mb": peaks["hwm_mb"], "rss_delta_mb": peaks["hwm_mb"] - rss_before, "traced_peak_mb": peaks["traced_mb"], **out}


def spawn(variant: str, data: Path, trace: bool = False) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--data", str(data)] + (["--trace"] if trace else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{variant} child failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def aggregate(samples: list[dict], traced: dict, records: int) -> dict:
    """Median wall time; the worst memory of the timed runs; tracemalloc from the traced run."""
    wall, worst = statistics.median(r["wall_s"] for r in samples), lambda key: round(max(r[key] for r in samples), 1)
    before_upload = [r["before_upload"]["hwm_mb"] - r["rss_before_mb"] for r in samples if r.get("before_upload")]
    return {"wall_s": round(wall, 3), "records_per_s": round(records / wall), "upload_s": round(statistics.median(r["upload_s"] for r in samples), 2),
            "runtime_rss_mb": worst("runtime_rss_mb"), "rss_before_mb": worst("rss_before_mb"), "peak_rss_mb": worst("peak_rss_mb"), "rss_delta_mb": worst("rss_delta_mb"),
            "rss_delta_before_upload_mb": round(max(before_upload), 1) if before_upload else None, "traced_peak_mb": round(traced["traced_peak_mb"], 1),
            "traced_peak_before_upload_mb": round(traced["before_upload"]["traced_mb"], 1) if traced.get("before_upload") else None,
            "traced_wall_s": round(traced["wall_s"], 2), "runs": [{k: v for k, v in r.items() if k not in ("summary", "result")} for r in samples]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="assemble_dataset vs. a read-only floor, from moto S3: wall time and peak memory")
    parser.add_argument("--records", type=int, default=250_000, help="fragment records in the data set (default 250000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each variant, interleaved (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.trace)))
        return 0
    log = lambda message: print(message, file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: load average {load:.2f} before the benchmark; other work on this machine will skew the figures")
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-assembly-data-") as tmp:
        started, data = time.perf_counter(), Path(tmp)
        for key, body in fragments(args.records):
            (data / key).parent.mkdir(parents=True, exist_ok=True)
            (data / key).write_bytes(body)
        generate_s = time.perf_counter() - started
        for attempt in range(args.repeat):
            for variant in VARIANTS:  # interleaved, so drift in machine load hits both alike
                runs[variant].append(run := spawn(variant, data))
                log(f"  {variant:<8} run {attempt + 1}: {run['wall_s']:7.2f} s  peak RSS +{run['rss_delta_mb']:.0f} MB  (upload {run['upload_s']:.1f} s)")
        results = {v: aggregate(runs[v], spawn(v, data, trace=True), args.records) for v in VARIANTS}
    summary, result = runs["assemble"][-1]["summary"], runs["assemble"][-1]["result"]
    downsampled = summary["rejections"]["by_reason"].get("downsampled", 0)  # above 250,000 lines a side, by design
    if summary["lines_out"] + downsampled != args.records or result["problems"]:
        raise SystemExit(f"assembly wrote {summary['lines_out']} lines for {args.records} records; problems: {result['problems']}")
    ratio = results["assemble"]["wall_s"] / results["floor"]["wall_s"]
    note = lambda value: f" ({value:.0f} before upload)" if value is not None else ""
    print(f"{args.records:,} records in {runs['floor'][0]['fragment_bytes'] / MB:.0f} MB of fragments, median of {args.repeat} runs. Not timed: "
          f"generating them {generate_s:.1f} s (once), putting them into moto {results['assemble']['upload_s']:.1f} s (per child)\n")
    print("| variant | median s | records/s | RSS MB: start → peak | peak RSS Δ MB | tracemalloc peak MB |\n|---|--:|--:|--:|--:|--:|")
    for variant, r in results.items():
        print(f"| {variant} | {r['wall_s']:.2f} | {r['records_per_s']:,} | {r['rss_before_mb']:.0f} → {r['peak_rss_mb']:.0f} "
              f"| +{r['rss_delta_mb']:.0f}{note(r['rss_delta_before_upload_mb'])} | {r['traced_peak_mb']:.0f}{note(r['traced_peak_before_upload_mb'])} |")
    print(f"\nassemble/floor: {ratio:.2f}x. RSS at start includes moto's copy of the fragments; Python + boto3 + the assembly code "
          f"alone take {results['assemble']['runtime_rss_mb']:.0f} MB. Once assemble uploads its outputs, moto holds and joins them in "
          "this process (memory a Lambda would not use), so 'before upload' is the assembly's own.")
    print(f"assembly: {summary['train']['images']:,} train / {summary['test']['images']:,} test lines ({summary['train']['bytes'] / MB:.0f} / "
          f"{summary['test']['bytes'] / MB:.0f} MB), {result['labels']} labels ({', '.join(f'{k} {v:,}' for k, v in summary['train']['boxes'].items())}), "
          f"groups {summary['groups']}, rejections {summary['rejections']['images']}, downsampled {summary['downsampled'] or 'none'}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "benchmark": "assembly", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "records": args.records, "per_fragment": PER_FRAGMENT,
        "repeat": args.repeat, "generate_s": round(generate_s, 2), "load_average_1min": round(load, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "ratio": round(ratio, 2), "variants": results, "assembly": {"result": result, "summary": summary},
    }, indent=2) + "\n")
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
