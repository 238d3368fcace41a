"""Benchmark: ``fashion-pipeline convert`` on a DeepFashion2 folder against a read-only floor.

For each size N (default 20,000 and 100,000 images) the cached data set from
``bench/dataset.py`` is converted with

    fashion-pipeline convert ANNOS --images IMAGES --image-uri s3://bench-bucket/images/ --out OUT

and compared with ``bench/floor.py`` (read every annotation file whole and the first 64 KiB
of its image, nothing else). Both run as their own processes, Python start-up included.
After one warm-up run of each at the smallest size, floor and convert run alternately,
``--repeat`` times each; the table shows the median wall time and the peak RSS of the child
(``/usr/bin/time -f %M``).

Targets: convert within 2x the floor's wall time, and peak RSS below 150 MB at every size,
not growing with N.

    .venv/bin/python bench/bench_convert.py                 # 20,000 and 100,000
    .venv/bin/python bench/bench_convert.py --sizes 2000    # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dataset import ROOT, bench_set  # noqa: E402

RESULTS = HERE / "results" / "convert.json"
OUT = ROOT / "build" / "bench-out"
IMAGE_URI = "s3://bench-bucket/images/"
MAX_RATIO = 2.0
MAX_RSS_MB = 150.0
MAX_RSS_GROWTH = 0.10  # "flat": peak RSS at the largest size at most 10% above the smallest
TIME = "/usr/bin/time"
# Without GNU time: a bare Python launcher that spawns the command and reports its ru_maxrss.
LAUNCHER = (
    "import os,sys\n"
    "pid=os.posix_spawnp(sys.argv[2],sys.argv[2:],os.environ)\n"
    "_,status,usage=os.wait4(pid,0)\n"
    "open(sys.argv[1],'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run(command: list[str]) -> tuple[float, float]:
    """Run ``command`` to completion; its wall time (s) and peak RSS (MB).

    The peak RSS comes from ``/usr/bin/time -f %M`` (or the bare launcher above), not from
    ``os.wait4`` on a child of this process: Linux carries the pre-exec high-water mark of a
    forked child into ``ru_maxrss``, so the child would report this (larger) process's RSS.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file, tempfile.TemporaryFile() as errors:
        if os.access(TIME, os.X_OK):
            wrapped = [TIME, "-f", "%M", "-o", rss_file.name, *command]
        else:
            wrapped = [sys.executable, "-S", "-c", LAUNCHER, rss_file.name, *command]
        started = time.perf_counter()
        status = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=errors).returncode
        wall = time.perf_counter() - started
        if status != 0:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} failed with exit code {status}:\n{errors.read().decode(errors='replace')}")
        kib = int(rss_file.read().split()[-1])
    return wall, kib / 1024


def compile_package() -> None:
    """Byte-compile fashion_pipeline, as pip does when it installs a package.

    The project is installed editable, and with PYTHONDONTWRITEBYTECODE=1 (set on some CI
    machines) Python would recompile its modules at every start of the CLI: 40-60 ms that
    an installed CLI never pays.
    """
    import compileall

    import fashion_pipeline

    compileall.compile_dir(os.path.dirname(fashion_pipeline.__file__), quiet=1)


def commands(data, out: Path) -> dict[str, list[str]]:
    script = Path(sys.executable).parent / "fashion-pipeline"  # the installed console script
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "fashion_pipeline_tools.cli"]
    return {
        "floor": [sys.executable, str(HERE / "floor.py"), str(data.annotations), str(data.images)],
        "convert": cli + ["convert", str(data.annotations), "--images", str(data.images), "--image-uri", IMAGE_URI, "--out", str(out)],
    }


def check_output(out: Path, count: int) -> dict:
    with open(out / "report.json", encoding="utf-8") as handle:
        summary = json.load(handle)["summary"]
    if summary["lines_out"] <= 0.9 * count:
        raise SystemExit(f"convert wrote {summary['lines_out']} manifest lines for {count} images (expected > {0.9 * count:.0f})")
    return {"lines_out": summary["lines_out"], "train": summary["train"]["images"], "test": summary["test"]["images"],
            "rejected_images": summary["rejections"]["images"], "rejected_boxes": summary["rejections"]["boxes"]}


