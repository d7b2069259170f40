"""Webhook deliveries: a few threads for any number waiting, and none lost to a restart."""

import json
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from svd import webhooks
from svd.jobs import Failure, Job


def failed_job(request_id: str, url: str) -> Job:
    job = Job(request_id, 1, "api")
    job.error = Failure(500, "generation failed", "runner_server_error")
    job.webhook = {"url": url, "files": "http://127.0.0.1/outputs/"}
    return job


@pytest.fixture
def black_hole(use_settings):
    """A listener that takes connections and never answers: each attempt waits it out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1000)
    held = []

    def accept():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    port = sock.getsockname()[1]
    use_settings(allow_private_urls=f"127.0.0.1:{port}")
    yield f"http://127.0.0.1:{port}/hook"
    sock.close()
    for conn in held:
        conn.close()


def test_six_hundred_silent_webhooks_cost_rows_not_threads(tmp_path, black_hole):
    before = threading.active_count()
    deliveries = webhooks.Deliveries(tmp_path / "queue.sqlite3")
    for n in range(600):
        deliveries.add(failed_job(f"r{n}", black_hole))
    time.sleep(1)
    try:
        assert threading.active_count() - before <= webhooks.SENDERS + 1
        assert deliveries.pending() == 600  # each kept until delivered or given up
    finally:
        deliveries.close()


class Listener(BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):
        Listener.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_delivery_waiting_for_its_retry_outlives_a_restart(use_settings, tmp_path):
    """The first process's attempt fails (nobody listens) and its retry waits in the
    database; a process started on the same folder delivers it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    port = server.server_address[1]
    use_settings(allow_private_urls=f"127.0.0.1:{port}")
    use_settings(webhook_backoff="1")
    server.server_close()  # the port is free: the first attempt is refused
    path = tmp_path / "queue.sqlite3"
    url = f"http://127.0.0.1:{port}/hook"
    first = webhooks.Deliveries(path, senders=1)
    first.add(failed_job("kept", url))
    deadline = time.monotonic() + 10
    db = sqlite3.connect(path)
    while time.monotonic() < deadline:
        attempts = db.execute("SELECT attempts FROM webhooks").fetchall()
        if attempts == [(1,)]:
            break
        time.sleep(0.05)
    first.close()
    assert attempts == [(1,)]  # failed once, kept for its retry
    server = ThreadingHTTPServer(("127.0.0.1", port), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    again = webhooks.Deliveries(path)  # the restarted app's
    try:
        deadline = time.monotonic() + 15
        while not Listener.got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Listener.got and Listener.got[0]["request_id"] == "kept"
        assert Listener.got[0]["status"] == "ERROR"
    finally:
        again.close()
        server.shutdown()
