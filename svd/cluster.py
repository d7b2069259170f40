"""GPU workers on a Ray cluster (SVD_RAY_ADDRESS): renderer replicas on Ray Serve.

The app keeps what it owns (the page, the API, the one queue, outputs, records, webhooks);
each replica holds a loaded pipeline on its own GPU (one CPU each on a cluster without) and
renders one prepared request at a time, streaming its events back as they happen. The
queue runs one worker thread per replica, so a job never waits while a replica is idle.
A replica that dies costs only its run, which is tried once more on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from svd.backends.local import LocalBackend
from svd.contract import Prepared, Rendered
from svd.errors import BackendError
from svd.events import EventHandler, Log, emit
from svd.media import as_uint8_frames
from svd.remote import received, rendering

log = logging.getLogger(__name__)
APP = "svd-studio"  # the Serve application, and the Ray namespace
PACKAGE = Path(__file__).resolve().parent  # shipped to the cluster's workers
STATUS_EVERY = 5.0  # seconds between looks at how many replicas are up
RAY_OWN = frozenset({"auto", "local"})  # Ray's words for a cluster it finds or starts itself


class Renderer:
    """The Serve deployment: a LocalBackend on this replica's device, one run at a time."""

    def __init__(self, options: dict):
        import ray
        import torch
        from ray import serve

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.backend = LocalBackend(device=device, **options)
        self.backend.warm_up()
        node = ray.get_runtime_context().get_node_id()
        self.name = f"node {node[:8]}, replica {serve.get_replica_context().replica_tag}"
        self.busy = asyncio.Lock()  # a cancelled run holds the replica until it has stopped

    def pid(self) -> int:
        return os.getpid()

    async def render(self, prepared: Prepared):
        """The events of one render as they happen, then its Rendered (or a Failed). A
        cancelled call ends the run at its next event."""
        loop = asyncio.get_running_loop()
        async with self.busy:
            items = rendering(self.backend, prepared)
            try:
                while True:
                    step = loop.run_in_executor(None, next, items, None)
                    try:
                        item = await asyncio.shield(step)
                    except asyncio.CancelledError:
                        await asyncio.wait([step])
                        raise
                    if item is None:
                        return
                    yield self._signed(item) if isinstance(item, Rendered) else item
            finally:
                await loop.run_in_executor(None, items.close)

    def _signed(self, rendered: Rendered) -> Rendered:
        """Frames as bytes (a quarter of floats on the wire), each video naming its worker."""
        for made in rendered.all:
            if made.frames is not None:
                made.frames = as_uint8_frames(made.frames)
            made.facts = {**made.facts, "worker": self.name}
        return rendered


class ClusterBackend(LocalBackend):
    """The local backend's checks and defaults here; its renders on the cluster."""

    def __init__(self, handle, replicas: int, **options):
        super().__init__(device="cpu", **options)
        self.handle, self.replicas = handle, replicas
        self.needs_gpu = False  # the GPUs are the replicas'
        self._busy, self._count = 0, threading.Lock()
        self._up: tuple[float, int] = (0.0, replicas)

    @property
    def depth_model(self) -> str | None:
        return self._depth_model or ("tiny" if self.model == "tiny" else None)

    def warm_up(self) -> None:
        pass  # each replica loaded its model as it started

    def status(self) -> str:
        up = self.replicas_up()
        return (f"Model **{self.model}** on a Ray cluster: {up} of {self.replicas} replicas up, "
                f"{self._busy} busy")  # fmt: skip

    def replicas_up(self) -> int:
        when, up = self._up
        if time.monotonic() - when > STATUS_EVERY:
            try:
                from ray import serve

                app = serve.status().applications[APP]
                up = sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())
            except Exception:  # the controller is busy or gone: say what was last known
                pass
            self._up = (time.monotonic(), up)
        return up

    def render(self, prepared: Prepared, on_event: EventHandler | None = None) -> Rendered:
        """Render on a free replica; one that dies mid-run costs this try, and the run goes
        once more to another."""
        from ray.exceptions import RayActorError

        for attempt in (1, 2):
            stream = self.handle.options(stream=True).render.remote(prepared)
            try:
                with self._counted():
                    return received(stream, on_event)
            except RayActorError as e:
                log.warning("a replica died running a request: %s", str(e).splitlines()[0])
                if attempt == 2:
                    raise BackendError(
                        "the cluster lost the worker running this request, twice (its "
                        "process ended); the run is lost, try it again"
                    ) from None
                emit(on_event, Log("the worker running this was lost; trying another"))
            except BaseException:  # stopped here, or failed: the replica stops too
                stream.cancel()
                raise
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _counted(self):
        with self._count:
            self._busy += 1
        try:
            yield
        finally:
            with self._count:
                self._busy -= 1

    def close(self) -> None:
        pass


def reachable(address: str) -> None:
    """A host:port address must answer within seconds (Ray itself would retry for about
    fourteen minutes); SystemExit naming the setting otherwise."""
    if address in RAY_OWN or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or address, int(port or 6379)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise SystemExit(no_cluster(address, f"nothing answers there: {e}")) from None


def no_cluster(address: str, why: str) -> str:
    return (
        f"SVD_RAY_ADDRESS={address}: no Ray cluster to connect to ({why}). Start one with "
        "`ray start --head` (README: Several machines), or unset SVD_RAY_ADDRESS to run on "
        "this machine."
    )


def start(address: str, replicas: int | None, options: dict) -> ClusterBackend:
    """Connect to the cluster at `address`, deploy `replicas` renderers (default: one per
    GPU of the cluster, else one) holding the model `options` name, and wait for them."""
    reachable(address)
    import ray
    from ray import serve

    try:
        if not ray.is_initialized():
            ray.init(address=address, namespace=APP, log_to_driver=False,
                     runtime_env={"py_modules": [str(PACKAGE)]})  # fmt: skip
    except ConnectionError as e:
        raise SystemExit(no_cluster(address, str(e).splitlines()[0])) from None
    gpus = int(ray.cluster_resources().get("GPU", 0))
    replicas = replicas or gpus or 1
    each = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    serve.start(proxy_location="Disabled")  # no HTTP: the app is the only caller
    deployment = serve.deployment(Renderer, name="Renderer", max_ongoing_requests=1,
                                  health_check_period_s=2)  # fmt: skip
    remote = {k: v for k, v in options.items() if k in ("model", "controlnet", "memory", "fast")}
    started = time.perf_counter()
    handle = serve.run(
        deployment.options(num_replicas=replicas, ray_actor_options=each).bind(remote),
        name=APP, route_prefix=None,
    )  # fmt: skip
    log.info("%d replicas ready on the cluster in %.0f s", replicas, time.perf_counter() - started)
    return ClusterBackend(handle, replicas, **options)
