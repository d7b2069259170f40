"""Renderer replicas on a Ray cluster: throughput with one and two replicas, and the cost of
the remote hop against rendering in-process.

Starts a local Ray head (CPU only, `ray start --head`), deploys the tiny model's renderers
as the app does (svd/cluster.py), and measures:
  throughput  the same requests (--requests) through 1 and 2 queue workers on two
              replicas (one worker keeps one replica busy): requests per minute, each
              replica one torch thread
  hop         one request at a time, the cluster's replica against a LocalBackend in this
              process (one torch thread too), interleaved, order turned each round: the
              paired per-round ratio, median and spread

Usage: python bench/cluster.py [--requests 8] [--runs 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import make_picture, workdir  # noqa: E402

ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def head(port: int) -> None:
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8, help="requests per throughput case")
    parser.add_argument("--runs", type=int, default=5, help="paired rounds of the hop case")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--port", type=int, default=6391, help="the local head's port")
    args = parser.parse_args()
    os.environ.update(ENV)
    import torch

    torch.set_num_threads(1)
    from ray import serve

    from svd import cluster
    from svd.backends.local import LocalBackend
    from svd.schema import SVDInput

    work = workdir()
    make_picture(192, 128).save(work / "picture.png")
    inp = SVDInput(image_url=str(work / "picture.png"), width=192, height=128, num_frames=6,
                   steps=args.steps, seed=0)  # fmt: skip
    print(f"torch {torch.__version__}, CPU, 1 thread per renderer; tiny at 192x128, 6 frames, "
          f"{args.steps} steps")  # fmt: skip
    head(args.port)
    try:
        options = {"model": "tiny", "output_dir": str(work / "out")}
        address = f"127.0.0.1:{args.port}"
        rates = {}
        remote = cluster.start(address, 2, options)
        with ThreadPoolExecutor(2) as pool:  # warm both replicas
            list(pool.map(remote.generate, [inp] * 2))
        for workers in (1, 2):
            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:  # the queue's one worker per replica
                list(pool.map(remote.generate, [inp] * args.requests))
            rates[workers] = args.requests / (time.perf_counter() - started) * 60
        hop(remote, LocalBackend(model="tiny", output_dir=str(work / "here")), inp, args.runs)
        serve.delete(cluster.APP)
        print(f"throughput, {args.requests} requests: 1 replica {rates[1]:.1f}/min, "
              f"2 replicas {rates[2]:.1f}/min ({rates[2] / rates[1]:.2f}x)")  # fmt: skip
    finally:
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"],
                       capture_output=True)  # fmt: skip


def hop(remote, here, inp, runs: int) -> None:
    here.generate(inp)  # warm
    ratios = []
    for n in range(runs):
        times = {}
        for name, backend in (("remote", remote), ("here", here))[:: 1 if n % 2 else -1]:
            started = time.perf_counter()
            backend.generate(inp)
            times[name] = time.perf_counter() - started
        ratios.append(times["remote"] / times["here"])
    print(f"remote hop: {statistics.median(ratios):.2f}x the in-process render "
          f"({min(ratios):.2f}-{max(ratios):.2f}, {runs} paired rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
