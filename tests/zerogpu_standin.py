"""A stand-in for ZeroGPU's device API, answering the `spaces` package as the real one does
(spaces/zero/api.py): /startup-report, /schedule, /allow, /release. It records each call."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class DeviceAPI:
    """Serve on 127.0.0.1 in a thread; `calls` holds (path, query) in order."""

    def __init__(self):
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.allowing = threading.Event()  # cleared: /allow waits (a worker held at start)
        self.allowing.set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                api.calls.append((parts.path, query))
                if parts.path == "/schedule":
                    body = {
                        "idle": True, "nvidiaIndex": 0,
                        "nvidiaUUID": "MIG-00000000-0000-0000-0000-000000000000",
                        "allowToken": secrets.token_hex(8),
                    }  # fmt: skip
                    self._answer(200, json.dumps(body).encode(), "application/json")
                elif parts.path == "/allow":
                    api.allowing.wait(60)
                    self._answer(200, b"{}", "application/json")
                elif parts.path in ("/startup-report", "/release"):
                    self._answer(200, b"{}", "application/json")
                else:
                    self._answer(404, b"{}", "application/json")

            def _answer(self, status: int, body: bytes, kind: str):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller has gone (an app stopped while /allow held it)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def called(self, path: str) -> list[dict[str, str]]:
        """The queries of every call to `path`."""
        return [query for p, query in self.calls if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
