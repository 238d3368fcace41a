"""``make bench``: run every benchmark in turn; arguments pass through to each.

    .venv/bin/python bench/run.py                  # the defaults of every benchmark
    .venv/bin/python bench/run.py --sizes 2000     # a quick run

Each entry of BENCHMARKS names a module in bench/ with ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = [
    "bench_convert",  # fashion-pipeline convert vs. a read-only floor: wall time, peak RSS
]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    status = 0
    for name in BENCHMARKS:
        print(f"## {name}", flush=True)
        status = importlib.import_module(name).main(argv) or status
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
