"""Serving: seconds from `python app.py` to the page answering, and an HTTP API request
against the same request made directly on a backend (tiny model, same parameters).

Usage: python bench/serving.py [--runs 5]
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import time

import httpx
from common import PARAMS, medians, workdir

from svd.backends.local import LocalBackend
from svd.schema import SVDInput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(out_dir) -> tuple[subprocess.Popen, str, float]:
    """Start the app; return it, its URL and the seconds until the page answered 200."""
    port = free_port()
    env = {**os.environ, "SVD_MODEL": "tiny", "SVD_OUTPUT_DIR": str(out_dir),
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - t
        except httpx.HTTPError:
            time.sleep(0.05)
        if time.perf_counter() - t > 120:
            proc.kill()
            raise RuntimeError("the app did not start")


def main(runs: int = 5) -> dict:
    tmp = workdir()
    starts = []
    for i in range(3):
        proc, url, seconds = start(tmp / f"cold{i}")
        starts.append(seconds)
        proc.terminate()
        proc.wait()
    cold = sorted(starts)[1]
    print(f"cold start, python app.py to HTTP 200: {cold:.2f} s (median of 3; goal <= 10 s)")

    proc, url, _ = start(tmp / "outputs")
    try:
        picture = (tmp / "picture.png").read_bytes()
        body = {"image_url": "data:image/png;base64," + base64.b64encode(picture).decode()}
        body.update(PARAMS)
        backend = LocalBackend(model="tiny", output_dir=tmp / "direct")
        inp = SVDInput(**body)
        with httpx.Client(timeout=120) as client:
            t = medians(
                runs,
                direct=lambda: backend.generate(inp),
                http=lambda: client.post(f"{url}/fal-ai/svd", json=body).raise_for_status(),
            )
    finally:
        proc.terminate()
    ratio = t["http"] / t["direct"]
    print(f"HTTP API {t['http']:.3f} s vs direct {t['direct']:.3f} s: ratio {ratio:.3f}")
    return {"cold_start_s": cold, "http_ratio": ratio}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    main(parser.parse_args().runs)
