"""Every CPU benchmark in one go (a few minutes on 2 cores): python bench/run.py"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import depth  # noqa: E402
import mask  # noqa: E402
import overhead  # noqa: E402
import serving  # noqa: E402

if __name__ == "__main__":
    started = time.perf_counter()
    for name, bench in [("overhead", overhead), ("mask", mask), ("depth", depth),
                        ("serving", serving)]:  # fmt: skip
        print(f"\n== {name}")
        bench.main(5)
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s")