def measure(count: int, repeat: int, warm_up: bool, log) -> dict:
    data = bench_set(count, log=log)
    out = OUT / str(count)
    cmds = commands(data, out)
    if warm_up:
        log(f"warm-up at {count:,} images")
        for cmd in cmds.values():
            shutil.rmtree(out, ignore_errors=True)
            run(cmd)
    runs: dict[str, list[dict]] = {"floor": [], "convert": []}
    for attempt in range(repeat):
        for name, cmd in cmds.items():  # interleaved: floor, convert, floor, convert, ...
            shutil.rmtree(out, ignore_errors=True)
            wall, rss = run(cmd)
            runs[name].append({"wall_s": round(wall, 4), "max_rss_mb": round(rss, 1)})
            log(f"  {count:>7,} {name:<8} run {attempt + 1}: {wall:7.2f} s  {rss:6.1f} MB")
    output = check_output(out, count)
    result = {"images": count, "load_average_1min": round(os.getloadavg()[0], 2), "output": output}
    for name, samples in runs.items():
        wall = statistics.median(s["wall_s"] for s in samples)
        result[name] = {
            "wall_s": round(wall, 3),
            "images_per_s": round(count / wall),
            "max_rss_mb": max(s["max_rss_mb"] for s in samples),
            "runs": samples,
        }
    result["ratio"] = round(result["convert"]["wall_s"] / result["floor"]["wall_s"], 2)
    return result


def verdict(results: list[dict]) -> dict:
    rss = [r["convert"]["max_rss_mb"] for r in results]
    growth = (rss[-1] - rss[0]) / rss[0] if len(rss) > 1 else 0.0
    return {
        "time_within_2x": all(r["ratio"] <= MAX_RATIO for r in results),
        "rss_below_150mb": all(v < MAX_RSS_MB for v in rss),
        "rss_growth_smallest_to_largest": round(growth, 3),
        "rss_flat": len(rss) < 2 or growth <= MAX_RSS_GROWTH,
    }


def table(results: list[dict]) -> str:
    rows = [
        "| images | floor s | floor img/s | floor RSS MB | convert s | convert img/s | convert RSS MB | convert/floor |",
        "|-------:|--------:|------------:|-------------:|----------:|--------------:|---------------:|--------------:|",
    ]
    for r in results:
        f, c = r["floor"], r["convert"]
        rows.append(
            f"| {r['images']:,} | {f['wall_s']:.2f} | {f['images_per_s']:,} | {f['max_rss_mb']:.1f} "
            f"| {c['wall_s']:.2f} | {c['images_per_s']:,} | {c['max_rss_mb']:.1f} | {r['ratio']:.2f}x |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="convert vs. a read-only floor: wall time and peak RSS")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[20_000, 100_000],
                        help="comma-separated image counts (default: 20000,100000)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs of each command per size")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sizes = sorted(set(args.sizes))
    compile_package()
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: load average {load:.2f} before the benchmark; other work on this machine will skew the figures")
    results = [measure(n, args.repeat, warm_up=(i == 0), log=log) for i, n in enumerate(sizes)]
    summary = verdict(results)
    print(table(results))
    print()
    print(f"convert within {MAX_RATIO:g}x floor: {'yes' if summary['time_within_2x'] else 'NO'}; "
          f"peak RSS < {MAX_RSS_MB:g} MB: {'yes' if summary['rss_below_150mb'] else 'NO'}; "
          f"RSS growth {sizes[0]:,} -> {sizes[-1]:,}: {summary['rss_growth_smallest_to_largest']:+.1%}"
          f" ({'flat' if summary['rss_flat'] else 'GROWING'})")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "benchmark": "convert",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeat": args.repeat,
        "targets": {"max_ratio": MAX_RATIO, "max_rss_mb": MAX_RSS_MB, "max_rss_growth": MAX_RSS_GROWTH},
        "verdict": summary,
        "results": results,
    }, indent=2) + "\n")
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
