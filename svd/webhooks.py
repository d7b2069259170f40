"""fal's webhooks: when a request queued with `?fal_webhook=<url>` ends, POST its result there.

The payload is fal's: {request_id, gateway_request_id, status: OK | ERROR, payload, error}.
The URL passes the same public-address rules as inputs, at submit and at every attempt, and
the POST goes to the address that was checked. Deliveries wait in the queue's database until
they succeed or their attempts run out (SVD_WEBHOOK_ATTEMPTS, with SVD_WEBHOOK_BACKOFF
doubling between them), so a restart loses none, and a few threads send them all: a
thousand silent webhooks cost a thousand rows, not a thousand threads.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from svd.errors import InputError
from svd.fetch import check_public, is_http, pinned
from svd.outputs import served
from svd.settings import settings

log = logging.getLogger(__name__)
FIELD = "fal_webhook"
TIMEOUT = 15.0  # seconds for one delivery, as fal allows
MAX_DELAY = 900.0
SENDERS = 4  # threads that send webhooks, however many wait
TABLE = """CREATE TABLE IF NOT EXISTS webhooks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, url TEXT NOT NULL,
    body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due REAL NOT NULL)"""


def check(url: str) -> str:
    """The webhook URL, refused (InputError naming fal_webhook) unless public http(s)."""
    url = url.strip()
    if not is_http(url):
        raise InputError(FIELD, "must be an http(s) URL")
    check_public(url, FIELD)
    return url


def payload(job) -> dict:
    """fal's webhook body for a finished request."""
    body = {"request_id": job.id, "gateway_request_id": job.id}
    if job.error is None:
        video_key = job.webhook.get("video_key", "image")
        answer = served(job.output, job.webhook["files"], video_key)
        return {**body, "status": "OK", "payload": answer, "error": None}
    detail = {"detail": job.error.detail}
    if job.error.error_type:
        detail["error_type"] = job.error.error_type
    error = f"Invalid status code: {job.error.status}"
    return {**body, "status": "ERROR", "payload": detail, "error": error}


def attempt(url: str, body: dict) -> bool:
    """One POST of `body` to `url`, to the address checked now (DNS may answer otherwise
    than at submit); True on a 2xx answer."""
    try:
        address = check_public(url, FIELD)
        target, headers, extensions = pinned(url, address)
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            request = client.build_request(
                "POST", target, json=body, headers=headers, extensions=extensions
            )
            return client.send(request).is_success
    except (httpx.HTTPError, InputError) as e:
        log.warning("webhook for %s: %s", body["request_id"], e)
        return False


class Deliveries:
    """The webhooks still to deliver, kept in the SQLite file at `path` (the queue's), sent
    by SENDERS threads as they fall due."""

    def __init__(self, path: str | Path, senders: int = SENDERS):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(TABLE)
        self._wake = threading.Condition()
        self._todo: queue.Queue = queue.Queue()
        self._sending: set[int] = set()
        self._senders = senders
        self._closed = False
        for n in range(senders):
            threading.Thread(target=self._send, daemon=True, name=f"svd-webhook-{n}").start()
        threading.Thread(target=self._schedule, daemon=True, name="svd-webhooks").start()

    def add(self, job) -> None:
        """Deliver `job`'s result to its webhook (fal's payload), from now on."""
        with self._wake:
            self._db.execute(
                "INSERT INTO webhooks (request_id, url, body, due) VALUES (?, ?, ?, ?)",
                (job.id, job.webhook["url"], json.dumps(payload(job)), time.time()),
            )
            self._wake.notify()

    def pending(self) -> int:
        """Deliveries not yet made nor given up."""
        with self._wake:
            return self._db.execute("SELECT COUNT(*) FROM webhooks").fetchone()[0]

    def close(self) -> None:
        """Stop sending (what waits stays in the database for the next start)."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        for _ in range(self._senders):
            self._todo.put(None)

    def _schedule(self) -> None:
        """Hand due deliveries to free senders; sleep until the next falls due."""
        while not self._closed:
            with self._wake:
                try:
                    waiting = self._waiting()
                except sqlite3.Error:  # locked or full for now: try again shortly
                    log.exception("webhooks: the queue's database could not be read")
                    self._wake.wait(5.0)
                    continue
                free = self._senders - len(self._sending)
                due = [row for row in waiting if row[4] <= time.time()][:free]
                for row in due:
                    self._sending.add(row[0])
                    self._todo.put(row[:4])
                if due:
                    continue
                if free and waiting:
                    self._wake.wait(max(0.05, min(60.0, waiting[0][4] - time.time())))
                else:
                    self._wake.wait(60.0)  # until one is added or a sender is free

    def _waiting(self) -> list[tuple]:
        """The deliveries no sender holds, soonest first."""
        rows = self._db.execute(
            "SELECT seq, url, body, attempts, due FROM webhooks ORDER BY due LIMIT ?",
            (self._senders * 2,),
        ).fetchall()
        return [row for row in rows if row[0] not in self._sending]

    def _send(self) -> None:
        while (row := self._todo.get()) is not None and not self._closed:
            seq = row[0]
            try:
                self._deliver(*row)
            except Exception:  # the database: the delivery stays; the sender goes on
                log.exception("webhook %s", seq)
                time.sleep(1.0)
            finally:
                with self._wake:
                    self._sending.discard(seq)
                    self._wake.notify()

    def _deliver(self, seq: int, url: str, body: str, attempts: int) -> None:
        """One attempt; then the row goes (delivered, or out of attempts) or waits again."""
        body = json.loads(body)
        try:
            delivered = attempt(url, body)
        except Exception:  # a failed attempt like any other
            log.exception("webhook for %s", body["request_id"])
            delivered = False
        attempts += 1
        with self._wake:
            if delivered or attempts >= settings().webhook_attempts:
                self._db.execute("DELETE FROM webhooks WHERE seq = ?", (seq,))
                if not delivered:
                    log.warning("webhook for %s not delivered after %d attempts",
                                body["request_id"], attempts)  # fmt: skip
            else:
                delay = min(settings().webhook_backoff * 2 ** (attempts - 1), MAX_DELAY)
                self._db.execute(
                    "UPDATE webhooks SET attempts = ?, due = ? WHERE seq = ?",
                    (attempts, time.time() + delay, seq),
                )
