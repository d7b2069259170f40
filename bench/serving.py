"""Serving: what each way into the app costs over plain diffusers, and the cold start.

The app runs as `python app.py` (tiny model) in a subprocess; this process and the app use
the same number of torch threads and never compute at once: every call waits for its video
before the next starts. Each round runs every side once, the order rotated from round to
round, each call on a picture never seen before (no conditioning cache helps any side):

  plain   diffusers' pipeline called directly in this process, and the mp4 (overhead.py's)
  python  the Python API: svd.run on a LocalBackend in this process, from a data: URI
  sync    POST /fal-ai/svd with the picture as a data: URI, answered with the result
  queue   POST /queue/fal-ai/svd, its status stream (SSE) followed to COMPLETED, then GET
          the result
  page    the page's generate event over Gradio's queue, as the browser speaks it: upload
          the picture, join the queue, read the event stream to process_completed

No side downloads the finished video; the page is timed to its generate event's
process_completed (the follow-up events that show the video are not). Each way in is
reported as its per-round ratio to plain, with the spread, in wall seconds and in CPU
seconds (this process's, plus the app's for the ways through it: less moved by other work
on the machine). The cold start is `python app.py` to the page's first HTTP 200, and to
the first finished video (POST /fal-ai/svd sent at that first 200; the model loads in the
background after the server answers). --explain splits each way's time (the client's
marks, the queue's times of each request, the run's record) and gives the CPU the app's
event loop spent per video. 4 steps take about 1 s on 2 quiet cores.

Usage: python bench/serving.py [--runs 7] [--threads N] [--steps 4] [--explain]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
from common import PARAMS, Timings, environment, make_picture, make_video, paired, workdir
from overhead import plain
from PIL import Image

from svd.backends.local import LocalBackend
from svd.backends.tiny import build_tiny_pipeline
from svd.schema import SVDInput

ROOT = Path(__file__).resolve().parent.parent
WAYS = ("python", "sync", "queue", "page")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(out_dir: Path, threads: int) -> tuple[subprocess.Popen, str, float]:
    """`python app.py` on a free port; (the process, its URL, seconds to the first 200)."""
    port = free_port()
    env = {**os.environ, "SVD_MODEL": "tiny", "SVD_OUTPUT_DIR": str(out_dir),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "SVD_EXAMPLES": "click",
           "SVD_MAX_RUNS_PER_SESSION": "0", "SVD_MAX_RUNS_PER_ADDRESS": "0",
           "SVD_THREADS": str(threads)}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir.parent / f"{out_dir.name}.log", "w")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - started < 120:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc, url, time.perf_counter() - started
        except httpx.HTTPError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("the app did not answer within 120 s")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class Pictures:
    """A new picture for every call: its PNG bytes, a file of it and its data: URI."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def next(self) -> tuple[bytes, Path, str]:
        self.count += 1
        buf = io.BytesIO()
        make_picture(variant=self.count).save(buf, "PNG")
        data = buf.getvalue()
        path = self.folder / f"picture{self.count}.png"
        path.write_bytes(data)
        return data, path, "data:image/png;base64," + base64.b64encode(data).decode()


