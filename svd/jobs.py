"""The one queue of generation requests, for the page and the HTTP API.

Durable: every request, its status, logs, result or error is a row in SQLite in the output
folder, so a restart loses none. Requests queued through the API run after a restart; one
that was running, or a page request whose visitor's connection is gone, ends with a clear
error. Run by one worker per backend (one backend per device, `SVD_DEVICES`, or per
replica on a cluster). Three parts, each with one reason to change: the durable store
(svd/jobstore.py), the order of waiting requests (svd/scheduler.py) and the notifier that
wakes each request's watchers (svd/notify.py); this module runs requests through them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from svd import webhooks
from svd.contract import Backend
from svd.errors import BackendError, InputError
from svd.events import Event, Preview, Queued, Step, Tick, describe
from svd.jobstore import JobStore, full
from svd.notify import Notifier
from svd.outputs import OutputStore
from svd.run import run as run_here
from svd.run import settle
from svd.scheduler import Scheduler
from svd.schema import SVDInput

log = logging.getLogger(__name__)
MAX_KEPT = 1000  # finished requests kept for their results
RESTARTED = "interrupted by a restart; send the request again"
CANCELLED = "Request was cancelled"
FULL = "the server's disk is full; try again later"


class Cancelled(Exception):
    """The request was cancelled while it ran."""


class QueueFull(BackendError):
    """No room for another request (the whole queue, or this visitor's share)."""


@dataclass(frozen=True)
class Failure:
    """How a request failed: the HTTP status an API caller gets, fal's `detail`, and fal's
    `error_type` for request-level errors (timeouts, cancellation, server failures)."""

    status: int
    detail: str | list
    error_type: str | None = None


def cancelled() -> Failure:
    return Failure(499, CANCELLED, "client_cancelled")


def timed_out(seconds: float) -> Failure:
    return Failure(504, f"Request timed out: it could not start within {seconds:g} s",
                   "request_timeout")  # fmt: skip


@dataclass
class Job:
    id: str
    seq: int
    surface: str  # "api" or "page"
    session: str = ""
    address: str = ""
    status: str = "IN_QUEUE"  # then IN_PROGRESS, then COMPLETED
    inp: SVDInput | None = None
    logs: list[dict] = field(default_factory=list)
    output: dict | None = None
    error: Failure | None = None
    started: float | None = None
    finished: float | None = None
    events: list[Event] = field(default_factory=list)  # this process's run only
    webhook: dict | None = None  # {"url", "files"}: where to POST the result, and file URLs
    deadline: threading.Timer | None = None  # ends the request if it has not started by then
    backend: Backend | None = None  # a backend for this request alone (a visitor's fal key)
    # The submitter's context (a page run's Gradio request): the run happens inside it, so
    # what reads the request there (ZeroGPU's quota, by the visitor's token) finds it.
    context: contextvars.Context | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    on_done: list = field(default_factory=list)  # called from the worker when it finishes
    watched: Callable[[], bool] | None = None  # False once nobody watches: the run ends
    first_step: tuple[float, int] | None = None  # (when, index) of the first step seen

    def log(self, message: str) -> dict:
        """Add a log line in fal's shape; it is returned for the store."""
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        entry = {"message": message, "level": "INFO", "source": "USER", "timestamp": now}
        self.logs.append(entry)
        return entry

    @property
    def inference_time(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return round(self.finished - self.started, 3)


@dataclass(frozen=True)
class Limits:
    """Requests one visitor may have queued or running; 0 means no limit."""

    per_session: int = 0
    per_address: int = 0


class JobQueue:
    """Runs requests first in, first out; one worker thread per backend in `backends`,
    keeping the videos in `folder` (`run(backend, inp, store, on_event)`: svd.run.run by
    default)."""

    def __init__(
        self, backends: list[Backend], folder: str | Path, max_size: int = 64, run=None,
        limits: Limits = Limits(),
    ):  # fmt: skip
        self.backends = backends
        self.run = run or run_here
        self.outputs = OutputStore(folder)  # the finished videos and their records
        self.max_size = max_size
        self.limits = limits
        self.store = JobStore(folder)
        self.notifier = Notifier()  # wakes each request's watchers when it changes
        self.deliveries = webhooks.Deliveries(self.store.path)
        self._lock = threading.Lock()  # the jobs in memory, and the limits
        self.scheduler: Scheduler[Job] = Scheduler()
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # live and recent, by id
        self._recover()
        for n, backend in enumerate(backends):
            threading.Thread(target=self._work, args=(backend,), daemon=True,
                             name=f"svd-worker-{n}").start()  # fmt: skip

    # -- what the surfaces call

    def submit(
        self, inp: SVDInput, surface: str = "api", session: str = "", address: str = "",
        backend: Backend | None = None, limited: bool = True, webhook: dict | None = None,
        start_timeout: float | None = None, on_done=None, watched=None,
    ) -> Job:  # fmt: skip
        """Queue a request; QueueFull when there is no room for it, InputError past
        SVD_MAX_WORK. A request not started within `start_timeout` seconds ends with fal's
        request_timeout (504)."""
        runner = backend or (self.backends[0] if self.backends else None)
        if isinstance(runner, Backend):  # the work is checked before it waits in the queue
            settle(runner, inp)
        with self._lock:
            if len(self.scheduler) >= self.max_size:
                raise QueueFull(f"the queue is full ({self.max_size} requests); try later")
            if limited:
                self._check_limits(session, address)
            job = Job(secrets.token_hex(12), 0, surface, session, address, inp=inp)
            job.backend, job.webhook, job.watched = backend, webhook, watched
            job.context = contextvars.copy_context()
            if on_done is not None:  # before it can start, so it cannot be missed
                job.on_done.append(on_done)
            job.seq = self._insert(job)
            self._remember(job)
            if backend is not None and not backend.needs_gpu:  # a visitor's own fal run:
                threading.Thread(target=self._start, args=(job, backend), daemon=True).start()
                return job  # it holds no device, so it waits for no worker
            self.scheduler.add(job)
        if start_timeout is not None:
            job.deadline = threading.Timer(start_timeout, self._expire, (job, start_timeout))
            job.deadline.daemon = True
            job.deadline.start()
        return job

    def get(self, job_id: str) -> Job | None:
        """A request by id: live ones from memory, older ones from the database."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        row = self.store.load(job_id)
        return _from_row(row) if row else None

    def position(self, job: Job) -> int:
        """How many requests will start before this one (0: next, or running)."""
        return self.scheduler.position(job)

    def cancel(self, job: Job) -> bool:
        """Ask a queued or running request to stop; False if it had already finished."""
        with self._lock:
            if job.done.is_set():
                return False
            job.cancel.set()
            if self.scheduler.remove(job):
                self._finish(job, error=cancelled())
        return True

    def _expire(self, job: Job, seconds: float) -> None:
        if self.scheduler.remove(job):  # still waiting: it ends; once started, it runs on
            self._finish(job, error=timed_out(seconds))

    def active(self, session: str = "", address: str = "") -> list[Job]:
        """The requests of a browser session (or an address) that are queued or running."""
        with self._lock:
            return [
                j for j in self._jobs.values()
                if not j.done.is_set()
                and ((session and j.session == session) or (address and j.address == address))
            ]  # fmt: skip

    # -- the workers

    def close(self) -> None:
        """Stop taking requests: each worker ends after its current run."""
        self.scheduler.close()
        self.deliveries.close()

    def _work(self, backend: Backend) -> None:
        while (taken := self.scheduler.take()) is not None:
            job, behind = taken
            for other in behind:  # each moved up one place
                self.notifier.publish(other.id)
            try:
                self._start(job, backend)
            except Exception:  # nothing one request does stops the worker
                log.exception("request %s", job.id)

    def _start(self, job: Job, backend: Backend) -> None:
        if job.deadline is not None:  # it started in time: no thread waits on for it
            job.deadline.cancel()
        job.status, job.started = "IN_PROGRESS", time.time()
        self.notifier.publish(job.id)
        try:
            self._save(job, "status", "started")
            context = job.context or contextvars.Context()  # a recovered job has none
            context.run(self._run, job, job.backend or backend)
        except Exception as e:  # the database failed (a full disk): the worker goes on
            log.exception("request %s could not be recorded", job.id)
            if not job.done.is_set():
                failure = Failure(507, FULL, "runner_server_error") if full(e) else Failure(
                    500, "the server could not record the run", "internal_error"
                )  # fmt: skip
                try:
                    self._finish(job, error=failure)
                except Exception:  # still failing: whoever waits has been told
                    log.exception("request %s: its end could not be recorded", job.id)

    def _run(self, job: Job, backend: Backend) -> None:
        def on_event(event: Event) -> None:
            if job.cancel.is_set():
                raise Cancelled
            if isinstance(event, Tick):
                return
            if job.watched is not None and not job.watched():  # its watcher went away
                job.cancel.set()
                raise Cancelled
            if isinstance(event, Step) and job.first_step is None:
                job.first_step = (time.time(), event.index)
            job.events.append(event)
            if not isinstance(event, (Queued, Preview)):  # the page shows previews; logs not
                self.store.append_log(job.id, job.log(describe(event)))
            self.notifier.publish(job.id)

        try:
            out = self.run(backend, job.inp, self.outputs, on_event)
        except Cancelled:
            self._finish(job, error=cancelled())
        except InputError as e:
            self._finish(job, error=Failure(422, e.fal_detail()))
        except BackendError as e:
            self._finish(job, error=Failure(500, str(e), "runner_server_error"))
        except Exception as e:  # the queue keeps serving whatever one request does
            if full(e):  # writing the video: a clear 507, no traceback
                self._finish(job, error=Failure(507, FULL, "runner_server_error"))
                return
            log.exception("request %s failed", job.id)  # the details stay in the server's log
            failure = Failure(500, f"generation failed ({type(e).__name__})", "runner_server_error")
            self._finish(job, error=failure)
        else:
            self._finish(job, output=out.model_dump())

    def _finish(self, job: Job, output: dict | None = None, error: Failure | None = None) -> None:
        job.output, job.error, job.finished = output, error, time.time()
        if job.deadline is not None:
            job.deadline.cancel()
        job.inp = job.backend = job.context = job.watched = None  # a data: URI can be large;
        # the record keeps what matters
        job.events = list({type(e): e for e in job.events}.values())  # the last of each kind
        job.status = "COMPLETED"
        try:
            if error is not None:
                self.store.append_log(job.id, job.log(f"error: {error.detail}"))
            self._save(job)
            self.store.drop_inputs(job.id)
        finally:  # whoever waits is told, even if the database failed
            job.done.set()
            self.notifier.publish(job.id)
            for callback in job.on_done:
                callback()
            if job.webhook:
                self.deliveries.add(job)

    def _check_limits(self, session: str, address: str) -> None:
        # A cancelled run counts no more: it ends at its next step, whatever the visitor does.
        live = [j for j in self._jobs.values() if not j.done.is_set() and not j.cancel.is_set()]
        per_session, per_address = self.limits.per_session, self.limits.per_address
        if session and per_session and sum(j.session == session for j in live) >= per_session:
            raise QueueFull(
                f"you already have {per_session} run(s) queued or running; "
                "wait for it to finish or stop it"
            )
        if address and per_address and sum(j.address == address for j in live) >= per_address:
            raise QueueFull(
                f"your address already has {per_address} runs queued or running; "
                "wait for one to finish"
            )

    # -- the database

    def _recover(self) -> None:
        """After a restart: what was running ends with a clear error, and so do queued page
        requests (their visitor is gone); queued API requests run again."""
        now = time.time()
        for row in self.store.unfinished():
            try:
                job = _from_row(row)
            except ValueError:  # its input no longer validates: it ends like the others
                job = _from_row({**row, "input": None})
            if job.status == "IN_QUEUE" and job.surface == "api" and job.inp is not None:
                self._remember(job)
                self.scheduler.add(job)
                continue
            job.status, job.finished = "COMPLETED", now
            job.error = Failure(500, RESTARTED, "internal_error")
            self.store.append_log(job.id, job.log(f"error: {RESTARTED}"))
            job.inp = None
            self._save(job)
            self.store.drop_inputs(job.id)
            if job.webhook:
                self.deliveries.add(job)
        self.store.prune(MAX_KEPT)

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        if len(self._jobs) > MAX_KEPT:  # finished ones go, oldest first; the database keeps them
            done = [i for i, j in self._jobs.items() if j.done.is_set()]
            for old in done[: len(self._jobs) - MAX_KEPT]:
                del self._jobs[old]
            if job.seq % MAX_KEPT == 0:  # now and then: the database keeps ten times as many
                self.store.prune(10 * MAX_KEPT)

    def _insert(self, job: Job) -> int:
        row = {"id": job.id, "surface": job.surface, "session": job.session,
               "address": job.address, "status": job.status,
               "webhook": json.dumps(job.webhook) if job.webhook else None,
               "created": time.time()}  # fmt: skip
        return self.store.insert(row, job.inp.model_dump_json() if job.inp else None)

    def _save(self, job: Job, *columns: str) -> None:
        """Write `columns` of the job's row (all that change, by default)."""
        values = {
            "status": job.status,
            "output": json.dumps(job.output) if job.output is not None else None,
            "error": json.dumps(job.error.detail) if job.error else None,
            "error_code": job.error.status if job.error else None,
            "error_type": job.error.error_type if job.error else None,
            "started": job.started,
            "finished": job.finished,
        }
        wanted = set(columns or values) | (
            {"error_code", "error_type"} if "error" in columns else set()
        )
        self.store.update(job.id, {k: v for k, v in values.items() if k in wanted})


def _from_row(row: dict) -> Job:
    """A request as the database keeps it."""
    job = Job(row["id"], row["seq"], row["surface"], row["session"], row["address"])
    job.status, job.logs = row["status"], row["logs"]
    job.started, job.finished = row["started"], row["finished"]
    if row["input"]:
        job.inp = SVDInput.model_validate_json(row["input"])
    if row["output"]:
        job.output = json.loads(row["output"])
    if row["error"] is not None:
        job.error = Failure(row["error_code"] or 500, json.loads(row["error"]), row["error_type"])
    if row["webhook"]:
        job.webhook = json.loads(row["webhook"])
    if job.status == "COMPLETED":
        job.done.set()
    return job
