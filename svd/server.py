"""Start the app: settings from flags and environment, one queue, the API and the page."""

from __future__ import annotations

import argparse
import fcntl
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import gradio as gr
import torch
import uvicorn

from svd import zerogpu
from svd.api import build_api
from svd.backends import backend_class, get_backend, resolve_name
from svd.contract import Backend
from svd.jobs import JobQueue, Limits
from svd.routing import FalRouting
from svd.settings import Settings, configure
from svd.ui import ASSETS, CSS, JS, THEME, build_app
from svd.ui.choice import Backends
from svd.ui.examples import Makings

FAL_WORKERS = 4  # fal runs elsewhere: a few at once keep its queue busy, not this machine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags; each one left out falls back to its environment variable (see Settings)."""
    p = argparse.ArgumentParser(description="Serve the SVD Studio page and its HTTP API.")
    p.add_argument("--backend", choices=["auto", "local", "fal"])
    p.add_argument("--model", help="hub id, local folder or 'tiny' (SVD_MODEL)")
    p.add_argument("--controlnet", help="ControlNet id or folder (SVD_CONTROLNET)")
    p.add_argument("--output-dir", type=Path, help="where videos are kept (SVD_OUTPUT_DIR)")
    p.add_argument("--memory", choices=["normal", "low"], help="SVD_MEMORY")
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last and torch.compile; the first run at each size compiles (SVD_FAST)",
    )
    p.add_argument("--devices", help="one worker per device: cuda:0,cuda:1 (SVD_DEVICES)")
    p.add_argument("--host", help="GRADIO_SERVER_NAME, 127.0.0.1 by default")
    p.add_argument("--port", type=int, help="GRADIO_SERVER_PORT, 7860 by default")
    p.add_argument("--root-path", help="behind a proxy (GRADIO_ROOT_PATH)")
    p.add_argument("--queue-port", type=int, help="fal's queue host on this port (SVD_QUEUE_PORT)")
    p.add_argument("--ssl-certfile", type=Path, help="serve https with this certificate")
    p.add_argument("--ssl-keyfile", type=Path, help="the certificate's key (SVD_SSL_KEYFILE)")
    p.add_argument(
        "--forwarded-allow-ips",
        help="proxies whose X-Forwarded-* headers are believed (FORWARDED_ALLOW_IPS)",
    )
    return p.parse_args(argv)


def make_workers(config: Settings) -> tuple[list[Backend], dict[str, dict]]:
    """One backend per worker: a few of a backend that renders on a service's machines
    (fal), a replica each on a Ray cluster (SVD_RAY_ADDRESS), or a pipeline per device
    (SVD_DEVICES). Also what builds each backend, by name."""
    options = {
        "local": {"model": config.model, "controlnet": config.controlnet,
                  "memory": config.memory, "fast": config.fast},
        "fal": {},
    }  # fmt: skip
    name = resolve_name(config.backend)
    if backend_class(name).remote:
        return [get_backend(name, **options[name])] * FAL_WORKERS, options
    if config.ray_address:  # one queue worker per replica on the cluster
        from svd import cluster

        remote = cluster.start(config.ray_address, config.ray_replicas, options[name])
        return [remote] * remote.replicas, options
    devices = config.device_list()
    return [get_backend(name, device=d, **options[name]) for d in devices], options


def sweep_parts(folder: Path) -> None:
    """Half-written files of a process that was killed."""
    for part in folder.glob("*.part"):
        part.unlink(missing_ok=True)


def claim(folder: Path):
    """Hold the output folder for this process (its queue, records, videos): a second app
    on the same folder stops with a clear message instead of taking the first one's work.
    The lock goes with the process, however it ends."""
    held = open(folder / "app.lock", "a")  # kept open for the app's life
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(
            f"Another SVD Studio app is serving the output folder {folder} (SVD_OUTPUT_DIR, "
            "--output-dir). Stop it, or give this one a folder of its own."
        ) from None
    return held


