"""The queue's durable store: one SQLite file in the output folder, cheap to write.

A request's row holds what changes (status, result, error); its inputs (up to a 64 MB
`data:` URI) are written once, to a file beside the database, and removed when it ends; its
log lines are appended to a table of their own. So a step costs one short INSERT, not a
rewrite of the request. WAL with synchronous=NORMAL: a crash of the app loses nothing that
was committed. Old requests go, and the file gives their pages back (incremental vacuum).
A full disk is a StorageFull; a database that cannot be read is set aside at start.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from svd.errors import BackendError

log = logging.getLogger(__name__)
NAME = "queue.sqlite3"
TABLES = [
    """CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, surface TEXT NOT NULL,
    session TEXT NOT NULL DEFAULT '', address TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,
    input TEXT, output TEXT, error_code INTEGER, error TEXT, logs TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL, started REAL, finished REAL)""",
    """CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, line TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_by_request ON events (request_id)",
]
ADDED = {"error_type": "TEXT", "webhook": "TEXT"}  # columns newer than the table
COLUMNS = ("status", "output", "error", "started", "finished")


class StorageFull(BackendError):
    """The disk (or the database's room on it) is full."""


def full(error: Exception) -> bool:
    """Whether `error` says the disk (or the database's room on it) is full."""
    if isinstance(error, StorageFull):
        return True
    if isinstance(error, sqlite3.OperationalError):
        return "full" in str(error).lower()
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


class JobStore:
    """Requests, their log lines and their inputs, in `folder` (see the module's words)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / NAME
        self.inputs = self.folder / "queue-inputs"  # not served: /outputs/ serves videos only
        self.inputs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = self._open()
        except sqlite3.OperationalError:  # locked, no room, no access: not the file's fault
            raise
        except sqlite3.DatabaseError as e:  # not a database, or damaged
            aside = self.path.with_name(f"{NAME}.unreadable-{int(time.time())}")
            log.error("the queue's database %s cannot be read (%s): set aside as %s; the "
                      "queue starts empty", self.path, e, aside.name)  # fmt: skip
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.replace(Path(f"{aside}{suffix}"))
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check found damage")
            if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                db.execute("VACUUM")  # a file from before: it takes the setting now
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA busy_timeout = 5000")
            for table in TABLES:
                db.execute(table)
            have = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
            for name, kind in ADDED.items():
                if name not in have:  # a database from an older version
                    db.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    # -- writing

    def insert(self, row: dict, inputs: str | None) -> int:
        """A new request: its row, and its inputs (JSON) in a file of their own."""
        if inputs is not None:
            self._write_inputs(row["id"], inputs)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            cursor = self._execute(
                f"INSERT INTO requests ({names}) VALUES ({marks})", tuple(row.values())
            )
        except Exception:
            self._inputs_path(row["id"]).unlink(missing_ok=True)
            raise
        return cursor.lastrowid

    def update(self, request_id: str, values: dict) -> None:
        """Set some of a request's columns."""
        sets = ", ".join(f"{name} = ?" for name in values)
        self._execute(f"UPDATE requests SET {sets} WHERE id = ?", (*values.values(), request_id))

    def append_log(self, request_id: str, entry: dict) -> None:
        self._execute(
            "INSERT INTO events (request_id, line) VALUES (?, ?)",
            (request_id, json.dumps(entry)),
        )

    def drop_inputs(self, request_id: str) -> None:
        """A request that ended needs its inputs no more."""
        self._inputs_path(request_id).unlink(missing_ok=True)
        self._execute("UPDATE requests SET input = NULL WHERE id = ? AND input IS NOT NULL",
                      (request_id,))  # fmt: skip

    def prune(self, keep: int) -> None:
        """Keep the newest `keep` finished requests; the file shrinks by what goes."""
        with self._lock:
            gone = self._execute(
                "DELETE FROM requests WHERE status = 'COMPLETED' AND seq NOT IN (SELECT seq "
                "FROM requests WHERE status = 'COMPLETED' ORDER BY seq DESC LIMIT ?)",
                (keep,),
            ).rowcount
            if gone:
                self._execute(
                    "DELETE FROM events WHERE request_id NOT IN (SELECT id FROM requests)"
                )
                # a statement's step frees one page; a script steps it to the end
                self._db.executescript("PRAGMA incremental_vacuum;")

    # -- reading

    def load(self, request_id: str) -> dict | None:
        """A request's row, with its `logs` and `input` (None when gone)."""
        rows = self._query("SELECT * FROM requests WHERE id = ?", (request_id,))
        return self._whole(rows[0]) if rows else None

    def unfinished(self) -> list[dict]:
        """Requests that were queued or running, oldest first."""
        rows = self._query("SELECT * FROM requests WHERE status != 'COMPLETED' ORDER BY seq")
        return [self._whole(row) for row in rows]

    def _whole(self, row: dict) -> dict:
        lines = self._query(
            "SELECT line FROM events WHERE request_id = ? ORDER BY seq", (row["id"],)
        )
        logs = json.loads(row["logs"] or "[]") + [json.loads(r["line"]) for r in lines]
        try:
            inputs = self._inputs_path(row["id"]).read_text()
        except OSError:
            inputs = row["input"]  # a database from before inputs had files
        return {**row, "logs": logs, "input": inputs}

    # -- the file system and the database

    def _inputs_path(self, request_id: str) -> Path:
        return self.inputs / f"{request_id}.json"

    def _write_inputs(self, request_id: str, text: str) -> None:
        path = self._inputs_path(request_id)
        part = path.with_suffix(".part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            part.replace(path)
        except OSError as e:
            part.unlink(missing_ok=True)
            if full(e):
                raise StorageFull("the server's disk is full; try again later") from None
            raise

    def _execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as e:
                if full(e):
                    raise StorageFull("the server's disk is full; try again later") from None
                raise

    def _query(self, sql: str, params: tuple = ()) -> list[dict]:
        with self._lock:
            cursor = self._execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
