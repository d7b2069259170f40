"""How fal's clients reach the API unchanged: fal's queue host, fal's proxy, forwarded hosts.

An ASGI middleware in front of the whole app (page and API):

- fal's queue host: on the queue port (SVD_QUEUE_PORT), or for a Host beginning with
  `queue.`, fal's queue routes are served without the `/queue` prefix, as queue.fal.run
  serves them; nothing else is served there but the videos.
- fal's proxy protocol at /api/fal/proxy: the target URL comes in `x-fal-target-url`. Only
  this app's routes on fal.run and queue.fal.run are served, here, by rewriting the request;
  any other target is refused (403) and never fetched.
- A trusted proxy's X-Forwarded-Proto, -Host and -For count (svd/forwarded.py), so the URLs
  in answers are the ones callers use, and limits count the caller's address.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from svd.forwarded import ForwardedHeaders
from svd.models import MODELS

ENDPOINTS = [m.fal_endpoint for m in MODELS.values() if m.fal_endpoint]  # fal's, served here
APPS = "|".join(map(re.escape, ENDPOINTS))
PROXY_PATH = "/api/fal/proxy"
TARGET_HEADER = b"x-fal-target-url"
RUN_HOSTS = {"fal.run": "", "queue.fal.run": "/queue"}  # fal's host -> our prefix
APP_PATH = re.compile(rf"^/({APPS})$")  # what fal.run runs
QUEUE_PATH = re.compile(
    rf"^/({APPS})(/requests/[A-Za-z0-9_-]{{1,64}}(/status(/stream)?|/cancel)?)?$"
)
EXPOSED = "x-fal-request-id, x-fal-error-type, x-fal-request-timeout-type, retry-after"
CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", EXPOSED.encode()),
]
PREFLIGHT = [
    *CORS,
    (b"access-control-allow-methods", b"GET, POST, PUT, OPTIONS"),
    (b"access-control-allow-headers", b"*, authorization"),
    (b"access-control-max-age", b"600"),
]


class FalRouting:
    """Wraps the app; `queue_port` is the port that serves as fal's queue host (or None)."""

    def __init__(self, app, queue_port: int | None = None, trusted: str = "127.0.0.1,::1"):
        self.inner = app
        self.forwarded = ForwardedHeaders(trusted)
        self.queue_port = queue_port

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.inner(scope, receive, send)
        if scope.get("client"):
            self.forwarded.apply(scope)
        path = _local_path(scope)
        if scope["type"] == "websocket" and self._on_queue_host(scope):
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] == "http" and path == PROXY_PATH:
            return await self._proxy(scope, receive, send)
        if self._on_queue_host(scope):
            if QUEUE_PATH.match(path):
                _rewrite(scope, "/queue" + path, scope.get("query_string", b""))
            elif not path.startswith("/outputs/"):
                return await _answer(send, 404, "fal's queue host serves only the queue routes")
            scope.setdefault("state", {})["queue_host"] = True
        await self.inner(scope, receive, send)

    def _on_queue_host(self, scope) -> bool:
        server = scope.get("server")
        if self.queue_port is not None and server and server[1] == self.queue_port:
            return True
        return _header(scope, b"host").lower().startswith(b"queue.")

    async def _proxy(self, scope, receive, send):
        method = scope["method"]
        if method == "OPTIONS":  # a browser's preflight
            return await _answer(send, 204, None, PREFLIGHT)
        target = _header(scope, TARGET_HEADER).decode("latin-1").strip()
        if not target:
            return await _answer(send, 400, "missing the x-fal-target-url header", CORS)
        local = _local_target(target)
        if local is None or method not in ("GET", "POST", "PUT"):
            served = " and ".join(ENDPOINTS)
            why = f"this proxy serves only {served} on fal.run and queue.fal.run, not {target}"
            return await _answer(send, 403, why, CORS)
        path, query = local
        _rewrite(scope, path, query)

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *CORS]}
            await send(message)

        await self.inner(scope, receive, send_with_cors)


def _local_target(target: str) -> tuple[str, bytes] | None:
    """The path (and query) here that a fal URL for this app stands for; None for others."""
    try:
        parts = urlsplit(target)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "https" or host not in RUN_HOSTS or port not in (None, 443):
        return None
    if parts.username or parts.password or not QUEUE_PATH.match(parts.path):
        return None
    if host == "fal.run" and not APP_PATH.match(parts.path):  # the rest is the queue's
        return None
    return RUN_HOSTS[host] + parts.path, parts.query.encode()


def _local_path(scope) -> str:
    """The request's path below the app's root path (uvicorn puts the root path in front)."""
    root, path = scope.get("root_path", ""), scope["path"]
    return path[len(root) :] if root and path.startswith(root) else path


def _rewrite(scope, path: str, query: bytes) -> None:
    """Point the request at `path` (below the root path) with `query`."""
    path = scope.get("root_path", "") + path
    scope["path"], scope["raw_path"], scope["query_string"] = path, path.encode(), query


def _header(scope, name: bytes) -> bytes:
    return next((v for k, v in scope["headers"] if k == name), b"")


async def _answer(send, status: int, detail: str | None, headers: list | None = None) -> None:
    body = b"" if detail is None else json.dumps({"detail": detail}).encode()
    kind = [(b"content-type", b"application/json")] if body else []
    start = {"type": "http.response.start", "status": status, "headers": [*kind, *(headers or [])]}
    await send(start)
    await send({"type": "http.response.body", "body": body})