class App:
    """The app's three ways in over HTTP, each returning the request's id (the page's:
    None). One keep-alive client, as a browser or an SDK holds one."""

    def __init__(self, url: str, params: dict):
        self.params = params
        self.http = httpx.Client(base_url=url, timeout=120)
        config = self.http.get("/config").json()
        ids = {c["id"]: c for c in config["components"]}
        dep = next(d for d in config["dependencies"] if d.get("api_name") == "generate")
        self.fn_index = dep["id"]
        self.inputs = [(ids[i]["props"].get("elem_id"), ids[i]["props"].get("value"))
                       for i in dep["inputs"]]  # fmt: skip
        self.marks: dict[str, float] = {}  # when the last call passed each point

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def sync(self, uri: str) -> str:
        r = self.http.post("/fal-ai/svd", json={"image_url": uri, **self.params})
        r.raise_for_status()
        self.mark("answered")
        return r.headers["x-fal-request-id"]

    def queue(self, uri: str) -> str:
        r = self.http.post("/queue/fal-ai/svd", json={"image_url": uri, **self.params})
        r.raise_for_status()
        self.mark("queued")
        urls = r.json()
        with self.http.stream("GET", urls["status_url"] + "/stream") as events:
            for line in events.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["status"] == "COMPLETED":
                    self.mark("completed")
                    break
        result = self.http.get(urls["response_url"])
        result.raise_for_status()
        assert result.json()["image"]["url"], result.text
        self.mark("answered")
        return urls["request_id"]

    def page(self, path: Path) -> None:
        with open(path, "rb") as f:
            r = self.http.post("/gradio_api/upload", files={"files": (path.name, f, "image/png")})
        r.raise_for_status()
        self.mark("uploaded")
        image = {"path": r.json()[0], "meta": {"_type": "gradio.FileData"},
                 "orig_name": path.name}  # fmt: skip
        p = self.params
        values = {"image": image, "seed": str(p["seed"]), "steps": p["steps"],
                  "num-frames": p["num_frames"], "width": p["width"], "height": p["height"],
                  "backend": "local", "seed-mode": "fixed"}  # fmt: skip
        session = os.urandom(6).hex()
        body = {"data": [values.get(i, v) for i, v in self.inputs], "fn_index": self.fn_index,
                "session_hash": session, "trigger_id": None, "event_data": None}  # fmt: skip
        self.http.post("/gradio_api/queue/join", json=body).raise_for_status()
        self.mark("joined")
        with self.http.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as r:
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    assert msg.get("success"), msg
                    self.mark("answered")
                    return
        raise RuntimeError("the page's event stream ended without a result")


