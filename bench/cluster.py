"""Renderer replicas on a Ray cluster: throughput with one and two replicas, and the cost of
the remote hop against rendering in-process.

Starts a local Ray head (CPU only, `ray start --head`), deploys the tiny model's renderers
as the app does (svd/cluster.py), and measures:
  throughput  the same requests (--requests) through 1 and 2 queue workers on two
              replicas (one worker keeps one replica busy): requests per minute, each
              replica one torch thread
  hop         one request at a time, each on a new picture, the cluster's replica against
              a LocalBackend in this process (one torch thread too), in rounds whose order
              alternates: the paired per-round ratio, median and spread

Usage: python bench/cluster.py [--requests 8] [--runs 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import environment, make_picture, make_video, paired, workdir  # noqa: E402

ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def head(port: int) -> subprocess.Popen:
    """A local Ray head in a process group of its own, up once its port answers: stopping
    that group stops this head alone, not another Ray on the machine (`ray stop` would)."""
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([ray, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--num-gpus=0", "--include-dashboard=false",
                             "--disable-usage-stats"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    stop_head(proc)
    raise RuntimeError(f"the Ray head did not come up on port {port}")


def stop_head(proc: subprocess.Popen) -> None:
    """Stop the head's process group: its raylet, GCS and workers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(20)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


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
    import ray
    from ray import serve

    from svd import cluster
    from svd.backends.local import LocalBackend
    from svd.schema import SVDInput

    work = workdir()
    make_picture(192, 128).save(work / "picture.png")
    inp = SVDInput(image_url=str(work / "picture.png"), width=192, height=128, num_frames=6,
                   steps=args.steps, seed=0)  # fmt: skip
    print(f"{environment()}, 1 thread per renderer too; tiny at 192x128, 6 frames, "
          f"{args.steps} steps")  # fmt: skip
    ray_head = head(args.port)
    try:
        address = f"127.0.0.1:{args.port}"
        rates = {}
        remote = cluster.start(address, 2, {"model": "tiny"})

        def on_cluster(request):
            return make_video(remote, request, work / "out")

        with ThreadPoolExecutor(2) as pool:  # warm both replicas
            list(pool.map(on_cluster, [inp] * 2))
        for workers in (1, 2):
            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:  # the queue's one worker per replica
                list(pool.map(on_cluster, [inp] * args.requests))
            rates[workers] = args.requests / (time.perf_counter() - started) * 60
        hop(remote, LocalBackend(model="tiny"), inp, args.runs, work)
        serve.delete(cluster.APP)
        print(f"throughput, {args.requests} requests: 1 replica {rates[1]:.1f}/min, "
              f"2 replicas {rates[2]:.1f}/min ({rates[2] / rates[1]:.2f}x)")  # fmt: skip
    finally:
        ray.shutdown()
        stop_head(ray_head)


def hop(remote, here, inp, runs: int, work: Path) -> None:
    """Each call on a new picture: neither side's conditioning cache helps it."""
    count = iter(range(1, 10**6))

    def side(backend, name: str):
        def once():
            n = next(count)
            make_picture(192, 128, variant=n).save(work / f"picture{n}.png")
            fresh = inp.model_copy(update={"image_url": str(work / f"picture{n}.png")})
            make_video(backend, fresh, work / name)

        return once

    t = paired(runs, remote=side(remote, "remote"), here=side(here, "here"))
    print(f"remote hop: {t.spread('remote')} against {t.spread('here')} in-process; "
          f"{t.ratio('remote', 'here')}")  # fmt: skip


if __name__ == "__main__":
    main()
