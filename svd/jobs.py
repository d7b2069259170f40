"""A first-in, first-out queue of generation requests for the HTTP API, run one at a time."""

from __future__ import annotations

import collections
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from svd.backends import Backend, Event, Queued, describe
from svd.errors import BackendError, InputError
from svd.schema import SVDInput

MAX_KEPT = 1000  # finished jobs remembered for their results


class Cancelled(Exception):
    """The request was cancelled while it ran."""


@dataclass
class Job:
    id: str
    inp: SVDInput | None
    status: str = "IN_QUEUE"  # then IN_PROGRESS, then COMPLETED
    logs: list[dict] = field(default_factory=list)
    output: dict | None = None
    error: tuple[int, object] | None = None  # (HTTP status, detail)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    on_done: list = field(default_factory=list)  # called, from the worker, when it finishes

    def log(self, message: str) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.logs.append({"message": message, "level": "INFO", "source": "USER", "timestamp": now})


class JobQueue:
    """Runs jobs on `backend` in submission order on one worker thread."""

    def __init__(self, backend: Backend, max_size: int = 64, run=None):
        self.backend = backend
        self.run = run or (lambda backend, inp, on_event: backend.generate(inp, on_event))
        self.max_size = max_size
        self._pending: collections.deque[Job] = collections.deque()
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._lock = threading.Condition()
        threading.Thread(target=self._work, daemon=True, name="svd-api-queue").start()

    def submit(self, inp: SVDInput) -> Job:
        """Queue a request; raises BackendError when the queue is full."""
        with self._lock:
            if len(self._pending) >= self.max_size:
                raise BackendError(f"the queue is full ({self.max_size} requests); try later")
            job = Job(secrets.token_hex(12), inp)
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_KEPT:
                self._jobs.popitem(last=False)
            self._pending.append(job)
            self._lock.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many requests run before this one (0: next, or running)."""
        with self._lock:
            try:
                return self._pending.index(job)
            except ValueError:
                return 0

    def cancel(self, job: Job) -> bool:
        """Ask a queued or running job to stop; False if it had already finished."""
        with self._lock:
            if job.done.is_set():
                return False
            job.cancel.set()
            if job in self._pending:
                self._pending.remove(job)
                self._finish(job, error=(400, "Request was cancelled"))
        return True

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._lock.wait()
                job = self._pending.popleft()
                job.status = "IN_PROGRESS"
            self._run(job)

    def _run(self, job: Job) -> None:
        def on_event(event: Event) -> None:
            if job.cancel.is_set():
                raise Cancelled
            if not isinstance(event, Queued):
                job.log(describe(event))

        try:
            out = self.run(self.backend, job.inp, on_event)
        except Cancelled:
            self._finish(job, error=(400, "Request was cancelled"))
        except InputError as e:
            detail = [
                {"loc": ["body", *d["loc"]], "msg": d["msg"], "type": d["type"]} for d in e.details
            ]
            self._finish(job, error=(422, detail))
        except BackendError as e:
            self._finish(job, error=(500, str(e)))
        except Exception as e:  # the queue keeps serving whatever one request does
            self._finish(job, error=(500, f"generation failed: {type(e).__name__}: {e}"))
        else:
            self._finish(job, output=out.model_dump())

    def _finish(self, job: Job, output: dict | None = None, error=None) -> None:
        job.output, job.error = output, error
        job.inp = None  # a data: URI can be large; the record keeps what matters
        if error is not None:
            job.log(f"error: {error[1]}")
        job.status = "COMPLETED"
        job.done.set()
        for callback in job.on_done:
            callback()