def cpu_seconds(pid: int | None = None, loop: bool = False) -> float:
    """CPU seconds used so far by this process (or process `pid`), all its threads; with
    `loop`, its main thread alone (the app's event loop: HTTP, the streams, Gradio)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    stat = f"/proc/{pid}/task/{pid}/stat" if loop else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold_starts(tmp: Path, threads: int, count: int, pictures: Pictures, params: dict) -> None:
    """`python app.py` to its first 200 and to its first finished video, `count` times."""
    first_200, first_video = [], []
    for n in range(count):
        started = time.perf_counter()
        proc, url, answered = start_app(tmp / f"cold{n}", threads)
        try:
            body = {"image_url": pictures.next()[2], **params}
            httpx.post(f"{url}/fal-ai/svd", json=body, timeout=120).raise_for_status()
            first_video.append(time.perf_counter() - started)
            first_200.append(answered)
        finally:
            stop_app(proc)

    def spread(ts: list[float]) -> str:
        return f"{statistics.median(ts):.2f} s ({min(ts):.2f}-{max(ts):.2f}, {count} starts)"

    print(f"cold start, python app.py to the page's first HTTP 200: {spread(first_200)}")
    print(f"cold start, python app.py to the first finished video: {spread(first_video)}")


def main(runs: int = 7, threads: int | None = None, steps: int = 4, explain: bool = False,
         starts: int = 3) -> None:  # fmt: skip
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    params = {**PARAMS, "steps": steps}
    tmp = workdir()
    pictures = Pictures(tmp / "pictures")
    print(f"tiny SVD {params}, {environment()}; the app: SVD_THREADS={threads}")
    cold_starts(tmp, threads, starts, pictures, params)

    pipe = build_tiny_pipeline()
    backend = LocalBackend(pipe=pipe)
    proc, url, _ = start_app(tmp / "served", threads)
    try:
        app = App(url, params)
        ids: dict[str, list] = {way: [] for way in WAYS}
        marks: dict[str, list] = {way: [] for way in WAYS}
        cpu: dict[str, list[float]] = {way: [] for way in ("plain", *WAYS)}
        loop: dict[str, list[float]] = {way: [] for way in WAYS}  # the app's main thread

        def side(way: str):
            def once():
                data, path, uri = pictures.next()
                app.marks = {"sent": time.time()}
                used = cpu_seconds(), cpu_seconds(proc.pid), cpu_seconds(proc.pid, loop=True)
                if way == "python":
                    make_video(backend, SVDInput(image_url=uri, **params), tmp / "python")
                    app.mark("answered")
                    got = None
                elif way == "page":
                    got = app.page(path)
                else:
                    got = getattr(app, way)(uri)
                here, there = cpu_seconds() - used[0], cpu_seconds(proc.pid) - used[1]
                cpu[way].append(here + (there if way != "python" else 0.0))
                loop[way].append(cpu_seconds(proc.pid, loop=True) - used[2])
                ids[way].append(got)
                marks[way].append(app.marks)

            return once

        def direct():
            data = pictures.next()[0]
            used = cpu_seconds()
            plain(pipe, Image.open(io.BytesIO(data)), tmp / "plain.mp4", params)
            cpu["plain"].append(cpu_seconds() - used)

        t = paired(runs, plain=direct, **{way: side(way) for way in WAYS})
    finally:
        stop_app(proc)
    used = Timings({name: times[1:] for name, times in cpu.items()})  # warm-up left out
    print(f"plain diffusers + mp4: {t.spread('plain')}, CPU {used.spread('plain')} "
          "(median, min-max)")  # fmt: skip
    print("| way in | seconds per video (min-max) | against plain diffusers, paired by round "
          "| CPU seconds per video, against plain's |")  # fmt: skip
    print("|---|---|---|---|")
    for way in WAYS:
        print(f"| {way} | {t.spread(way)} | {t.ratio(way, 'plain')} "
              f"| {used.spread(way)}, {used.ratio(way, 'plain')} |")  # fmt: skip
    if explain:
        parts(tmp / "served", ids, marks)
        busy = ", ".join(f"{way} {statistics.median(loop[way][1:]) * 1000:.0f}" for way in WAYS)
        print(f"the app's event loop (its main thread), CPU ms per video: {busy}")


def parts(folder: Path, ids: dict, marks: dict) -> None:
    """Where each way in spends its time, in ms (medians over the rounds, warm-up left
    out), from the client's marks, the queue's times of each request (its SQLite row) and
    the run's own timings (its record)."""
    db = sqlite3.connect(f"file:{folder / 'queue.sqlite3'}?mode=ro", uri=True)
    rows = db.execute("SELECT id, surface, created, started, finished, output FROM requests "
                      "ORDER BY seq").fetchall()  # fmt: skip
    by_id = {r[0]: r for r in rows}
    page = [r[0] for r in rows if r[1] == "page"]
    print("\nwhere the time goes, ms (medians): sent->queued: the request read, checked and "
          "queued; ->started: the worker takes it; render and write: the run's own record; "
          "->finished: the rest of the run; ->answered: the client has the result")  # fmt: skip
    for way in ("sync", "queue", "page"):
        split: dict[str, list[float]] = {}
        chosen = page if way == "page" else ids[way]
        for job_id, m in list(zip(chosen, marks[way], strict=True))[1:]:
            _, _, created, started, finished, output = by_id[job_id]
            name = Path(json.loads(output)["image"]["file_name"]).with_suffix(".json")
            timings = json.loads((folder / name).read_text())["timings"]
            run = timings["inputs_s"] + timings["render_s"]
            for key, value in (("sent->queued", created - m["sent"]),
                               ("->started", started - created), ("render", run),
                               ("write", timings["write_s"]),
                               ("->finished", finished - started - timings["total_s"]),
                               ("->answered", m["answered"] - finished)):  # fmt: skip
                split.setdefault(key, []).append(value * 1000)
        print(f"{way}: " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in split.items()))
    python = sorted(folder.parent.joinpath("python").glob("*.json"))[1:]
    runs = [json.loads(p.read_text())["timings"] for p in python]
    if runs:
        render = statistics.median((t["inputs_s"] + t["render_s"]) * 1000 for t in runs)
        write = statistics.median(t["write_s"] * 1000 for t in runs)
        print(f"python (in this process): render {render:.0f}, write {write:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds, each side once a round")
    parser.add_argument("--threads", type=int, help="torch threads, here and in the app "
                        "(default: torch's own count here)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=4, help="denoising steps of each call")
    parser.add_argument("--starts", type=int, default=3, help="cold starts to time")
    parser.add_argument("--explain", action="store_true", help="where each way's time goes")
    args = parser.parse_args()
    main(args.runs, args.threads, args.steps, args.explain, args.starts)
