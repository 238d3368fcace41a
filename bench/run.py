"""``make bench``: run every benchmark in turn, each against its baseline in the same run.

    .venv/bin/python bench/run.py            # full sizes (tens of minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # small sizes, to check that they all still run
    .venv/bin/python bench/run.py bench_probe --quick   # one benchmark

Each entry names a module in bench/ with ``main(argv) -> int`` and its quick arguments.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = {
    # fashion-pipeline convert vs a read-only floor: wall time, peak RSS, at 20k and 100k images
    "bench_convert": ["--sizes", "2000", "--repeat", "1"],
    # converter header probing against S3 with 20 ms latency: bounded concurrency vs sequential
    "bench_probe": ["--images", "100", "--concurrency", "1", "32", "--repeats", "1"],
    # assembly at the per-file layout with 15 ms per S3 request: Distributed Map vs one reader
    "bench_assembly": ["--images", "2000", "--baseline-images", "300", "--merge-images", "5000"],
    # convert of one COCO file, streamed (ijson + spool) vs whole-document json.loads: peak memory, both orders
    "bench_coco": ["--sizes", "2000", "--repeat", "1"],
    # inference handler: cold import (JSON vs render path), warm per-request overhead
    "bench_inference": ["--runs", "2", "--requests", "50", "--render-requests", "5"],
    # the batch job's Prepare counting its prefix: ListObjectsV2 pages parsed, projected to 2M at Prepare's size
    "bench_prepare_count": ["--pages", "5"],
    # the report function's build_report as the test set grows: wall time, peak RSS
    "bench_report": ["--sizes", "1000"],
    # the batch job's merge of its parts with 15 ms per S3 request: 32 GETs in flight vs one at a time
    "bench_batch_merge": ["--sizes", "8000", "40000"],
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    chosen = [a for a in argv if a in BENCHMARKS] or list(BENCHMARKS)
    status = 0
    for name in chosen:
        print(f"## {name}", flush=True)
        status = importlib.import_module(name).main(BENCHMARKS[name] if quick else []) or status
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
