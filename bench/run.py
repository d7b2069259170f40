"""Every CPU benchmark in one go (a few minutes on 2 cores): python bench/run.py

The GPU benchmark, bench/gpu.py, runs apart: it needs a GPU for its figures."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache  # noqa: E402
import depth  # noqa: E402
import flops  # noqa: E402
import mask  # noqa: E402
import overhead  # noqa: E402
import preview  # noqa: E402
import reuse  # noqa: E402
import serving  # noqa: E402

if __name__ == "__main__":
    started = time.perf_counter()
    benches = [("overhead", overhead), ("mask", mask), ("depth", depth), ("cache", cache),
               ("reuse", reuse), ("preview", preview), ("serving", serving)]  # fmt: skip
    for name, bench in benches:
        print(f"\n== {name}")
        bench.main(5)
    print("\n== flops (SVD-XT on the meta device)")
    flops.main(25)
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s")