@dataclass
class App:
    """The built app: what uvicorn serves, its queue, and the output folder's lock."""

    asgi: FalRouting
    jobs: JobQueue
    held: IO  # the lock on the output folder, kept open while the app lives

    def close(self) -> None:
        """Stop the queue's workers and let the output folder go (an app built in-process)."""
        self.jobs.close()
        self.held.close()


def build(config: Settings, run=None) -> App:
    """The whole app on `config`: workers, the queue, the API and the page, not yet
    listening. `run` replaces the queue's run (default: the shared run, or ZeroGPU's)."""
    out_dir = Path(config.output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    held = claim(out_dir)
    sweep_parts(out_dir)
    workers, options = make_workers(config)
    if zerogpu.active():  # the models load now, on this thread, before the page serves
        zerogpu.start(workers)
    else:
        for backend in dict.fromkeys(workers):  # warm each model while the page comes up
            threading.Thread(target=_preload, args=(backend,), daemon=True).start()
    limits = Limits(config.max_runs_per_session, config.max_runs_per_address)
    jobs = JobQueue(workers, out_dir, config.queue_size, run=run or zerogpu.generate,
                    limits=limits)  # fmt: skip
    makings = Makings(jobs, workers[0])
    if config.examples == "start":  # made in the background, before anyone asks
        makings.start_all()
    page = build_app(jobs, Backends(workers[0], options), makings)
    page.queue(max_size=config.queue_size)
    # gradio internal: Queue.sleep_when_free (1 ms) and progress_update_sleep_when_free (10 ms):
    # its loops woke a thousand times a second, taking the GIL from the render each time
    # (bench/serving.py); at 10 ms a page run waits at most 10 ms more to start.
    page._queue.sleep_when_free, page._queue.progress_update_sleep_when_free = 0.01, 0.1
    server = gr.mount_gradio_app(
        build_api(jobs, out_dir),  # the fal-compatible routes, same port
        page,
        path="/",
        root_path=config.root_path,
        allowed_paths=[str(ASSETS)],
        show_error=False,  # our errors are gr.Error; anything else must not show its internals
        css=CSS,
        theme=THEME,
        js=JS,
        footer_links=["gradio", "settings"],  # the API is the page's own panel and /docs
        run_history=False,  # it would keep a typed fal key in the browser's storage
        max_file_size=config.max_download_bytes,
    )
    # Gradio refuses file inputs that were not uploaded through the page only once the app
    # "has launched" (processing_utils._check_allowed); launch() sets it, mounting does not.
    page.has_launched = True
    return App(FalRouting(server, config.queue_port, config.trusted_proxies()), jobs, held)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = configure(**{k: v for k, v in vars(args).items() if v is not None})
    torch.set_num_threads(config.cpu_threads())
    print(f"* torch uses {torch.get_num_threads()} CPU threads (SVD_THREADS)")
    app = build(config)
    server, sockets = listening(app, config)
    scheme = "https" if config.ssl_certfile else "http"
    print(f"* Running on {scheme}://{config.host}:{config.port} (API: /fal-ai/svd, docs: /docs)")
    if config.queue_port:
        print(f"* fal's queue host on {scheme}://{config.host}:{config.queue_port}")
    server.run(sockets=sockets)


def listening(app: App, config: Settings) -> tuple[uvicorn.Server, list[socket.socket]]:
    """A uvicorn server for `app`, and its sockets: the main port, and the queue port if set."""
    tls = {"ssl_certfile": config.ssl_certfile, "ssl_keyfile": config.ssl_keyfile}
    uv = uvicorn.Config(
        app.asgi, root_path=config.root_path or "", log_level="warning", proxy_headers=False,
        **{k: str(v) for k, v in tls.items() if v},
    )  # fmt: skip
    ports = [config.port] + ([config.queue_port] if config.queue_port else [])
    return uvicorn.Server(uv), [listen(config.host, port) for port in ports]


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _preload(backend: Backend) -> None:
    try:
        backend.warm_up()
    except Exception as e:  # shown again, clearly, by the first generation
        print(f"model not loaded: {e}")
