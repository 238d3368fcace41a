"""The batch job's Prepare counts the objects under the job's prefix (``batch.handler._count``,
ListObjectsV2 page after page, up to ``MAX_IMAGES``): how long that takes at 34k, 391k and 2M
objects, against Prepare's timeout, at its old size (512 MB) and its size now.

    .venv/bin/python bench/bench_prepare_count.py [--pages 20]

A page is 1,000 keys; the pages follow each other (each needs the last one's continuation
token), so the count is pages x (S3's latency + botocore's parsing of the page). The parsing is
measured here with botocore's own REST-XML parser on a page of the real shape (keys as the
dataset bucket holds them, ETag, size, storage class: 226 KB); the latency is the ~15 ms per S3
request from a Lambda. The parsing is CPU: a function gets vCPU in proportion to its memory,
one full vCPU at 1,769 MB ("At 1,769 MB, a function has the equivalent of one vCPU",
https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html), so the measured time
(one core of this machine) is scaled by 1,769 / memory below that. Baseline: the old 512 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import botocore.session
from botocore import parsers

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lambdas")]
from fashion_pipeline.batch import MAX_IMAGES  # noqa: E402

LATENCY_S = 0.015
ONE_VCPU_MB = 1769
SIZES = (34_000, 391_000, MAX_IMAGES)


def page(index: int) -> bytes:
    items = "".join(
        f"<Contents><Key>images/validation/{index * 1000 + i:07d}.jpg</Key><LastModified>2026-12-01T10:00:00.000Z</LastModified>"
        f"<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>123456</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for i in range(1000)
    )
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>b</Name><Prefix>images/validation/</Prefix><KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>true</IsTruncated><NextContinuationToken>t{index}</NextContinuationToken>{items}</ListBucketResult>").encode()


def parse_seconds(pages: int) -> float:
    """Median CPU seconds botocore takes to parse one ListObjectsV2 page of 1,000 keys."""
    shape = botocore.session.get_session().get_service_model("s3").operation_model("ListObjectsV2").output_shape
    parser = parsers.RestXMLParser()
    times = []
    for i in range(pages):
        body = page(i)
        began = time.process_time()
        parsed = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
        times.append(time.process_time() - began)
        assert len(parsed["Contents"]) == 1000
    return sorted(times)[len(times) // 2]


def seconds(objects: int, parse: float, memory_mb: int) -> float:
    pages = math.ceil(objects / 1000)
    return pages * (LATENCY_S + parse * max(1.0, ONE_VCPU_MB / memory_mb))


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # the machine's Node (CDK warns, works)
    from infrastructure.batch import PREPARE_MEMORY_MB, PREPARE_TIMEOUT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args(argv)
    parse = parse_seconds(args.pages)
    timeout_now = PREPARE_TIMEOUT.to_seconds()
    rows = []
    print(f"botocore parses a 1,000-key ListObjectsV2 page in {parse * 1000:.1f} ms of CPU (median of {args.pages}); 15 ms latency a page")
    print(f"{'objects':>10}  {'512 MB, 60 s (old)':>20}  {f'{PREPARE_MEMORY_MB} MB, {timeout_now:.0f} s (now)':>22}")
    ok = True
    for objects in SIZES:
        old, new = seconds(objects, parse, 512), seconds(objects, parse, PREPARE_MEMORY_MB)
        fits_old, fits_new = old < 60, new < timeout_now / 2
        ok = ok and fits_new
        print(f"{objects:>10,}  {old:>14.1f} s {'ok  ' if fits_old else 'OVER'}  {new:>16.1f} s {'ok' if fits_new else 'OVER half'}")
        rows.append({"objects": objects, "old_seconds": round(old, 1), "now_seconds": round(new, 1)})
    out = Path(__file__).resolve().parent / "results" / "prepare_count.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"parse_ms": round(parse * 1000, 2), "latency_ms": LATENCY_S * 1000, "memory_mb": PREPARE_MEMORY_MB,
                               "timeout_s": timeout_now, "rows": rows}, indent=2))
    print("target: the count at MAX_IMAGES within half of Prepare's timeout:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
