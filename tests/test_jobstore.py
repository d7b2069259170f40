"""The queue's store: inputs written once, steps appended, old requests given back to the
disk, a full disk and an unreadable database met with clear answers."""

import base64
import sqlite3
import threading

import pytest

from svd.api import build_api
from svd.events import Step
from svd.jobs import JobQueue
from svd.jobstore import JobStore, StorageFull
from svd.schema import SVDInput, SVDOutput

from .inprocess import post

BIG = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\x00" * 14_000_000).decode()
SMALL_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\x00" * 100).decode()


def ten_steps(backend, inp, store, on_event):
    for i in range(1, 11):
        on_event(Step(i, 10))
    return SVDOutput.model_validate(
        {"image": {"url": "file:///x.mp4", "content_type": "video/mp4"}, "seed": 1}
    )


def test_a_big_request_is_written_once_and_its_steps_appended(tmp_path):
    """A 14 MB data: URI over ten steps: the inputs go to a file once (gone when the request
    ends), each step is a log line, and the database stays small."""
    gate = threading.Event()

    def gated(backend, inp, store, on_event):
        assert gate.wait(30)
        return ten_steps(backend, inp, store, on_event)

    jobs = JobQueue([object()], tmp_path, run=gated)
    job = jobs.submit(SVDInput(image_url=BIG))
    inputs = tmp_path / "queue-inputs" / f"{job.id}.json"
    assert inputs.stat().st_size > 14_000_000  # kept beside the database while it waits
    gate.set()
    assert job.done.wait(30)
    assert not inputs.exists()
    db = sqlite3.connect(tmp_path / "queue.sqlite3")
    assert db.execute("SELECT input FROM requests").fetchall() == [(None,)]
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 10
    assert (tmp_path / "queue.sqlite3").stat().st_size < 1_000_000
    assert [e["message"] for e in jobs.get(job.id).logs][-1] == "step 10 of 10"


def test_the_file_shrinks_as_requests_age_out(tmp_path):
    store = JobStore(tmp_path)
    for n in range(400):
        store.insert({"id": f"r{n}", "surface": "api", "status": "COMPLETED",
                      "output": "x" * 4000, "created": 0.0}, None)  # fmt: skip
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    grown = (tmp_path / "queue.sqlite3").stat().st_size
    store.prune(10)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "queue.sqlite3").stat().st_size < grown / 4


def test_an_unreadable_database_is_set_aside(tmp_path):
    (tmp_path / "queue.sqlite3").write_bytes(b"this is no database" * 100)
    jobs = JobQueue([], tmp_path)  # no traceback: it starts with an empty queue
    assert jobs.submit(SVDInput(image_url="x")).status == "IN_QUEUE"
    aside = list(tmp_path.glob("queue.sqlite3.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is no database")


def test_a_full_disk_is_a_507_and_nothing_is_queued(tmp_path, monkeypatch):
    monkeypatch.delenv("SVD_API_KEY", raising=False)
    jobs = JobQueue([], tmp_path)
    pages = jobs.store._db.execute("PRAGMA page_count").fetchone()[0]
    jobs.store._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's "disk full"
    with pytest.raises(StorageFull):
        for n in range(10_000):  # fill the room left
            jobs.store.insert({"id": f"{n:024d}", "surface": "api", "status": "IN_QUEUE",
                               "created": 0.0}, None)  # fmt: skip
    r = post(build_api(jobs, tmp_path), "/queue/fal-ai/svd", json={"image_url": SMALL_URI})
    assert r.status_code == 507 and r.json()["detail"].startswith("the server's disk is full")
    assert not list((tmp_path / "queue-inputs").iterdir())


@pytest.mark.parametrize("uri", ["data:image/png;base64,%%%not-base64", "data:image/png"])
def test_a_bad_data_uri_is_refused_before_it_waits(tmp_path, monkeypatch, uri):
    monkeypatch.delenv("SVD_API_KEY", raising=False)
    jobs = JobQueue([], tmp_path)  # no worker: a queued request would wait for good
    r = post(build_api(jobs, tmp_path), "/queue/fal-ai/svd", json={"image_url": uri})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image_url"]
    assert not len(jobs.scheduler)


def test_a_cancelled_run_frees_its_addresss_place_at_once(tmp_path):
    """An address at its limit cancels its run: its next run is taken at once, though the
    cancelled one is still finishing its step."""
    from svd.jobs import Limits

    started, gate = threading.Event(), threading.Event()

    def slow_step(backend, inp, store, on_event):
        started.set()
        assert gate.wait(30)  # a long step: the cancel is seen at its end
        return ten_steps(backend, inp, store, on_event)

    jobs = JobQueue([object()], tmp_path, run=slow_step, limits=Limits(per_address=1))
    first = jobs.submit(SVDInput(image_url="x"), address="1.2.3.4")
    assert started.wait(10)
    jobs.cancel(first)
    assert not first.done.is_set()
    second = jobs.submit(SVDInput(image_url="x"), address="1.2.3.4")
    gate.set()
    assert first.done.wait(10) and first.error.detail == "Request was cancelled"
    assert second.done.wait(10) and second.error is None
